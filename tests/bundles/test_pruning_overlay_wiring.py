"""Every constant a pruning overlay shows its user reaches the handler, and every handler constant is either shown
or deliberately left out: a new constructor argument cannot be forgotten in one of the six overlays."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from monai_pruning.handlers import SauronPruning, TaylorFOPruning

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
OVERLAYS = {"prune_sauron.json": ("sauron", SauronPruning), "prune_taylorfo.json": ("taylorfo", TaylorFOPruning)}
# set by the overlay from other config ids (paths, the validator, the shape, the seed) or left at their defaults:
# logging and plotting details, and TaylorFO's alternatives to the fraction/MACs schedule the overlay uses
NOT_CONSTANTS = {"example_shape", "output_dir", "tensorboard_dir", "summary_writer", "validator", "best_checkpoint",
                 "seed", "name", "plot", "metric_name", "metric_mode"}
NOT_SHOWN = {
    "sauron": set(),
    "taylorfo": {"prune_count", "target_params_reduction", "epoch_level", "baseline_metric", "one_shot_steps",
                 "one_shot_evaluate"},
}


@pytest.mark.parametrize("overlay", sorted(OVERLAYS))
@pytest.mark.parametrize("bundle", sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir()))
def test_overlay_constants_are_exactly_the_handler_constants_and_each_is_wired_under_its_name(bundle, overlay):
    block, handler_class = OVERLAYS[overlay]
    config = json.loads((BUNDLES / bundle / "configs" / overlay).read_text())
    constants, handler = config[block], config["pruning_handler"]
    assert handler["_target_"] == f"monai_pruning.handlers.{handler_class.__name__}"
    assert {key: handler.get(key) for key in constants} == {key: f"@{block}#{key}" for key in constants}
    arguments = set(inspect.signature(handler_class).parameters)
    assert set(constants) == arguments - NOT_CONSTANTS - NOT_SHOWN[block]
