"""Every constant a pruning overlay shows its user reaches the handler, and every handler constant is either shown
or deliberately left out: a new constructor argument cannot be forgotten in one of the six overlays.

The handler lists are dicts of named handlers (``train#handlers``, ``train#output_handlers``, ``validate#handlers``):
overlays address a handler by its name, never by its position, and the order each run gets is pinned here."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from monai_pruning.handlers import SauronPruning, TaylorFOPruning

REPO = Path(__file__).resolve().parents[2]
BUNDLES = REPO / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())
HANDLER_DICTS = ("train#handlers", "train#output_handlers", "validate#handlers")
OVERLAYS = {"prune_sauron.json": ("sauron", SauronPruning), "prune_taylorfo.json": ("taylorfo", TaylorFOPruning)}
# set by the overlay from other config ids (paths, the validator, the shape, the seed) or left at their defaults:
# logging and plotting details, and TaylorFO's alternatives to the fraction/MACs schedule the overlay uses
NOT_CONSTANTS = {"example_shape", "output_dir", "tensorboard_dir", "summary_writer", "validator", "best_checkpoint",
                 "seed", "name", "plot", "metric_name", "metric_mode", "start_checkpoint"}
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


def _all_configs() -> list[Path]:
    return sorted([*BUNDLES.glob("*/configs/*.json"), *(REPO / "benchmarks").rglob("*.json")])


@pytest.mark.parametrize("path", _all_configs(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_config_addresses_a_handler_by_its_position_in_a_list(path):
    text = path.read_text()
    assert not re.findall(r"handlers#\d|handlers\[", text), f"{path}: select handlers by name"
    config = json.loads(text)
    for key in HANDLER_DICTS:
        value = config.get(key)
        if value is None and path.name == "train.json":
            section, name = key.split("#")
            value = config[section][name]
        assert value is None or isinstance(value, dict), f"{path}: {key} must be a dict of named handlers"


def _walk(config: dict, parts: list[str], where: str) -> dict:
    for part in parts:
        assert isinstance(config, dict) and part in config, f"{where}: no {part!r} in {sorted(config)}"
        config = config[part]
    return config


@pytest.mark.parametrize("overlay", ["prune_sauron.json", "prune_taylorfo.json", "evaluate.json", "multi_gpu_train.json"])
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_every_handler_an_overlay_names_exists_in_the_config_it_overlays(bundle, overlay):
    # MONAI would add a `_disabled_` flag for a handler that is not there as a new, useless entry: a renamed handler
    # must fail here instead of silently staying enabled
    merged = json.loads((BUNDLES / bundle / "configs" / "train.json").read_text())
    for key, value in json.loads((BUNDLES / bundle / "configs" / overlay).read_text()).items():
        parts = key.split("#")
        parent = _walk(merged, parts[:-1], f"{overlay}: {key}")
        parent[parts[-1]] = value


def _handler_order(bundle: str, overlays: list[str], rank: int, monkeypatch) -> tuple[list | None, list | None]:
    """The names of the trainer's and the validator's handlers, in order, as a run with ``overlays`` builds them."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / name) for name in ["train.json", *overlays]])
    for key in HANDLER_DICTS:
        for name, handler in parser[key].items():  # a stand-in that keeps the handler's `_disabled_` setting
            parser[f"{key}#{name}"] = {"_target_": "builtins.str", "object": name,
                                       "_disabled_": handler.get("_disabled_", False)}
    if "pruning_handlers" in parser and parser["pruning_handlers"]:
        parser["pruning_handlers"] = ["$'pruning'"]
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: rank)
    return (parser.get_parsed_content("train#trainer#train_handlers"),
            parser.get_parsed_content("validate#evaluator#val_handlers"))


BEFORE = ["lr_schedule", "validation", "data_seeding", "cpu_autocast"]
AFTER = ["progress", "loss_log", "tensorboard", "final_saver"]
VALIDATION = ["stats", "tensorboard"]


@pytest.mark.parametrize(
    "overlays, rank, train, validate",
    [
        ([], 0, BEFORE + AFTER + ["baseline_saver"], VALIDATION + ["best_saver"]),
        (["prune_sauron.json"], 0, BEFORE + ["pruning"] + AFTER, VALIDATION),
        (["prune_taylorfo.json"], 0, BEFORE + ["pruning"] + AFTER, VALIDATION),
        (["prune_taylorfo.json", "multi_gpu_train.json"], 0, BEFORE + ["pruning"] + AFTER, VALIDATION),
        (["prune_sauron.json", "multi_gpu_train.json"], 1, BEFORE + ["pruning"], None),
        (["multi_gpu_train.json"], 0, BEFORE + AFTER + ["baseline_saver"], VALIDATION + ["best_saver"]),
        (["evaluate.json"], 0, BEFORE + AFTER + ["baseline_saver"], ["checkpoint_loader", "stats", "case_metrics"]),
    ],
)
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_each_run_gets_its_handlers_in_the_pinned_order(bundle, overlays, rank, train, validate, monkeypatch):
    """
    Pruning runs after validation (it judges the epoch's metric) and before the logs and savers (they see its cut);
    only the plain training writes the baseline checkpoint; the pruning overlays leave the best checkpoint to the
    pruning handler; other ranks than 0 log and save nothing.
    """
    assert _handler_order(bundle, overlays, rank, monkeypatch) == (train, validate)
