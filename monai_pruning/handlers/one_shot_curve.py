"""
One-shot TaylorFO pruning curve: score once, remove more and more of the globally least important channels WITHOUT
fine-tuning, and measure the validation metric, MACs and parameters at each point (the main figure of the TaylorFO
precursor paper; ``docs/taylorfo.md``).

It shows how much of the network is redundant before any retraining, and is the cheap way to choose a pruning target
for the iterative handler. The network given is never changed: every point is cut on a deep copy.
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.engines import default_prepare_batch
from torch import nn

from monai_pruning.criteria import select_global_lowest
from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.pruning_base import preserved_rng
from monai_pruning.handlers.taylorfo_scoring import score_channels
from monai_pruning.measure import measure_complexity
from monai_pruning.report import PruningHistory, plot_pruning_curve

__all__ = ["one_shot_curve", "curve_from_scores", "evaluator_metric_fn", "CURVE_CSV", "CURVE_PNG"]

CURVE_CSV = "one_shot_curve.csv"
CURVE_PNG = "one_shot_curve.png"


def _removal_counts(steps: Sequence[int | float], total: int) -> list[int]:
    """Steps as increasing channel counts: ints are counts, floats in [0, 1] fractions of ``total``."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise ValueError(f"one_shot_curve: `steps` must be a non-empty list of counts or fractions, got {steps!r}.")
    counts = set()
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, (int, float)):
            raise ValueError(f"one_shot_curve: each step must be an int count or a float fraction, got {step!r}.")
        if isinstance(step, float):
            if not 0.0 <= step <= 1.0:
                raise ValueError(f"one_shot_curve: fraction steps must lie in [0, 1], got {step}.")
            counts.add(int(math.floor(step * total + 0.5)))
        elif step < 0:
            raise ValueError(f"one_shot_curve: count steps must be >= 0, got {step}.")
        else:
            counts.add(int(step))
    return sorted(counts | {0})


def curve_from_scores(
    network: nn.Module,
    scores: Mapping[str, torch.Tensor],
    evaluate_fn: Callable[[nn.Module], float],
    example_shape: Sequence[int],
    steps: Sequence[int | float],
    output_dir: str | os.PathLike | None = None,
    min_channels: int = 2,
    metric_name: str = "metric",
) -> list[dict[str, Any]]:
    """
    The one-shot curve for given scores (of ``network``'s current channels): one row per removed-channel count.

    Args:
        network: the trained network; not modified (each point is cut on a deep copy).
        scores: ``{group: (C,) importance}``, e.g. from :func:`~monai_pruning.handlers.taylorfo_scoring.score_channels`.
        evaluate_fn: ``evaluate_fn(network) -> float``, the validation metric of a network.
        example_shape: ``(batch, channels, *spatial)`` to trace with; MACs are for one sample of it (eval mode).
        steps: channel counts to remove (ints) or fractions of the prunable channels (floats); 0 is always added.
        output_dir: where ``one_shot_curve.csv`` and ``one_shot_curve.png`` (metric vs MACs) go; None: no files.
        min_channels: every group keeps at least this many channels.
        metric_name: name of the metric column and axis.

    Returns:
        Rows ``{"requested", "removed", "fraction", "params", "macs", "macs_ratio", "params_ratio", metric_name}``.
        ``removed`` can be below ``requested`` when the groups reach ``min_channels``.
    """
    if not callable(evaluate_fn):
        raise ValueError("one_shot_curve: `evaluate_fn` must be a callable network -> float.")
    with preserved_rng(network):
        probe = ChannelPruner(network, example_shape, min_channels=min_channels)
    groups = probe.prunable_groups
    usable = {g: s for g, s in scores.items() if g in groups}
    total = sum(g.size for g in groups.values())
    rows: list[dict[str, Any]] = []
    reference = None
    for count in _removal_counts(steps, total):
        pruned = copy.deepcopy(network)
        pruner_widths = probe.widths()
        removed = 0
        if count > 0 and usable:
            with preserved_rng(pruned):
                pruner = ChannelPruner(pruned, example_shape, min_channels=min_channels)
                selection = select_global_lowest(
                    usable,
                    count,
                    min_channels={g: groups[g].size - probe.removable(g) for g in usable},
                    unit_sizes={g: groups[g].unit for g in usable},
                )
                removed = sum(pruner.cut({g: idx for g, idx in selection.items() if idx}).values())
                pruner_widths = pruner.widths()
        pruned.eval()
        with preserved_rng(pruned):
            cost = measure_complexity(pruned, (1, *tuple(example_shape)[1:]))
        if reference is None:
            reference = cost
        value = float(evaluate_fn(pruned))
        rows.append(
            {
                "requested": count,
                "removed": removed,
                "fraction": removed / total if total else 0.0,
                "params": cost.params,
                "macs": cost.macs,
                "params_ratio": cost.params / reference.params if reference.params else None,
                "macs_ratio": cost.macs / reference.macs if reference.macs else None,
                metric_name: value,
                "widths": pruner_widths,
            }
        )
        del pruned
    if output_dir is not None:
        folder = Path(output_dir)
        PruningHistory(rows).write_csv(folder / CURVE_CSV)
        title = f"one-shot TaylorFO: {metric_name} vs MACs"
        plot_pruning_curve(rows, folder / CURVE_PNG, x="macs", y=metric_name, title=title)
    return rows


