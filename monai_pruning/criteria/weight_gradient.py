"""
|weight x gradient| channel importance on our channel graph: the criterion of Torch-Pruning's
``GroupTaylorImportance`` with its defaults (Molchanov et al. 2019, the weight form of the Taylor criterion), so the
benchmark can compare TaylorFO with that criterion under our engine's schedule, floors and surgery where the
Torch-Pruning peer itself does not train (``docs/taylorfo.md``, "Peers").

For one weight element ``w`` with loss gradient ``g``, ``|w * g|`` is the first-order change of the loss when that
element alone is zeroed. In one convolution, a channel scores the sum of ``|w * g|`` over the weight elements its
removal deletes there: the filter of a convolution producing it, the input slice of a convolution reading it. A group
channel then scores the sum of its per-layer scores divided by the number of convolutions that touch the group
(GroupTaylor's ``group_reduction="mean"``), and each group is divided by its own mean score (``normalizer="mean"``),
so that a global ranking compares groups of very different depths and widths on one scale. Only convolution weights
count: biases are left out (``bias=False``), and so are normalisation scales and PReLU slopes, because Torch-Pruning
1.6.1 scores none of those our graphs hold (GroupNorm, InstanceNorm and PReLU are not among its target types, and its
BatchNorm, which is, reaches no branch that scores it); tested against Torch-Pruning on a DynUNet with BatchNorm
(``tests/criteria/test_weight_gradient.py``).

Unlike TaylorFO, which multiplies each channel's *activation* by its gradient sample by sample, this criterion uses
the gradient of the batch loss with respect to the *weights*, summed over the scoring batches before the product:
opposite gradients of two samples cancel.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping

import torch
from torch import nn

from monai_pruning.engine import ChannelGraph, channel_dims

__all__ = ["WEIGHTED_MODULES", "channel_weight_sums", "weight_gradient_importance"]

#: The modules whose weights the criterion reads: the ones Torch-Pruning 1.6.1's GroupTaylor scores in our graphs.
WEIGHTED_MODULES = (nn.modules.conv._ConvNd,)


def channel_weight_sums(
    graph: ChannelGraph,
    modules: Mapping[str, nn.Module],
    values: Callable[[str, torch.Tensor], torch.Tensor | None],
    groups: Iterable[str] | None = None,
    roles: Collection[str] = ("in", "out"),
) -> tuple[dict[str, torch.Tensor], dict[str, int]]:
    """
    Per group channel, the sum over the convolutions holding it of a weight-shaped tensor summed over each filter (or
    input slice): the scaffolding of every weight-based channel score. ``values(name, weight)`` gets a convolution's
    name and weight and returns a tensor of the weight's shape (``|w * g|``, ``|w|``, ...), or None to leave that
    convolution out; ``roles`` picks the slots read ("out": the convolutions producing a channel, "in": those reading
    it).

    Returns:
        ``({group: (C,) float64 sums}, {group: number of convolutions counted for it})``.

    Raises:
        KeyError: a group not in ``graph`` or a slot's module not in ``modules``.
        ValueError: a slot whose positions do not match the weight's channel dimension (``modules`` and ``graph`` out
            of step).
    """
    names = list(graph.groups) if groups is None else list(groups)
    by_root = {graph.groups[name].root: name for name in names}
    totals = {name: torch.zeros(graph.groups[name].size, dtype=torch.float64) for name in names}
    layers = dict.fromkeys(names, 0)
    for slot in graph.slots:
        if slot.role not in roles or not any(root in by_root for root, _ in slot.labels):
            continue
        module = modules[slot.module]
        weight = getattr(module, "weight", None)
        if not isinstance(module, WEIGHTED_MODULES) or weight is None:
            continue
        dim = channel_dims(module, slot.role)[0]["weight"]
        if weight.shape[dim] != len(slot.labels):
            raise ValueError(
                f"module {slot.module!r} has {weight.shape[dim]} channels along dim {dim} of its weight, the channel "
                f"graph expects {len(slot.labels)}."
            )
        tensor = values(slot.module, weight)
        if tensor is None:
            continue
        tensor = tensor.detach().double()
        per_position = tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1).sum(dim=1).cpu()
        touched = set()
        for position, (root, index) in enumerate(slot.labels):
            name = by_root.get(root)
            if name is not None:
                totals[name][index] += per_position[position]
                touched.add(name)
        for name in touched:
            layers[name] += 1
    return totals, layers


def _abs_weight_times_gradient(
    gradients: Mapping[str, torch.Tensor],
) -> Callable[[str, torch.Tensor], torch.Tensor | None]:
    """``values`` of :func:`channel_weight_sums` for this criterion: ``|w * g|`` in float64; None without a gradient."""

    def values(name: str, weight: torch.Tensor) -> torch.Tensor | None:
        grad = gradients.get(name)
        if grad is None:
            return None
        if grad.shape != weight.shape:
            raise ValueError(
                f"weight_gradient_importance: a gradient of shape {tuple(grad.shape)} for a weight of shape "
                f"{tuple(weight.shape)} in module {name!r}."
            )
        return (weight.detach().double() * grad.detach().to(weight.device).double()).abs()

    return values


def weight_gradient_importance(
    graph: ChannelGraph,
    modules: Mapping[str, nn.Module],
    gradients: Mapping[str, torch.Tensor],
    groups: Iterable[str] | None = None,
    normalize: bool = True,
) -> dict[str, torch.Tensor]:
    """
    ``|weight x gradient|`` importance ``(C,)`` of every channel of ``groups``.

    Args:
        graph: the network's channel graph (its slots say which weight positions hold which group channel).
        modules: module name -> module, e.g. ``dict(network.named_modules())``, with the current (pruned) widths.
        gradients: module name -> gradient of the loss with respect to that module's ``weight`` (summed over the
            scoring batches). A weighted module without an entry is left out of the scores, as Torch-Pruning leaves out
            a layer without ``.grad``.
        groups: the groups to score; None: every group of ``graph``.
        normalize: divide each group's scores by their mean (GroupTaylor's ``normalizer="mean"``); a group whose
            mean is 0 is left as it is.

    Returns:
        ``{group: (C,) float32 scores}``, in loss units (unitless when normalised). A channel no counted layer touches
        scores 0.

    Raises:
        KeyError: a group not in ``graph`` or a slot's module not in ``modules``.
        ValueError: a gradient whose shape differs from its weight's, or a slot whose positions do not match the
            weight's channel dimension (``modules`` and ``graph`` out of step).
    """
    totals, layers = channel_weight_sums(graph, modules, _abs_weight_times_gradient(gradients), groups)
    result = {}
    for name in totals:
        values = totals[name] / max(layers[name], 1)
        mean = values.mean()
        if normalize and mean > 0:
            values = values / mean
        result[name] = values.float()
    return result
