"""How well each channel criterion ranks channels by what removing them costs, measured channel by channel.

    python benchmarks/criterion_fidelity.py /work/runs/demo_peers_polyp/baseline \\
        /work/runs/demo_peers_polyp/baseline/models/model_baseline.pt --out /tmp/fidelity \\
        --set demo_dir=/work/runs/demo_peers_polyp/data/demo

The *removal cost* of a channel is the increase of the training loss on a fixed set of batches when that channel
alone is removed: its maps are zeroed where they enter every consumer (the convolutions reading it), which is what
physical removal does (tested against ``ChannelPruner`` surgery). On the same batches every criterion scores every
prunable channel:

- ``taylorfo``: TaylorFO's importance as the bundles run it (per-sample unit-norm output gradient, ``|a x g|`` summed
  over samples; ``monai_pruning.handlers.taylorfo_scoring.score_channels``), in loss units, no MAC normalisation;
- ``weight_gradient``: ``|weight x gradient|`` with Torch-Pruning's GroupTaylor defaults, each group divided by its
  mean score (``monai_pruning.criteria.weight_gradient_importance``), what the ``weight_taylor`` peer ranks globally;
- ``weight_gradient_raw``: the same without the per-group mean normalisation;
- ``filter_l1``: the L1 norm of the filters producing the channel (Li et al. 2017; ranked per layer by that peer).

Per group it gives the Spearman rank correlation of each criterion with the removal costs (1: the criterion orders
the group's channels as removing them one at a time costs), and over all channels at once the correlation and the
*lowest quarter*: the quarter of all prunable channels a global ranking by the criterion cuts first (every group
keeping 2 channels, as the engine's floor), with its cost twice, as the sum of its channels' removal costs and as the
loss increase when the whole quarter is removed at once (no fine-tuning), and the groups losing the largest share of
their channels to it. The removal costs themselves, as a ranking (``single_costs``), are given beside the criteria:
costs measured one channel at a time need not add up when channels go together.

It also gives, per group, ``sum(w * g) / sum(|w * g|)`` over the weights of the convolutions producing it: 0 where a
normalisation without affine parameters follows (the layer's output does not change when its filter is scaled, so
the first-order estimate of removing the filter is exactly 0).

Writes ``criterion_fidelity.json`` and ``criterion_fidelity.md`` to ``--out``. In-sample on purpose: the criteria and
the removal costs see the same batches, so what is measured is how well each criterion approximates removal on the
data it scores, not generalisation. It costs one forward pass over the batches per prunable channel (the polyp
DynUNet: 1712 channels, about 35 minutes for 16 frames at 128x128 on one busy core).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from scipy.stats import spearmanr
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from pruning_benchmark import cli_overrides  # noqa: E402

from monai_pruning.criteria import PerSampleLoss, select_global_lowest, weight_gradient_importance  # noqa: E402
from monai_pruning.criteria.weight_gradient import WEIGHTED_MODULES, channel_weight_sums  # noqa: E402
from monai_pruning.engine import ChannelGraph, ChannelPruner  # noqa: E402
from monai_pruning.engine.record import load_pruned_network  # noqa: E402
from monai_pruning.handlers.feature_taps import FeatureTaps  # noqa: E402
from monai_pruning.handlers.taylorfo_scoring import (  # noqa: E402
    batch_norms_in_eval,
    score_channels,
    summed_weight_gradients,
)
from monai_pruning.report.comparison import markdown_table, parse_overrides  # noqa: E402

CRITERIA = ("taylorfo", "weight_gradient", "weight_gradient_raw", "filter_l1")
#: Criteria whose scores share one scale across groups, so a global ranking of them means something.
GLOBAL_CRITERIA = ("taylorfo", "weight_gradient", "weight_gradient_raw")
Batches = Sequence[tuple[torch.Tensor, torch.Tensor]]


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties at their average rank); None for fewer than 3 values or a constant side."""
    if len(a) != len(b):
        raise ValueError(f"spearman: {len(a)} values against {len(b)}")
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


def mean_loss(network: nn.Module, batches: Batches, loss_function: Callable[..., torch.Tensor]) -> float:
    """
    The loss averaged over ``batches`` (each batch's loss reduced with ``.mean()``), without gradients, in the mode
    the criteria score in: training mode (deep supervision on) with BatchNorm in eval mode.
    """
    with torch.no_grad(), batch_norms_in_eval(network):
        return float(np.mean([float(loss_function(network(x), y).mean()) for x, y in batches]))


