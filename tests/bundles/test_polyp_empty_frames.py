"""How the polyp bundle's Dice scores frames without a polyp (PolypGen has 125): one rule in validation and evaluation."""

from __future__ import annotations

import pytest
import torch
from monai.bundle import ConfigParser

from tests.bundles.bundle_cli import BUNDLES

POLYP = BUNDLES / "polyp_endoscopy_segmentation" / "configs"


def _metric(overlays: tuple[str, ...], metric_id: str):
    parser = ConfigParser()
    parser.read_config([str(POLYP / "train.json"), *(str(POLYP / name) for name in overlays)])
    return parser.get_parsed_content(metric_id, instantiate=True)


def _one_hot(mask: torch.Tensor) -> torch.Tensor:
    return torch.stack([1 - mask, mask])


@pytest.mark.parametrize(
    "overlays, metric_id",
    [
        ((), "validate::key_metric::val_mean_dice"),
        ((), "train::key_metric::train_mean_dice"),
        (("evaluate.json",), "validate::key_metric::test_mean_dice"),
    ],
)
def test_empty_frame_scores_one_when_nothing_is_predicted_and_zero_for_a_false_polyp(overlays, metric_id):
    metric = _metric(overlays, metric_id).metric_fn
    empty = torch.zeros(8, 8)
    false_polyp = empty.clone()
    false_polyp[2:4, 2:4] = 1
    polyp = false_polyp.clone()
    preds = torch.stack([_one_hot(empty), _one_hot(false_polyp), _one_hot(polyp)])
    labels = torch.stack([_one_hot(empty), _one_hot(empty), _one_hot(polyp)])
    scores = metric(y_pred=preds, y=labels).flatten().tolist()
    assert scores == [1.0, 0.0, 1.0]
