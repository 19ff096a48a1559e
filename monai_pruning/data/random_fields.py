"""
Random smooth fields and shape primitives for the synthetic phantoms: pure functions of a numpy ``Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import scipy.fft

__all__ = ["smooth_noise", "random_rotation", "ellipsoid_radius", "wobbly_blob"]


def smooth_noise(rng: np.random.Generator, shape: Sequence[int], scale: float) -> np.ndarray:
    """
    A zero-mean, unit-variance Gaussian random field (float32) whose blobs are about ``scale`` pixels (voxels) across.

    White noise is low-pass filtered with a Gaussian in the Fourier domain, which costs the same for any scale. The
    grid is padded by ``scale`` (at most 12) on each side before filtering, so the periodic wrap-around of the transform
    does not make opposite borders of the result alike.
    """
    shape = tuple(int(s) for s in shape)
    pad = int(math.ceil(min(scale, 12.0)))
    padded = tuple(scipy.fft.next_fast_len(s + 2 * pad, real=True) for s in shape)
    spectrum = scipy.fft.rfftn(rng.standard_normal(padded, dtype=np.float32))
    # The Gaussian's transform is separable: multiply by one factor per axis instead of building the full kernel.
    decay = 2.0 * math.pi**2 * (scale / 2.0) ** 2
    for axis, size in enumerate(padded):
        freq = scipy.fft.rfftfreq(size) if axis == len(padded) - 1 else scipy.fft.fftfreq(size)
        view = [1] * len(padded)
        view[axis] = freq.size
        spectrum *= np.exp(-decay * freq**2).astype(np.float32).reshape(view)
    field = scipy.fft.irfftn(spectrum, s=padded)[tuple(slice(pad, pad + s) for s in shape)]
    return ((field - field.mean()) / (field.std() + 1e-12)).astype(np.float32, copy=False)


def random_rotation(rng: np.random.Generator, max_angle: float = math.pi, dims: int = 3) -> np.ndarray:
    """A rotation matrix: for 3-D an axis uniform on the sphere and an angle up to ``max_angle`` (radians)."""
    angle = rng.uniform(-max_angle, max_angle)
    if dims == 2:
        c, s = math.cos(angle), math.sin(angle)
        return np.array([[c, -s], [s, c]])
    axis = rng.standard_normal(3)
    axis /= np.linalg.norm(axis)
    cross = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def ellipsoid_radius(
    coords: Sequence[np.ndarray], center: Sequence[float], radii: Sequence[float], rotation: np.ndarray | None = None
) -> np.ndarray:
    """
    Normalised ellipsoid distance: 1 on the surface of the ellipsoid, below 1 inside, in any number of dimensions.

    ``coords`` are the per-axis coordinate grids (broadcastable), in the same units as ``center`` and ``radii``;
    ``rotation`` turns the ellipsoid's axes (its columns are the ellipsoid axes in grid coordinates).
    """
    offsets = [c - m for c, m in zip(coords, center)]
    if rotation is not None:
        offsets = [sum(rotation[j, i] * offsets[j] for j in range(len(offsets))) for i in range(len(offsets))]
    return np.sqrt(sum((o / r) ** 2 for o, r in zip(offsets, radii)))


def wobbly_blob(
    rng: np.random.Generator,
    coords: Sequence[np.ndarray],
    center: Sequence[float],
    radii: Sequence[float],
    roughness: float,
    rotation: np.ndarray | None = None,
    wobble: np.ndarray | None = None,
) -> np.ndarray:
    """
    Normalised distance of an irregular blob: an ellipsoid whose surface is pushed in and out by a smooth random field
    with relative amplitude ``roughness``, so lesions and polyps are not recognisable by being perfect ellipses.

    ``wobble`` (unit-variance field on the grid) may be shared by blobs at different places to save its cost; by
    default a field with bumps about 0.6 of the smallest radius across is drawn.
    """
    distance = ellipsoid_radius(coords, center, radii, rotation)
    if wobble is None:
        shape = np.broadcast_shapes(*(np.shape(c) for c in coords))
        wobble = smooth_noise(rng, shape, scale=max(2.0, 0.6 * min(radii) / _spacing(coords)))
    return distance * (1.0 + roughness * np.clip(wobble, -2.5, 2.5) / 2.5)


def _spacing(coords: Sequence[np.ndarray]) -> float:
    """Grid step of the first axis, to express the wobble scale in grid points rather than physical units."""
    values = np.unique(np.asarray(coords[0]))
    return float(values[1] - values[0]) if values.size > 1 else 1.0
