from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_pruning.criteria import delta_prune
from monai_pruning.report.feature_maps import (
    channel_distance_matrix,
    grid_shape,
    label_centre_voxel,
    normalize_maps,
    scaled_index,
    tile_maps,
    window_around,
)


def test_each_map_is_scaled_to_zero_one_on_its_own_and_a_constant_map_becomes_zero():
    generator = torch.Generator().manual_seed(0)
    maps = torch.randn(3, 5, 6, generator=generator) * torch.tensor([1.0, 50.0, 0.01]).reshape(3, 1, 1)
    maps[2] = 7.0
    scaled = normalize_maps(maps)
    assert scaled.shape == (3, 5, 6)
    for channel in (0, 1):
        assert scaled[channel].min() == 0.0 and scaled[channel].max() == pytest.approx(1.0)
    assert not scaled[2].any()
    # only the pattern counts: an affine change of one map's values (positive gain) leaves its picture unchanged
    changed = maps.clone()
    changed[1] = changed[1] * 3.0 + 5.0
    np.testing.assert_allclose(normalize_maps(changed), scaled, atol=1e-6)


def test_normalize_maps_refuses_non_finite_values():
    maps = torch.zeros(2, 4, 4)
    maps[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalize_maps(maps)


@pytest.mark.parametrize("count", list(range(1, 40)) + [64, 100, 256, 257])
def test_grid_is_near_square_and_has_just_enough_rows(count):
    rows, columns = grid_shape(count)
    assert columns == math.ceil(math.sqrt(count))
    assert rows * columns >= count > (rows - 1) * columns


def test_tiles_hold_each_channel_once_row_by_row_with_gaps_between():
    maps = np.arange(5 * 2 * 3, dtype=float).reshape(5, 2, 3)
    mosaic, origins = tile_maps(maps, gap=1)
    rows, columns = grid_shape(5)  # 2 x 3
    assert mosaic.shape == (rows * 3 - 1, columns * 4 - 1)
    assert len(origins) == 5
    for channel, (top, left) in enumerate(origins):
        np.testing.assert_array_equal(mosaic[top : top + 2, left : left + 3], maps[channel])
    assert origins[3] == (3, 0)  # the fourth map starts the second row
    assert np.isnan(mosaic).sum() == mosaic.size - maps.size


def test_distance_matrix_rows_are_delta_prune_with_each_channel_as_the_reference():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(2, 4, 8, 8, generator=generator)
    features[:, 3] = features[:, 0]  # a copy of channel 0
    matrix = channel_distance_matrix(features)
    assert matrix.shape == (4, 4)
    for reference in range(4):
        torch.testing.assert_close(matrix[reference], delta_prune(features, reference))
    assert matrix[0, 3] == pytest.approx(0.0, abs=1e-6) and matrix[3, 0] == pytest.approx(0.0, abs=1e-6)
    assert torch.all(matrix.diagonal() == 0) and matrix.max() <= 1.0 + 1e-6


def test_distance_matrix_of_3d_maps_reduces_over_the_whole_volume():
    generator = torch.Generator().manual_seed(2)
    features = torch.randn(1, 3, 4, 4, 4, generator=generator)
    features[:, 1, :, :, 3] += 5.0  # differs from channel 0 only in the last slice of the last axis
    matrix = channel_distance_matrix(features)
    assert matrix.shape == (3, 3) and matrix[0, 1] > 0.5


def test_label_centre_is_found_through_world_coordinates_of_another_grid():
    label = np.zeros((10, 10, 10))
    label[2:5, 6:9, 1:4] = 1  # centre at voxel (3, 7, 2) of the label grid
    label_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    label_affine[:3, 3] = [10.0, 0.0, -4.0]
    # the image grid: 1 mm voxels, the first axis flipped, origin elsewhere
    image_affine = np.diag([-1.0, 1.0, 1.0, 1.0])
    image_affine[:3, 3] = [40.0, 2.0, 0.0]
    centre = label_centre_voxel(label[None], label_affine, image_affine)
    world = label_affine @ np.array([3.0, 7.0, 2.0, 1.0])
    expected = np.linalg.inv(image_affine) @ world
    np.testing.assert_allclose(centre, expected[:3])
    np.testing.assert_allclose(centre, [40.0 - 16.0, 12.0, 0.0])


def test_an_empty_label_has_no_centre():
    with pytest.raises(ValueError, match="no foreground"):
        label_centre_voxel(np.zeros((4, 4, 4)), np.eye(4), np.eye(4))


def test_window_is_centred_where_it_fits_shifted_at_the_border_and_whole_when_too_small():
    assert window_around([100, 100], [32, 32], [50, 50]) == [(34, 66), (34, 66)]
    assert window_around([100, 100], [32, 32], [3, 99]) == [(0, 32), (68, 100)]
    assert window_around([20, 100, 8], [32, 32, 8], [10, 50, 4]) == [(0, 20), (34, 66), (0, 8)]


def test_scaled_index_picks_the_coarse_slice_covering_the_fine_one():
    assert [scaled_index(i, 32, 4) for i in (0, 7, 8, 31)] == [0, 0, 1, 3]
    assert scaled_index(5, 8, 8) == 5
    with pytest.raises(ValueError):
        scaled_index(8, 8, 4)
