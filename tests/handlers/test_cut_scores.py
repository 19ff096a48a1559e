"""The pruning handlers record, at every cut, the criterion's scores of the channels removed against those kept."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.handlers import SauronPruning, TaylorFOPruning

SHAPE = (2, 1, 16, 16)


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=0, norm="batch")


def _run(handler, epochs: int) -> None:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn((4, *SHAPE[1:]), generator=generator)
    data = [{"image": images[i : i + 2], "label": (images[i : i + 2] > 0.3).float()} for i in (0, 2)]
    net = _unet()
    SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=data, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9), loss_function=nn.BCEWithLogitsLoss(),
        train_handlers=[handler],
    ).run()


def test_sauron_records_delta_prune_relative_to_tau_of_removed_and_kept_channels_at_each_cut(tmp_path):
    handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE, output_dir=tmp_path)
    _run(handler, epochs=2)
    rows = handler.history.rows
    cut_rows = [row for row in rows if row["removed_now"]]
    assert cut_rows
    for row in rows:
        assert set(row["cut_scores"]) == {group for group, count in row["removed"].items() if count}
        for group, summary in row["cut_scores"].items():
            assert summary["removed"] == row["removed"][group]
            assert summary["removed_median"] <= summary["removed_max"] < 1.0  # below tau: that is why they went
            # a kept channel below tau was kept by the floor of two channels (the reference is not counted)
            assert summary["kept_min"] is None or summary["kept_min"] >= 1.0 or row["widths"][group] == 2
    assert (tmp_path / "cut_scores.png").is_file()
    assert "cut_scores/" + next(iter(cut_rows[0]["cut_scores"])) + "/removed_max" in (
        (tmp_path / "pruning_history.csv").read_text().splitlines()[0]
    )


def test_taylorfo_records_the_ranked_importance_of_removed_and_kept_channels_at_each_cut(tmp_path):
    handler = TaylorFOPruning(prune_count=6, example_shape=SHAPE, score_batches=1, tolerance=None, output_dir=tmp_path)
    scored = []
    score = handler.score
    handler.score = lambda engine: scored.append(score(engine)) or scored[-1]
    _run(handler, epochs=2)
    rows = handler.history.rows
    assert len(scored) == 2 and all(row["removed_now"] == 6 for row in rows)
    for row, scores in zip(rows, scored):
        summaries = row["cut_scores"]
        assert sum(summary["removed"] for summary in summaries.values()) == 6
        # the six globally lowest scores were removed: every removed score is below every kept one, in any group
        lowest = torch.cat([values.flatten() for values in scores.values()]).sort().values
        assert max(s["removed_max"] for s in summaries.values()) == pytest.approx(lowest[5].item())
        kept = [s["kept_min"] for s in summaries.values() if s["kept_min"] is not None]
        assert max(s["removed_max"] for s in summaries.values()) <= min(kept)
    assert (tmp_path / "cut_scores.png").is_file()