def removal_costs(
    network: nn.Module,
    taps: Mapping[str, Sequence[tuple[str, Sequence[int]]]],
    batches: Batches,
    loss_function: Callable[..., torch.Tensor],
    progress: Callable[[str, int], None] | None = None,
) -> tuple[float, dict[str, list[float]]]:
    """
    The loss on ``batches`` and, per group of ``taps`` (``ChannelGraph.consumer_taps()``), its increase when each
    channel alone is removed: the channel zeroed at every position where it enters a consumer, for the duration of
    the forward passes (the network is left as it was).
    """
    modules = dict(network.named_modules())
    base = mean_loss(network, batches, loss_function)
    costs: dict[str, list[float]] = {}
    for group, entries in taps.items():
        size = len(entries[0][1])
        costs[group] = []
        for channel in range(size):
            handles = [modules[name].register_forward_pre_hook(_zeroing_hook(positions[channel]))
                       for name, positions in entries]
            try:
                costs[group].append(mean_loss(network, batches, loss_function) - base)
            finally:
                for handle in handles:
                    handle.remove()
        if progress is not None:
            progress(group, size)
    return base, costs


def _zeroing_hook(position: int) -> Callable[..., Any]:
    def hook(module: nn.Module, args: tuple) -> tuple:
        inputs = args[0].clone()
        inputs[:, position] = 0
        return (inputs, *args[1:])

    return hook


