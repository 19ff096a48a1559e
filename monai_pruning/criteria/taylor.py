"""
The maths of TaylorFO channel importance (Molchanov et al. 2017/2019; Sapkota et al. 2023; our choices and
departures: ``docs/taylorfo.md``): per-sample normalisation of the output gradient, the first-order contribution of each
channel, its reduction over samples, and the global choice of the channels to remove.

For a channel c with activation ``a`` and gradient ``g = dL/da``, ``z[b, c] = sum_space a * g`` is the derivative of
the loss with respect to a multiplicative gate on that channel, so ``-z`` is the first-order change of the loss when
the channel is zeroed. The tensors scored are channel-first ``(B, C, *spatial)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from monai_pruning.criteria.channel_cost import checked_costs

__all__ = [
    "REDUCTION_MODES",
    "PerSampleLoss",
    "normalize_output_gradient",
    "normalize_output_gradients",
    "taylor_channel_contributions",
    "reduce_contributions",
    "TaylorAccumulator",
    "layerwise_l2_normalize",
    "select_global_lowest",
    "fraction_to_count",
    "random_channel_scores",
]

REDUCTION_MODES = ("abs", "sq", "signed")


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """Half-precision tensors (autocast) are promoted so that products summed over a volume do not overflow."""
    if tensor.dtype in (torch.float16, torch.bfloat16):
        return tensor.float()
    return tensor


def _check_batched(tensor: Any, where: str, name: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{where}: `{name}` must be a torch.Tensor, got {type(tensor).__name__}.")
    if tensor.ndim < 2 or not tensor.is_floating_point():
        raise ValueError(
            f"{where}: `{name}` must be a floating (B, ...) tensor with a batch axis, "
            f"got shape {tuple(tensor.shape)} and dtype {tensor.dtype}."
        )


def _per_sample_scale(squared_norms: torch.Tensor, eps: float) -> torch.Tensor:
    """1 / ||g_b||, with the norm clamped at ``eps`` so that an all-zero gradient stays zero instead of 0/0."""
    return 1.0 / squared_norms.sqrt().clamp_min(eps)


def normalize_output_gradient(grad: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """
    Scale each sample's output gradient to unit L2 norm (the "gradient-normalised backpropagation").

    Backpropagation is linear in the output gradient, so backpropagating this instead of ``dL/dy`` gives every
    sample the same total weight in the importance scores: badly fitted samples no longer dominate, and the 1/B of a
    batch-mean loss cancels. The norm runs over all non-batch axes, so a stacked deep-supervision output
    ``(B, S, C, *spatial)`` is normalised jointly over its S heads.

    Args:
        grad: (B, ...) gradient of the loss with respect to the network output.
        eps: smallest norm divided by; a sample with zero gradient keeps a zero gradient.

    Returns:
        A tensor shaped like ``grad`` whose every sample has L2 norm 1 (or 0).
    """
    _check_batched(grad, "normalize_output_gradient", "grad")
    squared = _at_least_float32(grad).pow(2).flatten(1).sum(dim=1)
    scale = _per_sample_scale(squared, eps).to(grad.dtype)
    return grad * scale.reshape(-1, *([1] * (grad.ndim - 1)))


def normalize_output_gradients(
    grads: Sequence[torch.Tensor] | torch.Tensor, eps: float = 1e-12
) -> list[torch.Tensor] | torch.Tensor:
    """
    Joint per-sample unit-norm scaling of the gradients of several outputs of one network (deep supervision).

    One sample's heads share a single norm ``sqrt(sum_heads ||g_head[b]||^2)``, so the sample as a whole has unit
    weight, however many heads it has and whatever their resolutions.

    Args:
        grads: a list of (B, ...) gradients, one per output (shapes may differ apart from B), or one stacked tensor.
        eps: see :func:`normalize_output_gradient`.

    Returns:
        The scaled gradients in the same form (list or tensor) as given.
    """
    if isinstance(grads, torch.Tensor):
        return normalize_output_gradient(grads, eps=eps)
    if not isinstance(grads, Sequence) or len(grads) == 0:
        raise ValueError("normalize_output_gradients: `grads` must be a non-empty list of tensors or one tensor.")
    for index, grad in enumerate(grads):
        _check_batched(grad, "normalize_output_gradients", f"grads[{index}]")
    batch = grads[0].shape[0]
    if any(grad.shape[0] != batch for grad in grads):
        sizes = [grad.shape[0] for grad in grads]
        raise ValueError(f"normalize_output_gradients: all `grads` must share one batch size, got {sizes}.")
    squared = sum(_at_least_float32(grad).pow(2).flatten(1).sum(dim=1).to(grads[0].device) for grad in grads)
    scale = _per_sample_scale(squared, eps)
    return [grad * scale.to(grad.device, grad.dtype).reshape(-1, *([1] * (grad.ndim - 1))) for grad in grads]


def _sample(value: Any, index: int) -> Any:
    """Sample ``index`` of a batched tensor (batch axis kept), of each tensor in a list/tuple/dict, else ``value``."""
    if isinstance(value, torch.Tensor):
        return value[index : index + 1]
    if isinstance(value, (list, tuple)):
        return type(value)(_sample(item, index) for item in value)
    if isinstance(value, Mapping):
        return {key: _sample(item, index) for key, item in value.items()}
    return value


def _batch_size(value: Any) -> int | None:
    if isinstance(value, torch.Tensor):
        return int(value.shape[0]) if value.ndim else None
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    return next((size for size in map(_batch_size, items) if size is not None), None)


class PerSampleLoss:
    """
    A loss applied to each sample of the batch on its own, summed over the samples.

    TaylorFO scales each sample's output gradient to unit norm, which gives every sample equal weight only if that
    gradient depends on the sample alone. A loss that pools the batch (``DiceCELoss(batch=True)``, whose Dice sums
    intersections and volumes over all samples before dividing) couples them: the scores then change with how the
    scoring set is cut into batches. Applied sample by sample, such a loss gives the same scores for any batching,
    and the sum (not the mean) keeps each sample's weight independent of the batch size when the gradient is not
    normalised. A batch-independent loss (cross-entropy with a mean) gives the same scores wrapped or not.

    Args:
        loss: ``loss(pred, target, *args) -> tensor``, e.g. the training loss; its result is reduced with ``.mean()``
            per sample. Tensors (also inside lists, tuples and dicts, e.g. deep-supervision outputs) are split along
            their first (batch) axis; other arguments are passed to every call unchanged.

    Example (bundle config: the trainer's loss, per sample, for TaylorFO's scoring passes)::

        "scoring_loss": "$monai_pruning.criteria.PerSampleLoss(@loss)"
    """

    def __init__(self, loss: Callable[..., torch.Tensor]) -> None:
        if not callable(loss):
            raise TypeError(f"PerSampleLoss: `loss` must be callable, got {type(loss).__name__}.")
        self.loss = loss

    def __call__(self, pred: Any, target: Any, *args: Any) -> torch.Tensor:
        size = _batch_size(pred)
        if size is None or size < 1:
            raise ValueError("PerSampleLoss: `pred` must hold a tensor with a batch axis (B, ...), B >= 1.")
        return sum(
            self.loss(_sample(pred, b), _sample(target, b), *(_sample(a, b) for a in args)).mean() for b in range(size)
        )

    def __repr__(self) -> str:
        return f"PerSampleLoss({self.loss!r})"


def taylor_channel_contributions(activation: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """
    Per-sample first-order contribution of every channel: ``z[b, c] = sum over space of activation * grad``.

    ``z[b, c]`` is the derivative of sample b's loss with respect to a gate multiplying channel c, so zeroing the
    channel changes that loss by ``-z[b, c]`` to first order. The spatial sum comes before any abs or square.

    Args:
        activation: (B, C, *spatial) channel activations (the tensor whose channels a cut would remove).
        grad: gradient of the loss with respect to ``activation``, same shape.

    Returns:
        (B, C) contributions in loss units, detached (float32 for half-precision input).
    """
    _check_batched(activation, "taylor_channel_contributions", "activation")
    _check_batched(grad, "taylor_channel_contributions", "grad")
    if activation.shape != grad.shape:
        raise ValueError(
            "taylor_channel_contributions: `activation` and `grad` must have the same shape, "
            f"got {tuple(activation.shape)} and {tuple(grad.shape)}."
        )
    product = _at_least_float32(activation.detach()) * _at_least_float32(grad.detach()).to(activation.device)
    return product.flatten(2).sum(dim=-1)


def _check_mode(mode: str, where: str) -> None:
    if mode not in REDUCTION_MODES:
        raise ValueError(f"{where}: `mode` must be one of {REDUCTION_MODES}, got {mode!r}.")


def _check_contributions(contributions: Any, where: str) -> None:
    if not isinstance(contributions, torch.Tensor) or contributions.ndim != 2:
        shape = tuple(contributions.shape) if isinstance(contributions, torch.Tensor) else type(contributions).__name__
        raise ValueError(f"{where}: `contributions` must be a (B, C) tensor, got {shape}.")


def reduce_contributions(contributions: torch.Tensor, mode: str = "abs") -> torch.Tensor:
    """
    Importance of every channel from its (B, C) per-sample contributions.

    - ``"abs"``: ``sum_b |z|`` (TaylorFO-abs): any change of a sample's loss counts, whatever its sign;
    - ``"sq"``: ``sum_b z^2`` (TaylorFO-sq): as abs, with large changes weighing more;
    - ``"signed"``: ``|sum_b z|`` (the original TaylorFO): opposite changes over samples cancel out.

    Returns:
        (C,) importance scores (loss units, squared for ``"sq"``).
    """
    _check_mode(mode, "reduce_contributions")
    _check_contributions(contributions, "reduce_contributions")
    if mode == "abs":
        return contributions.abs().sum(dim=0)
    if mode == "sq":
        return contributions.pow(2).sum(dim=0)
    return contributions.sum(dim=0).abs()


class TaylorAccumulator:
    """
    Accumulates the importance of one group's channels over several batches.

    The scores are sums over all samples seen (not means); all groups see the same samples, so the sums compare
    across groups. For ``"signed"`` the signed sum is kept and its absolute value taken only in :meth:`compute`, so
    the result equals :func:`reduce_contributions` on all samples at once. After the group has been cut, call
    :meth:`reset`: an update with a different channel count is refused.

    Args:
        mode: ``"abs"``, ``"sq"`` or ``"signed"``, see :func:`reduce_contributions`.
    """

    def __init__(self, mode: str = "abs") -> None:
        _check_mode(mode, "TaylorAccumulator")
        self.mode = mode
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated samples."""
        self._total: torch.Tensor | None = None
        self._num_samples = 0

    @property
    def num_samples(self) -> int:
        """Number of samples accumulated since the last reset."""
        return self._num_samples

    def update(self, contributions: torch.Tensor) -> None:
        """Add one batch of (B, C) contributions from :func:`taylor_channel_contributions`."""
        _check_contributions(contributions, "TaylorAccumulator.update")
        if self.mode == "signed":
            batch_total = contributions.detach().sum(dim=0)
        else:
            batch_total = reduce_contributions(contributions.detach(), self.mode)
        if self._total is None:
            self._total = batch_total.clone()
        elif batch_total.shape != self._total.shape:
            raise ValueError(
                f"TaylorAccumulator.update: got {batch_total.shape[0]} channels but accumulated "
                f"{self._total.shape[0]} so far; call reset() after cutting the group."
            )
        else:
            self._total = self._total + batch_total.to(self._total.device)
        self._num_samples += contributions.shape[0]

    def totals(self) -> tuple[torch.Tensor | None, int]:
        """The running sum ``(C,)`` (signed for ``"signed"``, None before any update) and the number of samples."""
        return self._total, self._num_samples

    def load_totals(self, total: torch.Tensor, num_samples: int) -> None:
        """
        Replace the running sum and sample count, e.g. by their sums over the ranks of a distributed run: the sums
        add up exactly, so :meth:`compute` then equals the importance over every rank's samples.
        """
        if self._total is not None and total.shape != self._total.shape:
            raise ValueError(
                f"TaylorAccumulator.load_totals: got {total.shape[0]} channels, accumulated {self._total.shape[0]}."
            )
        self._total, self._num_samples = total.detach().clone(), int(num_samples)

    def compute(self) -> torch.Tensor:
        """(C,) importance of the channels over every sample since the last reset."""
        if self._total is None:
            raise RuntimeError("TaylorAccumulator.compute: no contributions were accumulated since the last reset.")
        return self._total.abs() if self.mode == "signed" else self._total.clone()


