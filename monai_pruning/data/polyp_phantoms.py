"""
Synthetic colonoscopy frames with polyp masks, written in the Kvasir-SEG layout (``images/*.jpg``, ``masks/*.jpg``).

A frame is rendered from a height map (haustral folds around a dark lumen, fine mucosal relief, polyp domes) lit by a
light near the camera: Lambertian shading, specular glints and vignetting. The polyp's colour is drawn close to the
mucosa, so brightness and colour alone do not find it; its relief, edge, missing vessel pattern and finer pit texture
do. Masks are 3-channel 0/255 JPEGs of the frame's size, with JPEG noise, like the real ones.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from monai_pruning.data.random_fields import random_rotation, smooth_noise, wobbly_blob

__all__ = ["polyp_phantom", "write_polyp_phantoms", "POLYP_DEMO_CASES"]

POLYP_DEMO_CASES = 80
_JPEG_QUALITY = 90


def _frame_size(rng: np.random.Generator) -> tuple[int, int]:
    """Height and width of 200-320 pixels, never square (Kvasir-SEG frames vary in size and aspect ratio)."""
    while True:
        height, width = (int(v) for v in rng.integers(200, 321, size=2))
        if abs(height - width) >= 16:
            return height, width


def _polyp_count(rng: np.random.Generator) -> int:
    return int(rng.choice(3, p=[0.05, 0.75, 0.20]))


def _facing(relief: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cosine between the surface normal of a height map (pixels) and a unit ``direction``, clipped at 0."""
    grad_y, grad_x = np.gradient(relief)
    dot = -grad_x * direction[0] - grad_y * direction[1] + direction[2]
    return np.clip(dot / np.sqrt(grad_x**2 + grad_y**2 + 1.0), 0.0, 1.0)


