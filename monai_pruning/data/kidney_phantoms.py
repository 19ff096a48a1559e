"""
Synthetic abdominal CT volumes with kidney, tumour and cyst labels, written in the KiTS layout
(``case_XXXXX/imaging.nii.gz`` in HU, ``case_XXXXX/segmentation.nii.gz`` with 0 background, 1 kidney, 2 tumour, 3 cyst).

Each volume (about 64 x 64 x 48 voxels of 4.6-5.2 mm in-plane and 4.5-5.5 mm between slices, RAS+ affine) holds a body
outline of fat and muscle, bowel with mesenteric fat and gas, a spine with discs and canal, aorta and vena cava, and
two bean-shaped kidneys in perirenal fat. Liver and spleen are drawn within 10 HU of the kidneys, so a threshold on
HU finds them as well: a network must use shape and position. Tumours enhance less than the kidney and are
heterogeneous, cysts are water-dense, and CT noise is spatially correlated.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from scipy import ndimage

from monai_pruning.data.random_fields import ellipsoid_radius, smooth_noise, wobbly_blob

__all__ = ["kidney_phantom", "write_kidney_phantoms", "KIDNEY_DEMO_CASES"]

KIDNEY_DEMO_CASES = 24
_AIR, _FAT, _MUSCLE, _WATER = -1000.0, -95.0, 50.0, 8.0


def _rotation_zy(angle_z: float, angle_y: float) -> np.ndarray:
    """Rotation about the body's long axis (z) after one about the antero-posterior axis (y), angles in radians."""
    cz, sz, cy, sy = math.cos(angle_z), math.sin(angle_z), math.cos(angle_y), math.sin(angle_y)
    rot_z = np.array([[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]])
    rot_y = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    return rot_z @ rot_y


