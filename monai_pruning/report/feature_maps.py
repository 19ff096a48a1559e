"""
The arithmetic behind the feature-map figures: per-channel normalisation, the layout of a grid of maps, the pairwise
channel distances Sauron prunes by, and which slice of a 3D volume to show.

Pure functions on tensors and arrays; the runner that feeds them a network's maps lives in
:mod:`monai_pruning.handlers.feature_map_export`, the figures in :mod:`monai_pruning.report.plots`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from monai_pruning.criteria.sauron import delta_prune

__all__ = [
    "normalize_maps",
    "grid_shape",
    "tile_maps",
    "channel_distance_matrix",
    "label_centre_voxel",
    "window_around",
    "scaled_index",
]


def _as_numpy(value: Any, where: str, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor and MONAI MetaTensor, on any device
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{where}: `{name}` must hold numbers, got dtype {array.dtype}.")
    return array


def normalize_maps(maps: Any) -> np.ndarray:
    """
    Every channel of ``(C, *spatial)`` maps min-max scaled to [0, 1] on its own, so each map shows its pattern
    whatever its scale (the normalisation Sauron's regulariser compares maps by). A constant map becomes all zeros.

    Returns:
        A float64 array of the same shape.
    """
    where = "normalize_maps"
    array = _as_numpy(maps, where, "maps").astype(np.float64)
    if array.ndim < 2 or array.shape[0] == 0 or array[0].size == 0:
        raise ValueError(f"{where}: `maps` must be (C, *spatial) with C >= 1 and a non-empty map, got {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{where}: `maps` holds NaN or infinite values.")
    flat = array.reshape(array.shape[0], -1)
    low = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - low
    scaled = np.divide(flat - low, span, out=np.zeros_like(flat), where=span > 0)
    return scaled.reshape(array.shape)


def grid_shape(count: int) -> tuple[int, int]:
    """``(rows, columns)`` of a near-square grid for ``count`` maps: ``ceil(sqrt(count))`` columns, as few rows as
    hold them all (16 maps: 4 x 4; 10 maps: 3 rows of 4)."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"grid_shape: `count` must be an int >= 1, got {count!r}.")
    columns = math.isqrt(int(count) - 1) + 1
    return -(-int(count) // columns), columns


def tile_maps(maps: Any, gap: int = 1) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """
    One mosaic of ``(C, H, W)`` maps in the :func:`grid_shape` grid, row by row, with ``gap`` pixels between tiles.

    Returns:
        ``(mosaic, origins)``: a float64 ``(rows * (H + gap) - gap, columns * (W + gap) - gap)`` array holding the
        maps as given, NaN in the gaps and in the unused cells; ``origins[c]`` is the ``(row, column)`` pixel of the
        top-left corner of channel c's tile (one entry per channel).
    """
    where = "tile_maps"
    array = _as_numpy(maps, where, "maps").astype(np.float64)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"{where}: `maps` must be (C, H, W) with no empty axis, got shape {array.shape}.")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"{where}: `gap` must be an int >= 0, got {gap!r}.")
    channels, height, width = array.shape
    rows, columns = grid_shape(channels)
    mosaic = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan)
    origins = []
    for channel in range(channels):
        top, left = (channel // columns) * (height + gap), (channel % columns) * (width + gap)
        mosaic[top : top + height, left : left + width] = array[channel]
        origins.append((top, left))
    return mosaic, origins


def channel_distance_matrix(features: torch.Tensor) -> torch.Tensor:
    """
    The distances Sauron's pruning score is made of, between every pair of channels of one layer:
    ``matrix[r, c]`` is channel c's :func:`~monai_pruning.criteria.delta_prune` with channel r as the reference
    (raw maps, 2x average pooled, RMS over all spatial axes, divided by each sample's largest distance to r, mean
    over the batch). Row r is what the handler would compare with its threshold tau had it drawn r as the
    reference: entries below tau are the channels it would cut.

    Args:
        features: ``(B, C, *spatial)`` maps of one layer, 1 to 3 spatial dims.

    Returns:
        A ``(C, C)`` float tensor in [0, 1], zero on the diagonal; not symmetric, since each row is scaled by its own
        reference's largest distance.
    """
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"channel_distance_matrix: `features` must be a torch.Tensor, got {type(features).__name__}.")
    features = features.detach()
    return torch.stack([delta_prune(features, reference) for reference in range(features.shape[1])])