def one_shot_curve(
    network: nn.Module,
    score_loader: Iterable[Any],
    evaluate_fn: Callable[[nn.Module], float],
    example_shape: Sequence[int],
    steps: Sequence[int | float],
    loss_function: Callable[..., torch.Tensor] | None = None,
    output_dir: str | os.PathLike | None = None,
    reduction: str = "abs",
    gradient: str = "loss",
    normalize_gradient: bool = True,
    layerwise_normalize: bool = False,
    min_channels: int = 2,
    seed: int = 0,
    prepare_batch: Callable[..., Any] = default_prepare_batch,
    device: str | torch.device | None = None,
    metric_name: str = "dice",
) -> list[dict[str, Any]]:
    """
    Score ``network`` once on ``score_loader`` (TaylorFO, see ``score_channels``), then build the one-shot curve.

    Args:
        network: the trained network; not modified.
        score_loader: batches for scoring (dicts with "image"/"label", or (image, label) pairs).
        evaluate_fn: ``evaluate_fn(network) -> float``, the validation metric of a network.
        example_shape: ``(batch, channels, *spatial)`` to trace with.
        steps: channel counts (ints) or fractions (floats) of the prunable channels to remove.
        loss_function: ``loss(pred, label)``; needed unless ``gradient="random"``.
        output_dir: where ``one_shot_curve.csv`` / ``.png`` go; None: no files.
        reduction, gradient, normalize_gradient, layerwise_normalize: the TaylorFO variant (as in the handler).
        min_channels: every group keeps at least this many channels.
        seed: seed of the random output gradients.
        prepare_batch: MONAI-style ``prepare_batch(batch, device, non_blocking)`` giving ``(inputs, targets)``.
        device: device of the batches; default: the network's.
        metric_name: column name of ``evaluate_fn``'s result.

    Returns:
        The rows of :func:`curve_from_scores`.
    """
    if device is None:
        param = next(network.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    with preserved_rng(network):
        pruner = ChannelPruner(network, example_shape, min_channels=min_channels)
    taps = FeatureTaps(
        network,
        {g: t for g, t in pruner.graph.consumer_taps().items() if g in pruner.prunable_groups},
        gradients=True,
    )
    try:
        with preserved_rng(network):
            scores = score_channels(
                network,
                taps,
                (prepare_batch(batch, device, False) for batch in score_loader),
                loss_function=loss_function,
                reduction=reduction,
                gradient=gradient,
                normalize_gradient=normalize_gradient,
                layerwise_normalize=layerwise_normalize,
                generator=torch.Generator().manual_seed(seed),
            )
    finally:
        taps.remove()
    return curve_from_scores(
        network,
        scores,
        evaluate_fn,
        example_shape,
        steps,
        output_dir,
        min_channels=min_channels,
        metric_name=metric_name,
    )


def evaluator_metric_fn(evaluator: Any, metric_name: str | None = None) -> Callable[[nn.Module], float]:
    """
    ``evaluate_fn`` running a MONAI evaluator on another network: the evaluator's ``network`` is swapped for the
    run and put back after.

    Use an evaluator of its own, without a ``CheckpointSaver`` or other handlers that act on the network they were
    built with: they would act on the trained network with the metric of a pruned copy.
    """
    if not hasattr(evaluator, "network") or not callable(getattr(evaluator, "run", None)):
        raise ValueError(f"evaluator_metric_fn: expected a MONAI evaluator, got {type(evaluator).__name__}.")

    def evaluate(network: nn.Module) -> float:
        original = evaluator.network
        evaluator.network = network
        try:
            evaluator.run()
        finally:
            evaluator.network = original
        name = metric_name or evaluator.state.key_metric_name
        if name not in evaluator.state.metrics:
            known = sorted(evaluator.state.metrics)
            raise ValueError(f"evaluator_metric_fn: metric {name!r} not found; it has {known}.")
        value = evaluator.state.metrics[name]
        return float(value.mean()) if isinstance(value, torch.Tensor) else float(value)

    return evaluate
