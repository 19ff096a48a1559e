"""What one pruning step of a Torch-Pruning peer run does to its starting network, before any training.

    python benchmarks/peer_step_probe.py /tmp/seeds_brain/seed1/tp_l1 [--per_group]

A peer run of ``pruning_benchmark.py`` that predicts nothing (Dice 0) could have been broken by our pipeline (the
surgery, the optimizer, the training after a cut) or by the peer's own choice of channels. This takes the run's
starting network (the baseline of the same work folder, ``<work>/baseline/models/model.pt``) and the peer's settings
(from the run's ``runs/run_record.json``), lets :class:`torch_pruning_peer.TorchPruningPeer` take its first epoch's
steps exactly as in the run, and reports:

- the MACs removed, and the channels cut per group (found by carrying every weight element's position through the cut
  in ``.grad``, which Torch-Pruning slices with the weight);
- whether our engine, cutting the same channels from a copy, gives the same output (largest absolute difference): the
  surgery oracle on this network;
- the validation Dice (the bundle's validation, the run's split) before and right after the cut, and with
  ``--per_group`` after cutting each group's channels alone.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import logging
import sys
import types
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monai_pruning.engine import ChannelPruner, load_pruned_network  # noqa: E402
from monai_pruning.measure import count_macs  # noqa: E402
from torch_pruning_peer import TorchPruningPeer, element_positions  # noqa: E402


def tag_positions(network: torch.nn.Module) -> None:
    """Set every parameter's ``.grad`` to its elements' positions, for :func:`removed_channels`."""
    for name, param in network.named_parameters():
        param.grad = element_positions(name, param)


def removed_channels(cut: torch.nn.Module, original: torch.nn.Module, pruner: ChannelPruner) -> dict[str, list[int]]:
    """
    Channels of each prunable group of ``original`` (its ``pruner``) that are gone from ``cut``, read from the element
    positions ``cut``'s first producer of the group still carries in ``.grad`` (:func:`tag_positions` before the cut).
    A transposed convolution's weight is ``[in, out, *kernel]``, any other's ``[out, in, *kernel]``.
    """
    cut_modules, original_modules = dict(cut.named_modules()), dict(original.named_modules())
    removals = {}
    for name, group in pruner.prunable_groups.items():
        conv = group.producers[0]
        before, positions = original_modules[conv].weight, cut_modules[conv].weight.grad
        if positions is None:
            raise ValueError(f"{conv}: no element positions in .grad (tag_positions before the cut)")
        positions = positions.flatten().long()
        if isinstance(original_modules[conv], torch.nn.modules.conv._ConvTransposeNd):
            kept = (positions // before[0, 0].numel()) % before.shape[1]
        else:
            kept = positions // before[0].numel()
        removed = sorted(set(range(group.size)) - set(kept.tolist()))
        if removed:
            removals[name] = removed
    return removals


def first_peer_step(network: torch.nn.Module, peer: TorchPruningPeer, example_shape: tuple[int, ...]) -> dict[str, Any]:
    """
    ``peer``'s steps of epoch 1 on ``network`` (changed in place), and the same channels cut by our engine from a copy
    of the network as it was: ``{"removals", "macs_before", "macs_after", "ours", "max_difference"}``.
    """
    sample_shape = (1, *example_shape[1:])
    original = copy.deepcopy(network).eval()
    pruner = ChannelPruner(original, sample_shape)
    macs_before = count_macs(original, sample_shape)
    network.train()
    tag_positions(network)
    engine = types.SimpleNamespace(state=types.SimpleNamespace(epoch=1), network=network,
                                   optimizer=torch.optim.AdamW(network.parameters()),
                                   logger=logging.getLogger("peer_step_probe"))
    network.zero_grad = lambda *args, **kwargs: None  # the peer clears .grad after its cut: keep the positions
    try:
        peer(engine)
    finally:
        del network.zero_grad
    removals = removed_channels(network, original, pruner)
    network.zero_grad(set_to_none=True)
    ours = copy.deepcopy(original)
    ChannelPruner(ours, sample_shape).cut(removals)
    network.eval()
    ours.eval()
    sample = torch.randn(sample_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        difference = float((network(sample) - ours(sample)).abs().max())
    return {"removals": removals, "macs_before": macs_before, "macs_after": count_macs(network, sample_shape),
            "ours": ours, "max_difference": difference}


def _typed(value: Any) -> Any:
    """A run record's override string as the value the bundle got (``"False"`` -> False); other strings as they are."""
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _parser(config: Mapping[str, Any], bundle_root: Path) -> ConfigParser:
    parser = ConfigParser(copy.deepcopy(dict(config)))
    parser["bundle_root"] = str(bundle_root)  # the run's split.json and data lie under it
    parser["validate"]["handlers"] = {}  # no checkpoint saving or logging into the run's folder
    return parser