def random_channel_scores(channels: Mapping[str, int], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """
    Uniform random importance in [0, 1) for every channel of every group: the random-pruning control.

    Ranked with :func:`select_global_lowest` instead of the Taylor scores, these remove channels chosen at random
    (uniformly over all channels, whatever their cost) under the same schedule, floors and targets, which is what
    the Taylor importance has to beat. The scores depend on the group sizes and the generator only, never on data
    or weights; the groups draw in sorted name order, so the same seed and sizes give the same scores whatever the
    order of ``channels``.

    Args:
        channels: group name -> current number of channels (>= 1).
        generator: a seeded CPU ``torch.Generator``; it advances, so successive steps draw new scores.

    Returns:
        group name -> (C,) float32 scores in [0, 1).
    """
    where = "random_channel_scores"
    if not isinstance(channels, Mapping):
        kind = type(channels).__name__
        raise TypeError(f"{where}: `channels` must be a dict of group name -> channel count, got {kind}.")
    for name, count in channels.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{where}: channels[{name!r}] must be an int >= 1, got {count!r}.")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"{where}: `generator` must be a torch.Generator, got {type(generator).__name__}.")
    drawn = {name: torch.rand(channels[name], generator=generator) for name in sorted(channels)}
    return {name: drawn[name] for name in channels}


def layerwise_l2_normalize(scores: Mapping[str, torch.Tensor], eps: float = 1e-12) -> dict[str, torch.Tensor]:
    """
    Divide each group's scores by their L2 norm (Molchanov et al. 2017), an ablation that makes groups of very
    different gradient scales compete on equal terms in a global ranking. An all-zero group stays zero.

    Returns:
        A new dict with the same keys and unitless scores.
    """
    _check_scores(scores, "layerwise_l2_normalize")
    return {name: values / values.norm().clamp_min(eps) for name, values in scores.items()}


def _check_scores(scores: Any, where: str) -> None:
    if not isinstance(scores, Mapping):
        raise TypeError(f"{where}: `scores` must be a dict of group name -> (C,) tensor, got {type(scores).__name__}.")
    for name, values in scores.items():
        if not isinstance(values, torch.Tensor) or values.ndim != 1:
            shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
            raise ValueError(f"{where}: scores[{name!r}] must be a 1D (C,) tensor, got {shape}.")


def _per_group_int(value: int | Mapping[str, int] | None, groups: Mapping[str, Any], default: int, what: str) -> dict:
    """Expand an int-or-dict argument of :func:`select_global_lowest` to one validated int per group."""
    where = "select_global_lowest"
    if value is None or isinstance(value, int):
        chosen = default if value is None else value
        per_group = {name: chosen for name in groups}
    elif isinstance(value, Mapping):
        unknown = sorted(str(name) for name in value if name not in groups)
        if unknown:
            raise ValueError(f"{where}: `{what}` names groups that have no scores: {unknown}.")
        per_group = {name: value.get(name, default) for name in groups}
    else:
        raise TypeError(f"{where}: `{what}` must be an int or a dict of group name -> int, got {type(value).__name__}.")
    for name, number in per_group.items():
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ValueError(f"{where}: `{what}` for group {name!r} must be an int >= 1, got {number!r}.")
    return per_group


def select_global_lowest(
    scores: Mapping[str, torch.Tensor],
    num_to_remove: int,
    min_channels: int | Mapping[str, int] = 1,
    unit_sizes: Mapping[str, int] | None = None,
    channel_costs: Mapping[str, float] | None = None,
    max_cost: float | None = None,
    width_multiples: int | Mapping[str, int] | None = None,
) -> dict[str, list[int]]:
    """
    The globally least important channels, over all groups at once.

    Candidates are units: single channels, or for a group with a unit size k the blocks of k consecutive channels
    (e.g. the channels of one GroupNorm group), whose score is the sum of its channels' scores and whose removal
    counts as k channels. Units are visited from the lowest score up (ties: group name, then lower index first) and
    taken greedily while the total stays within ``num_to_remove`` and the group keeps at least its
    ``min_channels``; a unit that does not fit is skipped and smaller ones further up may still fill the count, so
    fewer than ``num_to_remove`` are returned only when no more can be removed. A unit scoring ``+inf`` is never
    taken (mark already pruned or protected channels that way).

    With a budget (``channel_costs`` and ``max_cost``, e.g. MACs), the selection also ends at the first unit whose
    cost would take the total above ``max_cost``: the units after it rank as more important, so a step limited by
    its budget stops there rather than reach past it for cheaper channels. The lowest-ranked unit that fits the
    count and floors is always taken, so that a budget smaller than one unit never stalls pruning.

    With a width multiple m for a group (``width_multiples``), the group only ever keeps a multiple of m channels
    (of the least common multiple of m and its unit size): its candidates are the group's lowest-scoring units taken
    together, first as many as bring its width down to a multiple, then m channels at a time, each scored by the sum
    of its channels and taken only after the one before it. Vectorised CPU kernels (oneDNN in ONNX Runtime and
    OpenVINO, PyTorch's own) process channels in blocks of 8 or 16, so a layer of 27 channels costs about what one of
    32 does (``docs/taylorfo.md``, "Widths at multiples of 8", measures what the constraint does to a trained network).

    Args:
        scores: group name -> (C,) importance scores.
        num_to_remove: how many channels to remove in total.
        min_channels: the fewest channels a group may keep (>= 1), one int for all groups or a dict per group
            (groups missing from the dict keep at least 1).
        unit_sizes: group name -> block size k (C must be a multiple of k); groups missing remove single channels.
        channel_costs: group name -> cost (>= 0) of removing one channel of the group; every group must have one
            when ``max_cost`` is given. A unit costs its size times that.
        max_cost: the most the selected units may cost together (same unit as ``channel_costs``); None: no budget.
        width_multiples: group name -> m (>= 1), or one int for all groups: the widths the group may be left with
            are multiples of m (a group narrower than that is never cut); None or 1: any width.

    Returns:
        Every group name -> sorted channel indices to remove (possibly empty).
    """
    where = "select_global_lowest"
    _check_scores(scores, where)
    if isinstance(num_to_remove, bool) or not isinstance(num_to_remove, int) or num_to_remove < 0:
        raise ValueError(f"{where}: `num_to_remove` must be an int >= 0, got {num_to_remove!r}.")
    floors = _per_group_int(min_channels, scores, 1, "min_channels")
    sizes = _per_group_int(unit_sizes, scores, 1, "unit_sizes")
    multiples = _per_group_int(width_multiples, scores, 1, "width_multiples")
    costs = _channel_costs(channel_costs, max_cost, scores)
    # a candidate: (score, group, order within the group, blocks it removes, rank of a bundle in its group or -1)
    candidates: list[tuple[float, str, int, tuple[int, ...], int]] = []
    for name, values in scores.items():
        size = sizes[name]
        channels = values.shape[0]
        if channels % size:
            raise ValueError(f"{where}: group {name!r} has {channels} channels, not a multiple of unit size {size}.")
        flat = values.detach().double().cpu()
        if torch.isnan(flat).any():
            raise ValueError(f"{where}: scores[{name!r}] contains NaN.")
        block_scores = flat.reshape(-1, size).sum(dim=1).tolist()
        units = [(score, block) for block, score in enumerate(block_scores) if score != math.inf]
        multiple = math.lcm(multiples[name], size)
        if multiple == size:
            candidates.extend((score, name, block, (block,), -1) for score, block in units)
            continue
        units.sort()
        per_bundle = multiple // size
        first = (channels % multiple) // size
        bounds = [0, first] if first else [0]
        bounds += range(bounds[-1] + per_bundle, len(units) + 1, per_bundle)
        floor_score = -math.inf  # a bundle never ranks before the one it follows (scores of any sign)
        for rank, (start, end) in enumerate(zip(bounds, bounds[1:])):
            bundle = units[start:end]
            floor_score = max(floor_score, sum(score for score, _ in bundle))
            candidates.append((floor_score, name, rank, tuple(block for _, block in bundle), rank))
    candidates.sort(key=lambda candidate: candidate[:3])
    remaining = {name: values.shape[0] for name, values in scores.items()}
    next_rank = {name: 0 for name in scores}  # after a bundle that does not fit, none of its group's later ones
    selected: dict[str, list[int]] = {name: [] for name in scores}
    removed, spent = 0, 0.0
    for _, name, _, blocks, rank in candidates:
        if removed == num_to_remove:
            break
        if rank >= 0 and rank != next_rank[name]:
            continue
        size = sizes[name]
        count = size * len(blocks)
        if removed + count > num_to_remove or remaining[name] - count < floors[name]:
            continue
        if costs is not None:
            cost = count * costs[name]
            if removed and spent + cost > max_cost:
                break
            spent += cost
        for block in blocks:
            selected[name].extend(range(block * size, (block + 1) * size))
        remaining[name] -= count
        removed += count
        if rank >= 0:
            next_rank[name] += 1
    return {name: sorted(indices) for name, indices in selected.items()}


def _channel_costs(
    channel_costs: Mapping[str, float] | None, max_cost: float | None, scores: Mapping[str, Any]
) -> dict[str, float] | None:
    """Validate the budget arguments of :func:`select_global_lowest`; None when there is no budget."""
    where = "select_global_lowest"
    if max_cost is None:
        return None
    if isinstance(max_cost, bool) or not isinstance(max_cost, (int, float)) or not max_cost >= 0:
        raise ValueError(f"{where}: `max_cost` must be a number >= 0 or None, got {max_cost!r}.")
    if not isinstance(channel_costs, Mapping):
        raise ValueError(f"{where}: `max_cost` needs `channel_costs`, a dict of group name -> cost of one channel.")
    return checked_costs(scores, channel_costs, f"{where} (`channel_costs`)")


def fraction_to_count(fraction: float, total: int) -> int:
    """
    Number of channels that ``fraction`` of ``total`` stands for, rounded to the nearest integer (halves up).

    A positive fraction of a non-empty total gives at least 1, so a small per-step fraction never stalls a pruning
    schedule at zero removals.
    """
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        raise ValueError(f"fraction_to_count: `total` must be an int >= 0, got {total!r}.")
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"fraction_to_count: `fraction` must be in [0, 1], got {fraction!r}.")
    count = math.floor(float(fraction) * total + 0.5)
    if fraction > 0 and total > 0:
        count = max(count, 1)
    return min(count, total)
