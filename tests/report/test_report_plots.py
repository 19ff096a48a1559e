from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from monai_pruning.report import PruningHistory, plot_channel_history, plot_prediction_overlay, plot_pruning_curve


def _assert_png(path, min_size=(200, 200)):
    assert path.is_file()
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 0  # something was drawn
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def _history(groups: int, epochs: int = 6) -> list[dict]:
    return [
        {
            "epoch": epoch,
            "macs": 2.0e9 * 0.8**epoch,
            "widths": {f"layer.{g}": max(1, 64 - epoch * (g % 7)) for g in range(groups)},
        }
        for epoch in range(epochs)
    ]


@pytest.mark.parametrize("groups, log_y", [(5, False), (30, True)])
def test_plot_channel_history_writes_png_for_few_and_many_groups(tmp_path, groups, log_y):
    path = plot_channel_history(_history(groups), tmp_path / "channels.png", log_y=log_y)
    assert path == tmp_path / "channels.png"
    _assert_png(path)


def test_plot_channel_history_marks_draw_a_labelled_vertical_line_and_nothing_else(tmp_path):
    from matplotlib.image import imread

    plain = imread(plot_channel_history(_history(5), tmp_path / "plain.png"))
    marked = imread(plot_channel_history(_history(5), tmp_path / "marked.png", marks={"target reached": 3}))
    changed = np.abs(marked - plain).sum(axis=-1) > 0
    columns = np.flatnonzero(changed.any(axis=0))
    rows = np.flatnonzero(changed.any(axis=1))
    assert columns.size and columns.max() - columns.min() < 0.05 * plain.shape[1]  # one narrow column: line + label
    assert rows.max() - rows.min() > 0.6 * plain.shape[0]  # through both panels
    with pytest.raises(ValueError, match=r"mark 'stop' must be a number on the 'epoch' axis"):
        plot_channel_history(_history(5), tmp_path / "bad.png", marks={"stop": "six"})


def test_plot_channel_history_accepts_a_history_without_macs_or_epochs(tmp_path):
    history = PruningHistory([{"widths": {"a": 8, "b": 4}}, {"widths": {"a": 6}}])
    _assert_png(plot_channel_history(history, tmp_path / "plots" / "channels.png"))


@pytest.mark.parametrize(
    "rows, message",
    [
        ([], "no rows to plot"),
        ([{"epoch": 1, "macs": 3}], "no row has a 'widths' dict"),
        ("widths", "rows must be a list of dicts"),
        ([{"widths": {}}, 3], "row 1 is a int"),
    ],
)
def test_plot_channel_history_rejects_unusable_rows(tmp_path, rows, message):
    with pytest.raises(ValueError, match=message):
        plot_channel_history(rows, tmp_path / "channels.png")
    assert not (tmp_path / "channels.png").exists()


def test_plot_pruning_curve_writes_png_with_rows_in_any_order(tmp_path):
    rows = [{"macs": 1e9 * r, "dice": 0.5 + 0.3 * r} for r in (1.0, 0.2, 0.6, 0.4)] + [{"macs": 5e8}]
    _assert_png(plot_pruning_curve(rows, tmp_path / "curve.png", label="one-shot"))


def test_plot_pruning_curve_rejects_rows_without_both_quantities_and_non_png_paths(tmp_path):
    with pytest.raises(ValueError, match="no row has numbers in both 'macs' and 'dice'"):
        plot_pruning_curve([{"macs": 1.0}, {"dice": 0.5}], tmp_path / "curve.png")
    with pytest.raises(ValueError, match="no rows to plot"):
        plot_pruning_curve([], tmp_path / "curve.png")
    with pytest.raises(ValueError, match="path must end with .png"):
        plot_pruning_curve([{"macs": 1.0, "dice": 0.5}], tmp_path / "curve.jpg")


def _square_masks(shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((1, *shape), dtype=np.int64)
    label[0, 10:30, 10:30] = 1
    label[0, 35:45, 5:15] = 2
    prediction = np.zeros((1, *shape), dtype=np.float32)
    prediction[0, 12:32, 8:30] = 0.9  # probabilities: thresholded at 0.5
    return label, prediction


def test_plot_prediction_overlay_draws_2d_grey_image(tmp_path):
    label, prediction = _square_masks((48, 40))
    image = np.random.default_rng(0).random((1, 48, 40))
    _assert_png(plot_prediction_overlay(image, label, prediction, tmp_path / "overlay.png", title="case 7"))


def test_plot_prediction_overlay_draws_rgb_tensor_image_with_one_hot_masks(tmp_path):
    image = torch.rand(3, 48, 40)
    label = torch.zeros(2, 48, 40)
    label[1, 5:20, 5:20] = 1
    label[0] = 1 - label[1]
    path = plot_prediction_overlay(
        image, label, label.clone(), tmp_path / "overlay.png", include_background=False, transpose=True
    )
    _assert_png(path)


def test_plot_prediction_overlay_shows_middle_or_chosen_slice_of_3d_volume(tmp_path):
    label, prediction = _square_masks((48, 40))
    volume_label = np.repeat(label[..., None], 9, axis=-1)
    volume_prediction = np.repeat(prediction[..., None], 9, axis=-1)
    image = np.random.default_rng(0).random((1, 48, 40, 9))
    _assert_png(plot_prediction_overlay(image, volume_label, volume_prediction, tmp_path / "middle.png"))
    _assert_png(plot_prediction_overlay(image, volume_label, volume_prediction, tmp_path / "s0.png", slice_index=0))
    with pytest.raises(ValueError, match=r"slice_index must be an int in \[0, 9\)"):
        plot_prediction_overlay(image, volume_label, volume_prediction, tmp_path / "bad.png", slice_index=9)


@pytest.mark.parametrize(
    "image_shape, label_shape, message",
    [
        ((1, 48, 40), (1, 48, 41), r"label shape \(1, 48, 41\) does not match image shape \(1, 48, 40\)"),
        ((1, 48, 40), (48, 40), r"label shape \(48, 40\) does not match image shape"),
        ((48, 40), (1, 48, 40), r"image must be channel-first \(C, H, W\) or \(C, H, W, D\), got shape \(48, 40\)"),
        ((1, 1, 4, 4, 4), (1, 1, 4, 4, 4), "image must be channel-first"),
    ],
)
def test_plot_prediction_overlay_rejects_mismatched_shapes(tmp_path, image_shape, label_shape, message):
    with pytest.raises(ValueError, match=message):
        plot_prediction_overlay(np.zeros(image_shape), np.zeros(label_shape), np.zeros(image_shape), tmp_path / "o.png")
    assert not (tmp_path / "o.png").exists()


def test_plot_prediction_overlay_rejects_an_image_passed_as_label(tmp_path):
    noise = np.arange(48 * 40).reshape(1, 48, 40)
    with pytest.raises(ValueError, match="label has 1919 distinct values"):
        plot_prediction_overlay(noise, noise, noise, tmp_path / "o.png")


def _red_pixels(path) -> int:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB")).astype(int)
    return int(((rgb[..., 0] > 200) & (rgb[..., 1] < 60) & (rgb[..., 2] < 60)).sum())


def test_plot_prediction_overlay_draws_the_predicted_contour(tmp_path):
    label, prediction = _square_masks((48, 40))
    label[label == 2] = 0  # one class: prediction drawn in red
    black = np.zeros((1, 48, 40))
    without = _red_pixels(plot_prediction_overlay(black, label, np.zeros_like(prediction), tmp_path / "empty.png"))
    with_contour = _red_pixels(plot_prediction_overlay(black, label, prediction, tmp_path / "full.png"))
    assert with_contour > without + 200