def validator(config: Mapping[str, Any], bundle_root: Path) -> Callable[[torch.nn.Module], float]:
    """
    The bundle's key validation metric on the run's validation split, as a function of the network: the evaluator
    and its data are built once and each call runs it on another network.
    """
    evaluator = _parser(config, bundle_root).get_parsed_content("validate#evaluator")
    evaluator.logger.setLevel(logging.WARNING)

    def validation_dice(network: torch.nn.Module) -> float:
        evaluator.network = network
        evaluator.run()
        return float(evaluator.state.metrics[evaluator.state.key_metric_name])

    return validation_dice


def probe(peer_run: Path, per_group: bool = False) -> dict[str, Any]:
    """The first step of ``peer_run`` (a pruning_benchmark.py Torch-Pruning run folder) on its work folder's baseline."""
    baseline = peer_run.parent / "baseline"
    record_file, checkpoint = peer_run / "runs" / "run_record.json", baseline / "models" / "model.pt"
    for needed in (record_file, checkpoint, baseline / "runs" / "run_record.json"):
        if not needed.is_file():
            raise SystemExit(f"peer_step_probe: {needed} is missing (a pruning_benchmark.py peer run and its baseline)")
    config = json.loads(record_file.read_text())["config"]
    if "peer" not in config:
        raise SystemExit(f"peer_step_probe: {record_file} is not a Torch-Pruning peer run (no 'peer' in its config)")
    base_config = json.loads((baseline / "runs" / "run_record.json").read_text())["config"]
    # command-line overrides are kept in the run record as the strings they were typed as ("False", "142874448")
    settings = {key: _typed(value) for key, value in config["peer"].items()}
    if settings["importance"] != "l1":
        raise SystemExit(f"peer_step_probe: {peer_run} is a {settings['importance']!r} peer; only the L1 peer is "
                         "probed (Taylor importance needs the training loop's gradients)")
    base_parser = _parser(base_config, baseline)
    example_shape = tuple(int(s) for s in base_parser.get_parsed_content("example_shape"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = load_pruned_network(base_parser.get_parsed_content("network_def"), str(checkpoint))
        validation_dice = validator(base_config, baseline)
        before = validation_dice(network)
        peer = TorchPruningPeer(importance=settings["importance"], target_macs=int(settings["target_macs"]),
                                steps=int(settings["steps"]), example_shape=example_shape,
                                global_pruning=bool(settings["global_pruning"]))
        original = copy.deepcopy(network)
        step = first_peer_step(network, peer, example_shape)
        result = {"peer_run": str(peer_run), "importance": peer.importance, "global_pruning": peer.global_pruning,
                  "macs_removed": 1.0 - step["macs_after"] / step["macs_before"],
                  "epoch_1_target_removed": (peer.start_macs - peer.target_macs) / peer.steps / peer.start_macs,
                  "channels_cut": {g: len(v) for g, v in step["removals"].items()},
                  "max_output_difference_vs_our_engine": step["max_difference"],
                  "validation_dice_before": before,
                  "validation_dice_after": validation_dice(network),
                  "validation_dice_after_our_cut": validation_dice(step["ours"])}
        if per_group:
            alone = {}
            for name, removed in step["removals"].items():
                single = copy.deepcopy(original)
                ChannelPruner(single, (1, *example_shape[1:])).cut({name: removed})
                alone[name] = validation_dice(single)
                print(f"  {name}: {len(removed)} channel(s) cut alone -> validation Dice {alone[name]:.4f}", flush=True)
            result["validation_dice_group_alone"] = alone
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer_run", type=Path, help="a Torch-Pruning peer run folder, e.g. <work>/tp_l1")
    parser.add_argument("--per_group", action="store_true", help="also the validation Dice of each group's cut alone")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = probe(args.peer_run, per_group=args.per_group)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
