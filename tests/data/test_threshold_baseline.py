"""The single-threshold Dice baseline."""

from __future__ import annotations

import numpy as np
import pytest

from monai_pruning.data import best_threshold_dice


def _square(value_in: float, value_out: float, channels: int | None = None):
    mask = np.zeros((20, 20), dtype=bool)
    mask[5:12, 6:14] = True
    image = np.where(mask, value_in, value_out).astype(np.float32)
    if channels:
        image = np.repeat(image[..., None], channels, axis=-1)
    return image, mask


def test_bright_object_on_dark_background_is_found_exactly():
    assert best_threshold_dice([_square(10.0, 0.0)]) == pytest.approx(1.0)


def test_dark_object_is_found_by_a_below_threshold():
    assert best_threshold_dice([_square(-5.0, 3.0), _square(-4.0, 2.0)]) == pytest.approx(1.0)


def test_one_threshold_must_serve_all_images():
    # Image 1: object 10 on 0; image 2: object 0 on 10. Any single rule fails on one of them.
    assert best_threshold_dice([_square(10.0, 0.0), _square(0.0, 10.0)]) == pytest.approx(0.5, abs=0.05)


def test_object_with_background_intensity_scores_low():
    rng = np.random.default_rng(0)
    image, mask = _square(0.0, 0.0)
    image = image + rng.normal(0, 1, image.shape)
    assert best_threshold_dice([(image, mask)]) < 0.35


def test_channel_axis_first_or_last_is_averaged():
    last = _square(10.0, 0.0, channels=3)
    first = (np.moveaxis(last[0], -1, 0), last[1])
    assert best_threshold_dice([last]) == pytest.approx(1.0)
    assert best_threshold_dice([first]) == pytest.approx(1.0)


def test_mismatched_shapes_and_empty_input_raise():
    with pytest.raises(ValueError, match="does not match mask shape"):
        best_threshold_dice([(np.zeros((4, 5)), np.zeros((5, 4)))])
    with pytest.raises(ValueError, match="at least one"):
        best_threshold_dice([])
