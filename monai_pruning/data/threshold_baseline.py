"""
The best Dice that a single global intensity threshold reaches on a set of images: the floor that a segmentation
network must clearly beat for the task to need shape and context, used to keep the demo phantoms meaningful.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["best_threshold_dice", "intensity_and_mask"]

# Pooled intensities are subsampled to about this many values per image before taking quantiles; the quantiles only
# place candidate thresholds, while every Dice is computed on all voxels.
_QUANTILE_SAMPLE = 20_000


def intensity_and_mask(image: ArrayLike, mask: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """
    The per-voxel intensity (mean over the channel axis, if any) and the boolean mask of one pair.

    The channel axis is the one extra axis of ``image`` compared to ``mask``, first or last (``(C, H, W)``,
    ``(H, W, 3)`` from PIL, ``(X, Y, Z, C)`` from a Decathlon NIfTI).
    """
    image, mask = np.asarray(image, dtype=np.float64), np.asarray(mask) > 0
    if image.shape == mask.shape:
        return image, mask
    if image.ndim == mask.ndim + 1 and image.shape[:-1] == mask.shape:
        return image.mean(axis=-1), mask
    if image.ndim == mask.ndim + 1 and image.shape[1:] == mask.shape:
        return image.mean(axis=0), mask
    raise ValueError(f"image shape {image.shape} does not match mask shape {mask.shape} up to one channel axis")


def best_threshold_dice(pairs: Iterable[tuple[ArrayLike, ArrayLike]], num_thresholds: int = 64) -> float:
    """
    The highest mean Dice over ``pairs`` that one global threshold achieves, predicting either ``intensity > t`` or
    ``intensity <= t`` for every image alike.

    Candidate thresholds are ``num_thresholds`` quantiles of the pooled foreground intensities plus as many of all
    pooled intensities, so the search is dense where the foreground lies. A pair whose mask and prediction are both
    empty scores 1, as it is a correct answer.

    Args:
        pairs: (image, mask) arrays; the mask is binary (non-zero is foreground), the image has the mask's shape or one
            more channel axis, first or last.
        num_thresholds: quantiles taken from each pool.

    Returns:
        the best mean Dice in [0, 1].
    """
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    prepared = []
    fg_pool, all_pool = [], []
    for image, mask in pairs:
        intensity, fg = intensity_and_mask(image, mask)
        flat = intensity.ravel()
        prepared.append((np.sort(flat), np.sort(intensity[fg])))
        all_pool.append(flat[:: max(1, flat.size // _QUANTILE_SAMPLE)])
        fg_values = intensity[fg]
        if fg_values.size:
            fg_pool.append(fg_values[:: max(1, fg_values.size // _QUANTILE_SAMPLE)])
    if not prepared:
        raise ValueError("best_threshold_dice needs at least one (image, mask) pair")
    levels = np.linspace(0.0, 1.0, num_thresholds)
    thresholds = np.quantile(np.concatenate(all_pool), levels)
    if fg_pool:
        thresholds = np.concatenate([thresholds, np.quantile(np.concatenate(fg_pool), levels)])
    # Nudge each candidate just below itself as well, so ">" can also include the voxels equal to a quantile.
    thresholds = np.unique(np.concatenate([thresholds, np.nextafter(thresholds, -np.inf)]))
    dice_above = np.zeros_like(thresholds)
    dice_below = np.zeros_like(thresholds)
    for values, fg_values in prepared:
        total, ground = values.size, fg_values.size
        predicted_above = total - np.searchsorted(values, thresholds, side="right")
        hits_above = ground - np.searchsorted(fg_values, thresholds, side="right")
        predicted_below, hits_below = total - predicted_above, ground - hits_above
        for predicted, hits, out in (
            (predicted_above, hits_above, dice_above),
            (predicted_below, hits_below, dice_below),
        ):
            denominator = predicted + ground
            out += np.where(denominator > 0, 2.0 * hits / np.maximum(denominator, 1), 1.0)
    return float(max(dice_above.max(), dice_below.max()) / len(prepared))
