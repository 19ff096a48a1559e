from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from monai_pruning.report import PruningHistory
from monai_pruning.report.history import cut_score_summary
from monai_pruning.report.plots import (
    plot_channel_distances,
    plot_cut_scores,
    plot_feature_map_comparison,
    plot_feature_map_grid,
)


def _maps(channels: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(channels, 12, 10, generator=torch.Generator().manual_seed(seed))


def test_feature_map_grid_is_written_and_the_same_maps_give_the_same_file(tmp_path):
    first = plot_feature_map_grid(_maps(10), tmp_path / "a.png", title="layer")
    second = plot_feature_map_grid(_maps(10), tmp_path / "b.png", title="layer")
    other = plot_feature_map_grid(_maps(10, seed=1), tmp_path / "c.png", title="layer")
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert imread(str(first)).shape[2] in (3, 4)


def test_feature_map_grid_refuses_maps_that_are_not_one_2d_map_per_channel(tmp_path):
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        plot_feature_map_grid(torch.zeros(4, 3, 5, 5), tmp_path / "a.png")
    with pytest.raises(ValueError, match=".png"):
        plot_feature_map_grid(_maps(2), tmp_path / "a.jpg")


def test_channel_distances_need_a_square_matrix(tmp_path):
    assert plot_channel_distances(torch.rand(5, 5), tmp_path / "d.png").is_file()
    with pytest.raises(ValueError, match="square"):
        plot_channel_distances(torch.rand(5, 4), tmp_path / "d.png")


def test_comparison_shows_networks_of_different_widths_side_by_side(tmp_path):
    path = plot_feature_map_comparison({"baseline": _maps(16), "sauron": _maps(3), "taylorfo": _maps(9)},
                                       tmp_path / "cmp.png", title="layer")
    single = plot_feature_map_comparison({"baseline": _maps(16)}, tmp_path / "one.png", title="layer")
    assert imread(str(path)).shape[1] > imread(str(single)).shape[1]
    with pytest.raises(ValueError, match="non-empty"):
        plot_feature_map_comparison({}, tmp_path / "none.png")


def test_cut_summary_compares_the_removed_scores_with_the_kept_ones_leaving_out_excluded_channels():
    scores = torch.tensor([0.0, 0.2, 0.9, 1.4, 0.4, 2.0, float("inf")])
    summary = cut_score_summary(scores, removed=[1, 4], exclude=[0])
    assert summary == {
        "removed": 2,
        "removed_median": pytest.approx(0.3),
        "removed_max": pytest.approx(0.4),
        "kept_min": pytest.approx(0.9),  # channel 0 (the reference) left out; inf ignored
        "kept_median": pytest.approx(1.4),
    }
    nothing_kept = cut_score_summary([0.5, 0.1], removed=[0, 1])
    assert nothing_kept["kept_min"] is None and nothing_kept["removed_max"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="out of range"):
        cut_score_summary([0.5, 0.1], removed=[2])


def test_cut_summaries_go_through_the_history_files_and_are_plotted_per_group(tmp_path):
    history = PruningHistory()
    history.append({"epoch": 1, "cut_scores": {}})
    history.append({"epoch": 2, "cut_scores": {"enc": cut_score_summary(np.array([0.1, 0.5, 2.0]), [0])}})
    history.append({"epoch": 3, "cut_scores": {"enc": cut_score_summary([0.3, 3.0], [0]),
                                               "dec": cut_score_summary([0.2, 0.4, 5.0], [0, 1])}})
    history.write_csv(tmp_path / "h.csv")
    header = (tmp_path / "h.csv").read_text().splitlines()[0].split(",")
    assert "cut_scores/enc/removed_max" in header and "cut_scores/dec/kept_min" in header
    path = plot_cut_scores(history, tmp_path / "cuts.png", threshold=1.0)
    assert path.is_file()
    log_path = plot_cut_scores(history, tmp_path / "cuts_log.png", log_y=True)
    assert log_path.read_bytes() != path.read_bytes()
    with pytest.raises(ValueError, match="no row"):
        plot_cut_scores([{"epoch": 1, "cut_scores": {}}, {"epoch": 2}], tmp_path / "none.png")