def _producer_sums(graph: ChannelGraph, modules: Mapping[str, nn.Module], groups: Iterable[str],
                   values: Callable[[str, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Per group channel, ``values(name, weight)`` summed over the filters of the convolutions producing it."""
    return channel_weight_sums(graph, modules, values, groups, roles=("out",))[0]


def filter_l1(graph: ChannelGraph, modules: Mapping[str, nn.Module], groups: Iterable[str]) -> dict[str, torch.Tensor]:
    """The L1 norm of each channel's filters in the convolutions producing it."""
    return _producer_sums(graph, modules, groups, lambda name, weight: weight.abs())


def producer_signed_share(graph: ChannelGraph, modules: Mapping[str, nn.Module], groups: Iterable[str],
                          gradients: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """
    Per group, ``|sum(w * g)| / sum(|w * g|)`` over the weights of the convolutions producing it, ``g`` the loss
    gradient: the signed first-order estimate of removing every filter at once relative to Torch-Pruning's unsigned
    one. 0 (to rounding) where the output is invariant to the filters' scale.
    """
    signed = _producer_sums(graph, modules, groups, lambda name, weight: weight * gradients[name])
    unsigned = _producer_sums(graph, modules, groups, lambda name, weight: (weight * gradients[name]).abs())
    return {name: float(signed[name].sum().abs() / unsigned[name].sum()) if unsigned[name].sum() > 0 else 0.0
            for name in signed}


def criterion_scores(network: nn.Module, pruner: ChannelPruner, batches: Batches,
                     loss_function: Callable[..., torch.Tensor]) -> tuple[dict[str, dict[str, list[float]]], dict]:
    """Every criterion of :data:`CRITERIA` on every prunable group, and the producers' signed share per group."""
    groups = list(pruner.prunable_groups)
    consumer_taps = pruner.graph.consumer_taps()
    taps = FeatureTaps(network, {g: consumer_taps[g] for g in groups}, gradients=True)
    try:
        taylorfo = score_channels(network, taps, batches, loss_function=PerSampleLoss(loss_function))
    finally:
        taps.remove()
    modules = dict(network.named_modules())
    convolutions = sorted({slot.module for slot in pruner.graph.slots
                           if isinstance(modules[slot.module], WEIGHTED_MODULES)})
    gradients = summed_weight_gradients(network, convolutions, batches, loss_function)
    scores = {
        "taylorfo": taylorfo,
        "weight_gradient": weight_gradient_importance(pruner.graph, modules, gradients, groups, normalize=True),
        "weight_gradient_raw": weight_gradient_importance(pruner.graph, modules, gradients, groups, normalize=False),
        "filter_l1": filter_l1(pruner.graph, modules, groups),
    }
    as_lists = {c: {g: [float(v) for v in scores[c][g]] for g in groups} for c in CRITERIA}
    return as_lists, producer_signed_share(pruner.graph, modules, groups, gradients)


def lowest_quarter(scores: Mapping[str, Sequence[float]], quarter: float = 0.25,
                   min_channels: int = 2) -> dict[str, list[int]]:
    """
    The ``quarter`` of all channels that a global ranking by ``scores`` cuts first, each group keeping at least
    ``min_channels`` (the engine's floor): ``select_global_lowest`` on the scores as they are.
    """
    total = sum(len(values) for values in scores.values())
    as_tensors = {g: torch.as_tensor(list(v), dtype=torch.float64) for g, v in scores.items()}
    return select_global_lowest(as_tensors, int(round(quarter * total)), min_channels=min_channels)


def fidelity(scores: Mapping[str, Mapping[str, Sequence[float]]], costs: Mapping[str, Sequence[float]],
             quarter: float = 0.25, min_channels: int = 2, most_hit: int = 3) -> dict[str, Any]:
    """
    Per criterion: Spearman per group against the removal costs, and for :data:`GLOBAL_CRITERIA` over all channels,
    with the lowest ``quarter`` of the global ranking (:func:`lowest_quarter`: the channels chosen, their costs
    summed, and the ``most_hit`` groups losing the largest share of their channels). The removal costs themselves,
    as a ranking, are given under ``"single_costs"``.
    """
    groups = list(costs)
    flat_costs = np.concatenate([np.asarray(costs[g], dtype=np.float64) for g in groups])

    def lowest(ranking: Mapping[str, Sequence[float]]) -> dict[str, Any]:
        chosen = lowest_quarter(ranking, quarter, min_channels)
        share = {g: len(chosen.get(g, [])) / len(costs[g]) for g in groups}
        hit = sorted(groups, key=lambda g: -share[g])[:most_hit]
        return {"chosen": {g: list(map(int, idx)) for g, idx in chosen.items() if idx},
                "channels": sum(len(idx) for idx in chosen.values()),
                "cost": float(sum(costs[g][i] for g, idx in chosen.items() for i in idx)),
                "most_hit": [{"group": g, "share": share[g]} for g in hit]}

    result: dict[str, Any] = {}
    for criterion, per_group in scores.items():
        entry: dict[str, Any] = {"per_group": {g: spearman(per_group[g], costs[g]) for g in groups}}
        if criterion in GLOBAL_CRITERIA:
            flat = np.concatenate([np.asarray(per_group[g], dtype=np.float64) for g in groups])
            entry["global"] = spearman(flat, flat_costs)
            entry["lowest"] = lowest(per_group)
        result[criterion] = entry
    result["single_costs"] = {"lowest": lowest(costs)}
    return result


def joint_removal_costs(network: nn.Module, example_shape: Sequence[int], table: Mapping[str, Any],
                        batches: Batches, loss_function: Callable[..., torch.Tensor],
                        base: float | None = None) -> dict[str, float]:
    """
    Per ranking of a :func:`fidelity` table, the loss increase when its whole lowest quarter is removed at once
    (physically, from a copy of ``network``; no fine-tuning): what the first cuts of a global ranking cost together.
    ``base``: the unpruned network's mean loss on ``batches`` where already measured (:func:`removal_costs`).
    """
    if base is None:
        base = mean_loss(network, batches, loss_function)
    result = {}
    for name, entry in table.items():
        if "lowest" not in entry:
            continue
        pruned = copy.deepcopy(network)
        ChannelPruner(pruned, example_shape).cut(entry["lowest"]["chosen"])
        result[name] = mean_loss(pruned, batches, loss_function) - base
    return result


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:+.2f}"


def markdown(result: Mapping[str, Any]) -> str:
    """The per-group and global tables of a :func:`measure` result."""
    costs, table = result["costs"], result["fidelity"]
    criteria = [c for c in CRITERIA if c in table]
    header = ["group", "channels", "largest cost", *criteria, "producers sum(w g) / sum(|w g|)"]
    rows = [[g, str(len(costs[g])), f"{max(costs[g]):.4f}", *[_cell(table[c]["per_group"][g]) for c in criteria],
             f"{result['signed_share'][g]:.1e}"] for g in costs]
    lines = [f"Loss {result['base_loss']:.4f} on {result['batches']} batches; cost: the loss increase when one channel "
             "is removed; Spearman correlation of each criterion with the cost, per group:", "",
             *markdown_table(header, rows), "",
             f"Over all {sum(len(v) for v in costs.values())} channels. The lowest quarter: what a global ranking cuts "
             "first, every group keeping 2 channels; its cost as the sum of its channels' costs and as the loss "
             "increase when it is removed at once (no fine-tuning); single_costs: the measured costs as the "
             "ranking.", ""]
    summary = []
    for name in [*[c for c in GLOBAL_CRITERIA if c in table], "single_costs"]:
        entry = table[name]
        hit = ", ".join(f"{h['group']} {h['share']:.0%}" for h in entry["lowest"]["most_hit"])
        joint = entry["lowest"].get("joint_cost")
        summary.append([name, _cell(entry.get("global", 1.0)), f"{entry['lowest']['cost']:.4f}",
                        "" if joint is None else f"{joint:.4f}", hit])
    lines += markdown_table(["ranking", "Spearman, all channels", "lowest quarter: costs one at a time, summed",
                             "lowest quarter removed at once", "groups losing the largest share to it"], summary)
    return "\n".join(lines) + "\n"


def fixed_batches(loader: Iterable[Any], count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``count`` (image, label) batches of a bundle data loader, kept so every pass sees the same data."""
    batches = []
    for batch in loader:
        batches.append((torch.as_tensor(batch["image"]), torch.as_tensor(batch["label"])))
        if len(batches) == count:
            break
    if not batches:
        raise ValueError("criterion_fidelity: the data loader gave no batch")
    return batches


def measure(bundle_root: Path, checkpoint: Path, configs: Sequence[str] = ("configs/train.json",),
            overrides: Sequence[str] = (), loader: str = "validate#dataloader", batches: int = 2,
            groups: Sequence[str] | None = None, seed: int = 0) -> dict[str, Any]:
    """Scores, removal costs and their agreement for ``checkpoint`` on the bundle's data (see the module doc)."""
    torch.manual_seed(seed)
    parser = ConfigParser()
    parser.read_config([str(bundle_root / c) for c in configs])
    parser["bundle_root"] = str(bundle_root)
    for key, value in parse_overrides(cli_overrides(list(overrides))).items():
        parser[key] = value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        network = load_pruned_network(parser.get_parsed_content("network_def"), str(checkpoint))
    loss_function = parser.get_parsed_content("loss")
    data = fixed_batches(parser.get_parsed_content(loader), batches)
    example_shape = (1, *data[0][0].shape[1:])
    pruner = ChannelPruner(network, example_shape)
    chosen = list(pruner.prunable_groups) if not groups else list(groups)
    unknown = sorted(set(chosen) - set(pruner.prunable_groups))
    if unknown:
        raise ValueError(f"criterion_fidelity: {unknown} are not prunable groups of the network")
    scores, signed = criterion_scores(network, pruner, data, loss_function)
    scores = {c: {g: v[g] for g in chosen} for c, v in scores.items()}
    consumer_taps = pruner.graph.consumer_taps()
    base, costs = removal_costs(network, {g: consumer_taps[g] for g in chosen}, data, loss_function,
                                progress=lambda g, n: print(f"removal costs: {g} ({n} channels)", flush=True))
    table = fidelity(scores, costs)
    for name, joint in joint_removal_costs(network, example_shape, table, data, loss_function, base).items():
        table[name]["lowest"]["joint_cost"] = joint
    return {"checkpoint": str(checkpoint), "batches": len(data), "batch_shape": list(data[0][0].shape),
            "base_loss": base, "costs": costs, "scores": scores, "signed_share": {g: signed[g] for g in chosen},
            "fidelity": table}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle_root", type=Path, help="the bundle folder (or a benchmark run's copy of it)")
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of the bundle's network, pruned or not")
    parser.add_argument("--out", type=Path, required=True, help="folder for criterion_fidelity.json and .md")
    parser.add_argument("--config", nargs="+", default=["configs/train.json"], help="bundle configs, in order")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. demo_dir=/work/runs/x/data/demo or dataset_dir=/data/PolypGen")
    parser.add_argument("--loader", default="validate#dataloader", help="config id of the data loader to draw from")
    parser.add_argument("--batches", type=int, default=2, help="batches scored and evaluated (fixed)")
    parser.add_argument("--groups", nargs="+", default=None, help="only these prunable groups (default: all)")
    args = parser.parse_args(argv)
    for path, what in ((args.bundle_root / "configs", "a bundle's configs folder"), (args.checkpoint, "a checkpoint")):
        if not path.exists():
            raise SystemExit(f"criterion_fidelity: {path} does not exist ({what})")
    try:
        result = measure(args.bundle_root, args.checkpoint, args.config, args.overrides, args.loader, args.batches,
                         args.groups)
    except ValueError as error:
        raise SystemExit(f"criterion_fidelity: {error}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "criterion_fidelity.json").write_text(json.dumps(result, indent=1))
    text = markdown(result)
    (args.out / "criterion_fidelity.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