def polyp_phantom(rng: np.random.Generator, height: int, width: int, num_polyps: int | None = None):
    """
    Render one frame.

    Args:
        rng: the only source of randomness, so a case is reproducible from its generator's seed.
        height, width: frame size in pixels.
        num_polyps: polyps to draw; default 0, 1 or 2 with probabilities 0.05, 0.75, 0.2.

    Returns:
        ``(image, mask)``: ``uint8`` RGB array ``(height, width, 3)`` and boolean polyp mask ``(height, width)``.
    """
    num_polyps = _polyp_count(rng) if num_polyps is None else num_polyps
    y, x = np.ogrid[:height, :width]
    y, x = y.astype(np.float32), x.astype(np.float32)
    side = float(min(height, width))

    # Lumen: the far, unlit end of the colon; folds run around it in broken rings.
    lumen = (height * rng.uniform(0.2, 0.8), width * rng.uniform(0.2, 0.8))
    radial = np.hypot(y - lumen[0], x - lumen[1]) / side
    angle = np.arctan2(y - lumen[0], x - lumen[1])
    falloff = 1.0 - rng.uniform(0.65, 0.9) * np.exp(-((radial / rng.uniform(0.12, 0.25)) ** 2))
    falloff = falloff * np.clip(radial / 0.05, 0.3, 1.0) ** 0.5
    warped = radial * (1.0 + 0.12 * smooth_noise(rng, (height, width), side / 3))
    relief = np.zeros((height, width), dtype=np.float32)
    for _ in range(int(rng.integers(3, 7))):
        ring, half_width = rng.uniform(0.15, 1.0), rng.uniform(0.025, 0.06)
        arc = np.clip(0.4 + 0.8 * np.cos(angle - rng.uniform(-math.pi, math.pi)), 0.0, 1.0)
        relief += rng.uniform(3.0, 9.0) * arc * np.exp(-(((warped - ring) / half_width) ** 2))
    undulation = 2.0 * smooth_noise(rng, (height, width), side / 8)

    # Polyps: irregular domes, sessile (flat) to bulging, on any wall away from the lumen's centre.
    mask = np.zeros((height, width), dtype=bool)
    polyp_weight = np.zeros((height, width), dtype=np.float32)
    polyp_tint = np.zeros((height, width, 3), dtype=np.float32)
    for _ in range(num_polyps):
        radius = side * rng.uniform(0.09, 0.27)
        for _attempt in range(20):
            center = (rng.uniform(radius, height - radius), rng.uniform(radius, width - radius))
            if math.hypot(center[0] - lumen[0], center[1] - lumen[1]) > 0.2 * side + 0.5 * radius:
                break
        distance = wobbly_blob(
            rng,
            (y, x),
            center,
            (radius, radius * rng.uniform(0.65, 1.0)),
            roughness=rng.uniform(0.1, 0.35),
            rotation=random_rotation(rng, dims=2),
        )
        inside = distance < 1.0
        dome = np.clip(1.0 - distance**2, 0.0, 1.0) ** rng.uniform(1.0, 1.6)
        relief += radius * rng.uniform(0.2, 0.7) * dome
        mask |= inside
        polyp_weight = np.maximum(polyp_weight, np.clip((1.0 - distance) / 0.15, 0.0, 1.0))
        polyp_tint[inside] = rng.normal([0.02, -0.015, -0.01], 0.025)

    # Surface colour: pink mucosa with blotches and a vessel network; the polyp's tint is within the mucosa's spread.
    base = np.array([rng.uniform(0.72, 0.9), rng.uniform(0.36, 0.5), rng.uniform(0.3, 0.42)])
    albedo = base * (1.0 + 0.08 * smooth_noise(rng, (height, width), side / 5))[..., None]
    vessels = np.exp(-((smooth_noise(rng, (height, width), rng.uniform(7.0, 14.0)) / 0.12) ** 2))
    vessels *= rng.uniform(0.15, 0.35) * (smooth_noise(rng, (height, width), side / 4) > -0.4)
    vessels *= 1.0 - 0.8 * polyp_weight
    albedo = albedo * (1.0 - vessels[..., None] * np.array([0.25, 0.9, 0.8]))
    pits = 1.0 + rng.uniform(0.04, 0.09) * smooth_noise(rng, (height, width), 2.0)
    albedo = albedo * (1.0 + polyp_tint) * (1.0 + (pits - 1.0) * polyp_weight)[..., None]

    # Lighting from a source beside the camera: diffuse shading (with the fine mucosal relief), wet glints on the
    # folds and domes (without it, or the whole surface would sparkle), optical vignetting.
    light = np.array([rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4), 1.0])
    light /= np.linalg.norm(light)
    halfway = light + np.array([0.0, 0.0, 1.0])
    halfway /= np.linalg.norm(halfway)
    lambert = _facing(relief + undulation + 0.6 * smooth_noise(rng, (height, width), 3.0), light)
    glint = _facing(relief + undulation, halfway) ** rng.uniform(150.0, 400.0) * np.clip(relief / 4.0, 0.0, 1.0)
    glint = glint * (smooth_noise(rng, (height, width), 2.5) > rng.uniform(0.3, 1.0))
    centred = np.hypot((y - height / 2) / (height / 2), (x - width / 2) / (width / 2))
    vignette = np.clip(1.0 - rng.uniform(0.15, 0.4) * centred**2, 0.0, 1.0)
    gain = rng.uniform(0.95, 1.25)
    image = gain * albedo * ((0.3 + 0.7 * lambert) * falloff * vignette)[..., None] + 1.2 * glint[..., None]
    image += 0.012 * rng.standard_normal(image.shape, dtype=np.float32)
    if rng.random() < 0.6:  # the black corners of a round endoscope optic
        image[centred > rng.uniform(1.15, 1.3)] = 0.0
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), mask


def write_polyp_phantoms(root: str | os.PathLike, num_cases: int = POLYP_DEMO_CASES, seed: int = 0) -> list[dict]:
    """
    Write ``num_cases`` frames into ``root/images`` and their masks into ``root/masks`` (Kvasir-SEG layout).

    Case ``i`` depends only on ``(seed, i)``, so asking for more cases keeps the first ones unchanged.

    Returns:
        ``[{"image": path, "label": path, "case": name}, ...]`` for the written files.
    """
    from PIL import Image

    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    items = []
    for index in range(num_cases):
        rng = np.random.default_rng([seed, index])
        image, mask = polyp_phantom(rng, *_frame_size(rng))
        name = f"phantom_polyp_{index:04d}.jpg"
        Image.fromarray(image).save(root / "images" / name, quality=_JPEG_QUALITY)
        mask_rgb = np.repeat(mask[..., None], 3, axis=-1).astype(np.uint8) * 255
        Image.fromarray(mask_rgb).save(root / "masks" / name, quality=_JPEG_QUALITY)
        items.append({"image": str(root / "images" / name), "label": str(root / "masks" / name), "case": name[:-4]})
    return items