def label_centre_voxel(label: Any, label_affine: Any, image_affine: Any) -> np.ndarray:
    """
    The centre of mass of a label's foreground (every non-zero voxel, all channels), as voxel coordinates of another
    grid of the same patient: through world coordinates, so the image may have been reoriented, resampled or cropped
    since it was read (as MONAI's preprocessing does, keeping the affine up to date).

    Args:
        label: ``(C, *spatial)`` or ``(*spatial)`` array (3 spatial dims), in its own voxel grid.
        label_affine: 4 x 4 voxel-to-world matrix of ``label``.
        image_affine: 4 x 4 voxel-to-world matrix of the grid to express the centre in.

    Returns:
        Three float voxel coordinates in the image grid (possibly outside it).

    Raises:
        ValueError: the label has no foreground voxel, or an affine is not 4 x 4.
    """
    where = "label_centre_voxel"
    array = _as_numpy(label, where, "label")
    if array.ndim == 4:
        array = (array != 0).any(axis=0)
    if array.ndim != 3:
        raise ValueError(f"{where}: `label` must be a 3D volume, (C, H, W, D) or (H, W, D); got shape {array.shape}.")
    foreground = np.argwhere(array != 0)
    if foreground.size == 0:
        raise ValueError(f"{where}: the label has no foreground voxel to centre on.")
    matrices = []
    for name, affine in (("label_affine", label_affine), ("image_affine", image_affine)):
        matrix = _as_numpy(affine, where, name).astype(np.float64)
        if matrix.shape != (4, 4):
            raise ValueError(f"{where}: `{name}` must be a 4 x 4 matrix, got shape {matrix.shape}.")
        matrices.append(matrix)
    centre = np.append(foreground.mean(axis=0), 1.0)
    world = matrices[0] @ centre
    return (np.linalg.inv(matrices[1]) @ world)[:3]


def window_around(size: Sequence[int], window: Sequence[int], centre: Sequence[float]) -> list[tuple[int, int]]:
    """
    ``(start, stop)`` per axis of a ``window`` as centred on ``centre`` (voxel coordinates) as the volume allows:
    shifted to stay inside, and the whole axis where the volume is smaller than the window (the caller pads it).
    """
    where = "window_around"
    if not len(size) == len(window) == len(centre):
        raise ValueError(
            f"{where}: size {list(size)}, window {list(window)} and centre {list(centre)} differ in length."
        )
    spans = []
    for length, extent, middle in zip(size, window, centre):
        length, extent = int(length), int(extent)
        if extent < 1:
            raise ValueError(f"{where}: window sizes must be >= 1, got {list(window)}.")
        if length <= extent:
            spans.append((0, length))
            continue
        start = int(round(float(middle) - extent / 2))
        start = min(max(start, 0), length - extent)
        spans.append((start, start + extent))
    return spans


def scaled_index(index: int, size: int, scaled_size: int) -> int:
    """
    The slice of an axis downsampled from ``size`` to ``scaled_size`` positions that covers slice ``index`` of the
    full axis (a feature map at a coarser resolution than the input it was computed from).
    """
    if not 0 <= index < size or scaled_size < 1:
        raise ValueError(
            f"scaled_index: need 0 <= index < size and scaled_size >= 1, got {index}, {size}, {scaled_size}."
        )
    return min(int((index + 0.5) * scaled_size / size), scaled_size - 1)