def kidney_phantom(
    rng: np.random.Generator,
    shape: tuple[int, int, int] | None = None,
    spacing: tuple[float, float, float] | None = None,
):
    """
    Render one CT volume.

    Args:
        rng: the only source of randomness.
        shape: voxels along (x: patient right, y: anterior, z: superior); default 64 x 64 x 44-52.
        spacing: voxel size in mm; default 4.6-5.2 in-plane, 4.5-5.5 along z.

    Returns:
        ``(hu, segmentation, spacing)``: ``int16`` HU volume, ``uint8`` labels 0-3 of the same shape, and the spacing.
    """
    shape = shape or (64, 64, int(rng.integers(44, 53)))
    spacing = spacing or (float(rng.uniform(4.6, 5.2)),) * 2 + (float(rng.uniform(4.5, 5.5)),)
    grids = np.ogrid[: shape[0], : shape[1], : shape[2]]
    x, y, z = ((g - (n - 1) / 2.0) * s for g, n, s in zip(grids, shape, spacing))
    full = np.broadcast_shapes(x.shape, y.shape, z.shape)
    vox = max(spacing[0], spacing[2])

    def noise(scale_mm: float) -> np.ndarray:
        return smooth_noise(rng, full, scale_mm / vox)

    # One fine texture field serves every organ: organs do not overlap, and each field costs a 3-D FFT.
    texture = noise(8.0)

    hu = np.full(full, _AIR)
    body_a, body_b, body_y = rng.uniform(125, 160), rng.uniform(95, 125), rng.uniform(-10, 10)
    body = ellipsoid_radius((x, y), (0.0, body_y), (body_a, body_b)) * np.ones(full)
    fat_depth, wall = rng.uniform(8, 30), rng.uniform(8, 15)
    inner = ellipsoid_radius((x, y), (0.0, body_y), (body_a - fat_depth, body_b - fat_depth)) * np.ones(full)
    cavity_edge = ellipsoid_radius((x, y), (0.0, body_y), (body_a - fat_depth - wall, body_b - fat_depth - wall))
    cavity = (cavity_edge * np.ones(full)) < 1.0
    hu[body < 1.0] = _FAT
    hu[inner < 1.0] = _MUSCLE
    soft = rng.uniform(30, 42)
    hu[cavity] = soft + 6.0 * texture[cavity]
    bowel = noise(22.0)  # high: mesenteric fat; lowest tail: gas inside the bowel
    hu[cavity & (bowel > rng.uniform(0.2, 0.7))] = _FAT
    hu[cavity & (bowel < -rng.uniform(2.0, 2.5))] = _AIR + 100.0

    # Spine, paraspinal muscles and the great vessels sit in fixed relation to the back of the body.
    spine_y = body_y - body_b + rng.uniform(55, 70)
    for side in (-1.0, 1.0):
        muscle = ellipsoid_radius((x, y), (side * 35.0, spine_y - 32.0), (26.0, 20.0)) * np.ones(full) < 1.0
        hu[muscle] = _MUSCLE + 5.0
    vertebra = ellipsoid_radius((x, y), (0.0, spine_y), (18.0, 16.0)) * np.ones(full)
    disc = np.broadcast_to(np.mod(z - rng.uniform(0, 30), 30.0) < 6.0, full)
    hu[vertebra < 1.0] = np.where(disc, 90.0, rng.uniform(180, 260))[vertebra < 1.0]
    hu[(vertebra < 1.0) & (vertebra > 0.8) & ~disc] = rng.uniform(600, 800)
    arch = ellipsoid_radius((x, y), (0.0, spine_y - 27.0), (14.0, 13.0)) * np.ones(full)
    hu[(arch < 1.0) & ~disc] = rng.uniform(500, 700)
    hu[arch < 0.55] = _WATER + 5.0
    aorta = ((-14.0, spine_y + 27.0), 11.0, rng.uniform(180, 300))  # arterial phase
    cava = ((22.0, spine_y + 25.0), 12.0, rng.uniform(90, 150))
    for center, radius, level in (aorta, cava):
        hu[ellipsoid_radius((x, y), center, (radius, radius)) * np.ones(full) < 1.0] = level

    # Kidneys: beans with their hilum turned antero-medially, the right one lower, in perirenal fat.
    kidney_hu = soft + rng.uniform(25, 35)
    right_z = rng.uniform(-30, 5)
    kidneys = []
    for side, center_z in ((1.0, right_z), (-1.0, right_z + rng.uniform(5, 25))):
        center = (side * rng.uniform(55, 70), spine_y + rng.uniform(-5, 10), center_z)
        radii = (rng.uniform(22, 28), rng.uniform(20, 26), rng.uniform(45, 58))
        rotation = _rotation_zy(-side * rng.uniform(0.35, 0.7), side * rng.uniform(0.1, 0.3))
        kidneys.append((center, radii, rotation, side))

    # Liver (patient right, upper abdomen) and spleen (left, posterior): the same density as the kidneys.
    organ_wobble = noise(30.0)
    liver = wobbly_blob(
        rng,
        (x, y, z),
        (rng.uniform(55, 85), body_y + rng.uniform(-10, 20), z.max() * rng.uniform(0.3, 0.7)),
        (rng.uniform(70, 90), rng.uniform(65, 85), rng.uniform(70, 95)),
        roughness=0.2,
        wobble=organ_wobble,
    )
    spleen = wobbly_blob(
        rng,
        (x, y, z),
        (-rng.uniform(75, 95), body_y - 0.35 * body_b, z.max() * rng.uniform(0.3, 0.7)),
        (rng.uniform(30, 40), rng.uniform(40, 55), rng.uniform(45, 60)),
        roughness=0.2,
        wobble=organ_wobble,
    )
    for organ in (liver, spleen):
        inside = cavity & (organ < 1.0) & (vertebra > 1.2) & (arch > 1.2)
        hu[inside] = kidney_hu + rng.uniform(-10, 10) + 5.0 * texture[inside]

    label = np.zeros(full, dtype=np.uint8)
    for center, radii, rotation, _ in kidneys:
        shell = ellipsoid_radius((x, y, z), center, [r * 1.4 for r in radii], rotation)
        hu[cavity & (shell < 1.0)] = _FAT + 10.0 * texture[cavity & (shell < 1.0)]
    medulla_edge = 0.65 + 0.1 * noise(10.0)
    kidney_wobble = noise(15.0)
    for center, radii, rotation, side in kidneys:
        distance = wobbly_blob(rng, (x, y, z), center, radii, roughness=0.08, rotation=rotation, wobble=kidney_wobble)
        notch_center = np.asarray(center) + rotation @ np.array([-side * 0.85 * radii[0], 0.0, 0.0])
        notch = ellipsoid_radius((x, y, z), notch_center, (0.55 * radii[0], 0.45 * radii[1], 0.35 * radii[2]), rotation)
        kidney = (distance < 1.0) & (notch >= 1.0)
        hu[kidney] = kidney_hu + 4.0 * texture[kidney]
        medulla = kidney & (distance < medulla_edge)
        hu[medulla] -= rng.uniform(10, 25)
        hu[(distance < 1.0) & (notch < 1.0)] = -40.0
        label[kidney] = 1

    # Lesions: usually one tumour, sometimes one in each kidney; now and then a cyst.
    tumour_sides = [int(rng.integers(2))] if rng.random() < 0.9 else []
    if tumour_sides and rng.random() < 0.12:
        tumour_sides.append(1 - tumour_sides[0])
    for index in tumour_sides:
        center, radii, rotation, _ = kidneys[index]
        size = rng.uniform(8, 28)
        _paint_lesion(rng, (x, y, z), hu, label, cavity, (center, radii, rotation), size, kidney_hu, texture, 2)
    if rng.random() < 0.3:
        center, radii, rotation, _ = kidneys[int(rng.integers(2))]
        size = rng.uniform(6, 15)
        _paint_lesion(rng, (x, y, z), hu, label, cavity, (center, radii, rotation), size, kidney_hu, texture, 3)

    hu = ndimage.gaussian_filter(hu, sigma=0.6)  # partial volume at organ borders
    correlated = ndimage.gaussian_filter(rng.standard_normal(full), sigma=0.7)
    hu += rng.uniform(10, 20) * correlated / correlated.std()
    return np.clip(np.round(hu), -1024, 3071).astype(np.int16), label, tuple(spacing)


