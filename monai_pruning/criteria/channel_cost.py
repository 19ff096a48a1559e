"""
What one channel of each channel group costs: the multiply-accumulates (MACs) that removing it saves.

A global importance ranking compares channels of groups whose costs differ by orders of magnitude: in a U-Net a
channel at full resolution costs hundreds of times more MACs than one at the bottleneck, which has many more
channels. Ranking by importance alone therefore removes mostly cheap deep channels, so parameters fall much faster
than MACs; ranking by importance per MAC saved (:func:`cost_normalize`) spends the same importance budget where the
arithmetic is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from monai_pruning.engine import ChannelGraph

__all__ = ["macs_per_channel", "cost_normalize", "checked_costs"]


def macs_per_channel(graph: ChannelGraph, layer_macs: Mapping[str, int]) -> dict[str, float]:
    """
    MACs saved by removing one channel of each group, to first order (for one forward pass of the input whose
    per-layer MACs are given).

    Every module slot a group touches contributes its share: a layer costing ``M`` MACs whose sliced dimension has
    ``n`` positions (the output channels of the producing convolution, the input channels of a consumer -- all of
    them, concatenated skip inputs included --, the channels of a normalisation or depthwise convolution) loses
    ``M / n`` per position removed. A channel of the group sums these shares over all its slots. Removing several
    channels of one layer at once saves slightly less than the sum when both its input and output shrink (the
    product term), hence "first order".

    Args:
        graph: the network's channel groups, e.g. ``ChannelPruner.graph``.
        layer_macs: MACs per module name, e.g. :func:`monai_pruning.measure.macs_by_layer` for one sample. Modules
            missing from it cost nothing.

    Returns:
        Group name -> MACs per channel (a float, same unit as ``layer_macs``), for every group of ``graph``.
    """
    if not isinstance(graph, ChannelGraph):
        raise TypeError(f"macs_per_channel: `graph` must be a ChannelGraph, got {type(graph).__name__}.")
    if not isinstance(layer_macs, Mapping):
        raise TypeError(
            f"macs_per_channel: `layer_macs` must be a dict of module name -> MACs, got {type(layer_macs).__name__}."
        )
    by_root = {group.root: name for name, group in graph.groups.items()}
    share = {name: 0.0 for name in graph.groups}
    for slot in graph.slots:
        macs = layer_macs.get(slot.module, 0)
        if not macs or not slot.labels:
            continue
        per_position = macs / len(slot.labels)
        for root, _ in slot.labels:
            name = by_root.get(root)
            if name is not None:
                share[name] += per_position
    return {name: share[name] / graph.groups[name].size if graph.groups[name].size else 0.0 for name in share}


def checked_costs(scores: Mapping[str, Any], cost: Mapping[str, float], where: str) -> dict[str, float]:
    """
    Every scored group's cost of one channel, as a float; a group without a cost, or with a negative or NaN one, is
    refused (``where`` names the caller in the message) rather than silently ranked.
    """
    missing = sorted(str(name) for name in scores if name not in cost)
    if missing:
        raise ValueError(f"{where}: no cost for the scored groups {missing}.")
    costs = {name: float(cost[name]) for name in scores}
    invalid = sorted(str(name) for name, value in costs.items() if not value >= 0)
    if invalid:
        raise ValueError(f"{where}: costs must be >= 0 (or are NaN) for the groups {invalid}.")
    return costs


def cost_normalize(scores: Mapping[str, torch.Tensor], cost: Mapping[str, float]) -> dict[str, torch.Tensor]:
    """
    Importance per unit of cost: each group's scores divided by the cost of one of its channels, itself relative to
    the mean cost over the scored groups (so the scores keep their order of magnitude; the ranking only depends on
    the ratios).

    A group whose channels cost nothing (no counted layer touches them) cannot buy any saving and is never
    preferred: its scores become ``+inf``, which :func:`~monai_pruning.criteria.select_global_lowest` never takes.

    Args:
        scores: group name -> (C,) importance scores.
        cost: group name -> cost of one channel (e.g. :func:`macs_per_channel`); every scored group must have one.

    Returns:
        A new dict with the same keys.
    """
    costs = checked_costs(scores, cost, "cost_normalize")
    positive = [value for value in costs.values() if value > 0]
    mean = sum(positive) / len(positive) if positive else 1.0
    normalized = {}
    for name, group_scores in scores.items():
        relative = costs[name] / mean
        normalized[name] = group_scores / relative if relative > 0 else torch.full_like(group_scores, float("inf"))
    return normalized