def _paint_lesion(rng, coords, hu, label, cavity, kidney, size, kidney_hu, texture, value) -> None:
    """
    A tumour (``value`` 2: under-enhancing, heterogeneous) or a cyst (3: water) of radius ``size`` mm in or on the
    ``kidney`` given as (center, radii, rotation); ``hu`` and ``label`` are painted in place.
    """
    center, radii, rotation = kidney
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    offset = rotation @ (direction * np.asarray(radii) * rng.uniform(0.4, 0.95))
    lesion_center = np.asarray(center) + offset
    if value == 2:
        distance = wobbly_blob(rng, coords, lesion_center, (size, size * rng.uniform(0.75, 1.0), size), roughness=0.25)
        inside = cavity & (distance < 1.0)
        # The organ texture, flipped and amplified, gives the tumour its own heterogeneous pattern.
        level = kidney_hu - rng.uniform(15, 45) - rng.uniform(8, 20) * texture
        if rng.random() < 0.5:
            level = np.where(distance < 0.5, level - rng.uniform(20, 40), level)
        hu[inside] = level[inside]
    else:
        distance = ellipsoid_radius(coords, lesion_center, (size, size, size))
        inside = cavity & (distance < 1.0)
        hu[inside] = rng.uniform(0, 15)
    label[inside] = value


def write_kidney_phantoms(root: str | os.PathLike, num_cases: int = KIDNEY_DEMO_CASES, seed: int = 0) -> list[dict]:
    """
    Write ``num_cases`` volumes as ``root/case_XXXXX/{imaging,segmentation}.nii.gz`` (KiTS layout).

    Case ``i`` depends only on ``(seed, i)``.

    Returns:
        ``[{"image": path, "label": path, "case": "case_XXXXX"}, ...]`` for the written files.
    """
    import nibabel as nib

    root = Path(root)
    items = []
    for index in range(num_cases):
        rng = np.random.default_rng([seed, index])
        hu, label, spacing = kidney_phantom(rng)
        affine = np.diag([*spacing, 1.0])
        affine[:3, 3] = -0.5 * (np.asarray(hu.shape) - 1) * np.asarray(spacing)
        case = root / f"case_{index:05d}"
        case.mkdir(parents=True, exist_ok=True)
        image = nib.Nifti1Image(hu, affine)
        image.header.set_xyzt_units("mm")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, case / "imaging.nii.gz")
        segmentation = nib.Nifti1Image(label, affine)
        segmentation.header.set_xyzt_units("mm")
        segmentation.set_qform(affine, code=1)
        segmentation.set_sform(affine, code=1)
        nib.save(segmentation, case / "segmentation.nii.gz")
        items.append(
            {"image": str(case / "imaging.nii.gz"), "label": str(case / "segmentation.nii.gz"), "case": case.name}
        )
    return items
