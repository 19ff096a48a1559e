"""
The maths of Sauron (Valverde, Shatillo, Tohka; arXiv 2209.13590): the clustering regulariser delta_opt, the pruning
score delta_prune, and the per-group threshold schedule that decides when a group's threshold tau is raised.

Everything here works on channel-first feature maps ``(B, C, *spatial)`` with 1, 2 or 3 spatial dims and knows
nothing about engines, hooks or networks; the Ignite handler feeds it the captured maps and applies the cuts.

Deliberate departures from the original code (reasons and evidence in ``docs/sauron.md``):

- the 3D distances reduce over *all* spatial axes (the original reduced over axes (2, 3) only);
- a layer with a single channel contributes no delta_opt term instead of a NaN mean of an empty tensor;
- epsilons in the min-max normalisation and inside the square root keep values and gradients finite;
- the validation condition of the schedule compares the last metric with the *earlier* values, so it can block.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

__all__ = [
    "check_clip_fraction",
    "delta_opt",
    "delta_opt_and_pooled",
    "delta_opt_penalty",
    "delta_prune",
    "DeltaPruneAccumulator",
    "ThresholdSchedule",
    "channels_to_cut",
    "mean_layer_distance",
    "most_redundant_within_cost",
]

def _check_feature_map(features: Any, where: str) -> None:
    """Fail early, in one line, on anything that is not a floating (B, C, *spatial) tensor with 1-3 spatial dims."""
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{where}: `features` must be a torch.Tensor, got {type(features).__name__}.")
    if features.ndim not in (3, 4, 5):
        raise ValueError(
            f"{where}: `features` must be channel-first (B, C, *spatial) with 1 to 3 spatial dims, "
            f"got shape {tuple(features.shape)}."
        )
    if not features.is_floating_point():
        raise TypeError(f"{where}: `features` must be a floating-point tensor, got dtype {features.dtype}.")
    if any(size == 0 for size in features.shape[2:]) or features.shape[0] == 0:
        raise ValueError(f"{where}: `features` has an empty batch or spatial axis, shape {tuple(features.shape)}.")


def _at_least_float32(features: torch.Tensor) -> torch.Tensor:
    """Half-precision maps (autocast) are promoted: an epsilon of 1e-8 underflows to 0 in float16."""
    if features.dtype in (torch.float16, torch.bfloat16):
        return features.float()
    return features


def _pool_2x(features: torch.Tensor) -> torch.Tensor:
    """
    2x average pooling with stride 2 along every spatial axis, as in the paper; an axis of size 1 is left as it is
    (a kernel of 2 would not fit). An odd size drops its last slice, like ``torch.nn.AvgPool`` does.
    """
    # One axis at a time, as the sum of the even and odd slices, the outermost first so that the slices added are
    # long contiguous runs and the strided last axis is done on the smallest map: the same values as torch's
    # avg_pool (up to float rounding) in a fraction of its CPU time, which matters here because every prunable map
    # of every batch is pooled.
    pooled, window = features, 1
    for axis in range(2, features.ndim):
        size = pooled.shape[axis]
        if size < 2:
            continue
        even = [slice(None)] * features.ndim
        odd = list(even)
        even[axis], odd[axis] = slice(0, size - 1, 2), slice(1, size, 2)
        pooled = pooled[tuple(even)] + pooled[tuple(odd)]
        window *= 2
    return pooled.div_(window) if window > 1 else pooled.clone()


@functools.lru_cache(maxsize=256)
def _row_width(size: int) -> int:
    """The largest divisor of ``size`` not above its square root (cached: a network has a handful of map sizes)."""
    width = math.isqrt(size)
    while size % width:
        width -= 1
    return width


def _extrema(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    Minimum and maximum over all spatial positions of every (B, C) map, each with its flat spatial position (the
    first where it is attained, as ``torch.min(dim)`` gives).

    Found row by row: ``amin``/``amax`` of every row, the best row, then the position within that row. On a CPU
    ``min(dim)`` with indices is a scalar loop, several times slower than the vectorised ``amin``, and the maps are
    full-resolution feature maps of every batch. The flattened map is cut into rows of the divisor of its size
    nearest below its square root, so that neither step reduces over a long axis of short rows. Maps of fewer than
    4096 positions, or whose size has no such divisor of at least 8, are reduced in one go: for them the extra small
    operations cost more than the scalar loop.
    """
    size = math.prod(maps.shape[2:])
    width = _row_width(size)
    if size < 4096 or width < 8:
        low, low_at = maps.flatten(2).min(dim=-1)
        high, high_at = maps.flatten(2).max(dim=-1)
        return low, low_at, high, high_at
    rows = maps.reshape(maps.shape[:2] + (size // width, width))  # (B, C, rows, width)
    low, low_row = rows.amin(dim=-1).min(dim=-1)
    high, high_row = rows.amax(dim=-1).max(dim=-1)
    picked = rows.gather(2, torch.stack([low_row, high_row], dim=-1).unsqueeze(-1).expand(-1, -1, -1, width))
    low_at = low_row * width + picked[:, :, 0].argmin(dim=-1)
    high_at = high_row * width + picked[:, :, 1].argmax(dim=-1)
    return low, low_at, high, high_at


def _spatial_mean_square(diff: torch.Tensor) -> torch.Tensor:
    """Mean of the squared differences over all spatial axes: (B, C, *spatial) -> (B, C). Squares ``diff`` in place."""
    return diff.pow_(2).flatten(2).mean(dim=-1)


def _pool_kernel(spatial: Sequence[int]) -> tuple[int, ...]:
    """The window of :func:`_pool_2x` along each spatial axis: 2, or 1 for an axis of size 1."""
    return tuple(2 if size >= 2 else 1 for size in spatial)


def _spread_over_windows(pooled: torch.Tensor, out: torch.Tensor, kernel: Sequence[int]) -> None:
    """
    Write every value of ``pooled`` (B, C, *q) over its pooling window of ``out`` (B, C, *(q * kernel)), in place:
    how average pooling hands a gradient back, before the division by the window size.

    The first window slice along every axis but the last is filled by one strided copy per position in the last
    axis' window, then each axis in turn is duplicated from its first slice, innermost first. Every copy so runs
    along whole rows; a single broadcast copy over all window axes at once, whose innermost loop is two elements
    long, takes two to four times as long on a CPU, as does ``F.interpolate(mode="nearest")``.
    """
    split = out.view(out.shape[:2] + tuple(n for q, k in zip(pooled.shape[2:], kernel) for n in (q, k)))
    window_axes = [3 + 2 * i for i in range(len(kernel))]
    source = pooled.reshape(pooled.shape[:2] + tuple(n for q in pooled.shape[2:] for n in (q, 1)))
    first = [slice(None)] * split.ndim
    for axis in window_axes[:-1]:
        first[axis] = slice(0, 1)
    for offset in range(kernel[-1]):
        first[window_axes[-1]] = slice(offset, offset + 1)
        split[tuple(first)].copy_(source)
    for i in reversed(range(len(kernel) - 1)):
        if kernel[i] == 1:
            continue
        origin = [slice(None)] * split.ndim
        for axis in window_axes[:i]:
            origin[axis] = slice(0, 1)
        target = list(origin)
        origin[window_axes[i]], target[window_axes[i]] = slice(0, 1), slice(1, 2)
        split[tuple(target)].copy_(split[tuple(origin)])


class _DeltaOptDistances(torch.autograd.Function):
    """
    :func:`delta_opt` of the channels ``[start, start + length)`` of ``features``, with its backward written out.

    The normalisation is affine per map, so it commutes with average pooling: the maps are pooled first and
    normalised at a quarter (2D) or an eighth (3D) of their size. The regulariser touches every prunable feature map
    of every training batch, and on a CPU its cost is the number of passes over full-resolution maps, so both
    directions are kept to the fewest: forward reads each map for its minimum, its maximum and its pooling; backward
    works at pooled size and writes the full-resolution gradient once, straight into a tensor of the shape of
    ``features``. That is why the channels are selected here rather than by the caller: a layer whose channels are
    part of a concatenation would otherwise get its gradient through ``narrow``'s backward, a zero-filled copy of the
    whole concatenation plus a second write, on every batch. The raw pooled maps are returned too (not
    differentiable), for :func:`delta_prune` to score on without pooling again.

    The gradient equals autograd's through the paper's order of operations (normalise, pool, RMS), except where a
    map's minimum or maximum is attained at several positions: it then goes to one of them (like
    ``torch.min(dim)``) instead of being shared.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, features: torch.Tensor, start: int, length: int, eps: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        maps = _at_least_float32(features.detach().narrow(1, start, length))
        batch, channels = maps.shape[:2]
        view = (batch, channels) + (1,) * (maps.ndim - 2)
        low, low_at, high, high_at = _extrema(maps)
        scale = high - low + eps
        pooled = _pool_2x(maps)
        normalized = (pooled - low.reshape(view)).div_(scale.reshape(view))
        distances = _spatial_mean_square(normalized[:, 1:] - normalized[:, :1]).add_(eps).sqrt_()
        ctx.save_for_backward(normalized, scale, distances, low_at, high_at)
        ctx.selection = (start, length)
        ctx.features_meta = (tuple(features.shape), features.dtype, features.device)
        ctx.mark_non_differentiable(pooled)
        # the pooled maps never receive a gradient: without this, autograd would hand backward a zero-filled tensor
        # of their size (a quarter or an eighth of the layer's maps) on every batch
        ctx.set_materialize_grads(False)
        return distances, pooled

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad_distances: torch.Tensor | None, _grad_pooled_raw: Any
    ) -> tuple[torch.Tensor | None, None, None, None]:
        if grad_distances is None:  # not materialised: a call without one for the distances (gradcheck makes them)
            return None, None, None, None
        normalized, scale, distances, low_at, high_at = ctx.saved_tensors
        (start, length), (shape, dtype, device) = ctx.selection, ctx.features_meta
        batch, channels, pooled_spatial = normalized.shape[0], normalized.shape[1], normalized.shape[2:]
        view = (batch, channels) + (1,) * len(pooled_spatial)
        # d distance_c / d normalized_c = (n_c - n_0) / (positions * distance_c); channel 0 gets minus their sum
        positions = math.prod(pooled_spatial)
        weight = grad_distances / (distances * positions)
        grad_norm = torch.empty_like(normalized)
        torch.sub(normalized[:, 1:], normalized[:, :1], out=grad_norm[:, 1:])
        grad_norm[:, 1:].mul_(weight.reshape((batch, channels - 1) + view[2:]))
        torch.sum(grad_norm[:, 1:], dim=1, keepdim=True, out=grad_norm[:, :1])
        grad_norm[:, :1].neg_()
        # d n / d low = (n - 1) / scale and d n / d high = -n / scale, summed over the pooled positions
        weighted = (grad_norm * normalized).flatten(2).sum(dim=-1)
        grad_low = (weighted - grad_norm.flatten(2).sum(dim=-1)) / scale
        grad_high = -weighted / scale
        spatial = shape[2:]
        kernel = _pool_kernel(spatial)
        grad_pooled = grad_norm.mul_((1.0 / (scale * math.prod(kernel))).reshape(view))

        grad = torch.empty(shape, dtype=dtype, device=device)
        if start > 0:
            grad.narrow(1, 0, start).zero_()
        if start + length < shape[1]:
            grad.narrow(1, start + length, shape[1] - start - length).zero_()
        selected = grad.narrow(1, start, length)
        covered = selected[(slice(None), slice(None)) + tuple(slice(0, q * k) for q, k in zip(pooled_spatial, kernel))]
        _spread_over_windows(grad_pooled, covered, kernel)  # a trailing odd slice was not pooled and gets nothing
        for axis, (size, q, k) in enumerate(zip(spatial, pooled_spatial, kernel), start=2):
            if size > q * k:
                selected.narrow(axis, q * k, size - q * k).zero_()
        flat = selected.flatten(2)
        flat.scatter_add_(2, low_at.unsqueeze(-1), grad_low.unsqueeze(-1).to(dtype))
        flat.scatter_add_(2, high_at.unsqueeze(-1), grad_high.unsqueeze(-1).to(dtype))
        return grad, None, None, None


def delta_opt(features: torch.Tensor, eps: float = 1e-8, clip_fraction: float = 0.0) -> torch.Tensor:
    """
    Distances of every channel to channel 0 that the clustering regulariser minimises (``docs/sauron.md``).

    Each map is min-max normalised per sample and channel over all spatial axes, so the regulariser pulls channels
    towards the *shape* of channel 0, not its scale; the normalised maps are 2x average pooled and compared by RMS
    distance over all spatial axes.

    Args:
        features: (B, C, *spatial) feature maps of one layer, 1 to 3 spatial dims.
        eps: added to the min-max range (a constant map normalises to 0 instead of 0/0) and inside the square root
            (the gradient of the distance stays finite where two maps coincide, whose distance is then ``sqrt(eps)``).
        clip_fraction: 0 (the paper): min-max normalisation. Above 0: each *pooled* map is normalised between its
            ``clip_fraction`` and ``1 - clip_fraction`` quantiles (order statistics of at most
            :data:`QUANTILE_SAMPLES` evenly spaced pooled pixels) and clipped to [0, 1], so a few extreme pixels
            cannot squash the rest of a map towards 0; under min-max normalisation a map that is flat apart from a
            spike is close to every other such map whatever its content, a shortcut the regulariser took on real
            frames (``docs/sauron.md``, "On real frames"). Computed by autograd, not by the hand-written backward of
            the min-max case. Below 0.5.

    Returns:
        (B, C - 1) RMS distances, unitless (normalised maps lie in [0, 1]); an empty (B, 0) tensor when C < 2.
        Differentiable with respect to ``features``. Half-precision input is computed and returned in float32.

    Note:
        The normalisation is scale invariant, so the gradient scales like 1 / (max - min): a nearly constant map
        receives a large (but finite) gradient.
    """
    _check_feature_map(features, "delta_opt")
    return _delta_opt_and_pooled(features, eps, (0, features.shape[1]), clip_fraction)[0]


def delta_opt_and_pooled(
    features: torch.Tensor, eps: float = 1e-8, channels: tuple[int, int] | None = None, clip_fraction: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    One layer's share of the regulariser: its :func:`delta_opt` distances and its raw 2x-pooled maps, which
    :func:`delta_prune` and :class:`DeltaPruneAccumulator` take with ``pooled=True`` (scoring the same batch then
    costs no second pass over the full-resolution maps). :func:`mean_layer_distance` of every layer's distances is
    the regulariser R.

    Computing it layer by layer lets a caller do so while the forward pass runs, right after each layer has written
    its maps (on a CPU they are then still in the cache), instead of reading them all back afterwards.

    Args:
        features: (B, C, *spatial) feature maps, 1 to 3 spatial dims.
        eps: see :func:`delta_opt`.
        channels: None, or ``(start, length)``: the layer's channels are only that run of ``features``' dim 1, as
            when the layer is one part of a concatenation. Selecting them here instead of passing
            ``features.narrow(1, start, length)`` gives the same values and gradients without ``narrow``'s backward
            (a zero-filled copy of the whole concatenation on every batch).
        clip_fraction: see :func:`delta_opt`.

    Returns:
        ``(distances, pooled)``: (B, C - 1) distances, differentiable (an empty (B, 0) slice of the layer's maps for
        a single channel), and the detached (B, C, *pooled spatial) average-pooled maps of the layer's channels;
        float32 for half-precision input.
    """
    _check_feature_map(features, "delta_opt_and_pooled")
    selection = _check_channel_run(channels, features.shape[1], "delta_opt_and_pooled")
    return _delta_opt_and_pooled(features, eps, selection, clip_fraction)


def check_clip_fraction(clip_fraction: Any, where: str) -> float:
    """``clip_fraction`` as a float in [0, 0.5), or a one-line ValueError naming ``where``."""
    if isinstance(clip_fraction, bool) or not isinstance(clip_fraction, (int, float)) or not 0 <= clip_fraction < 0.5:
        raise ValueError(f"{where}: `clip_fraction` must be a number in [0, 0.5), got {clip_fraction!r}.")
    return float(clip_fraction)


#: pooled pixels per map the quantiles of ``clip_fraction`` are taken from (evenly spaced): two selections over 1024
#: values per map cost a tenth of an interpolated ``torch.quantile`` over 4096 on a CPU
QUANTILE_SAMPLES = 1024


def _clipped_distances(
    features: torch.Tensor, start: int, length: int, eps: float, clip_fraction: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`delta_opt` with ``clip_fraction > 0``: pool, normalise between quantiles, clip, RMS distance."""
    pooled = _pool_2x(_at_least_float32(features.narrow(1, start, length)))
    flat = pooled.flatten(2)
    sample = flat[..., :: max(1, -(-flat.shape[-1] // QUANTILE_SAMPLES))]
    last = sample.shape[-1] - 1
    low = sample.kthvalue(round(clip_fraction * last) + 1, dim=-1, keepdim=True).values
    high = sample.kthvalue(round((1.0 - clip_fraction) * last) + 1, dim=-1, keepdim=True).values
    normalized = ((flat - low) / (high - low + eps)).clamp(0.0, 1.0)
    distances = ((normalized[:, 1:] - normalized[:, :1]).square().mean(dim=-1) + eps).sqrt()
    return distances, pooled.detach()


def _delta_opt_and_pooled(
    features: torch.Tensor, eps: float, channels: tuple[int, int], clip_fraction: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    start, length = channels
    if length < 2:
        # no distance, but still a slice of the maps, so that a penalty of such layers alone can backpropagate
        selected = _at_least_float32(features.narrow(1, start, length))
        return selected.flatten(2)[:, :0, 0], _pool_2x(selected.detach())
    if check_clip_fraction(clip_fraction, "delta_opt") > 0:
        return _clipped_distances(features, start, length, eps, clip_fraction)
    distances, pooled = _DeltaOptDistances.apply(features, start, length, eps)
    return distances, pooled


def mean_layer_distance(distances: Sequence[torch.Tensor]) -> torch.Tensor:
    """
    The regulariser term R added to the loss (before its weight lambda) from every layer's delta_opt distances
    (:func:`delta_opt_and_pooled`): mean over layers of each layer's mean distance.

    Layers with fewer than two channels have no distance to minimise and are skipped rather than counted as a
    constant, so the per-layer weight does not depend on how many layers have collapsed; with no layer left the
    result is a zero scalar, never NaN, that requires grad when any layer's maps do (so ``backward()`` still works).
    An empty list gives a plain zero scalar.
    """
    layer_means = [layer.mean() for layer in distances if layer.shape[1] > 0]
    if layer_means:
        return torch.stack(layer_means).mean()
    if not distances:
        return torch.zeros(())
    return torch.stack([layer.sum() for layer in distances]).sum()


def delta_opt_penalty(
    feature_maps: Sequence[torch.Tensor],
    eps: float = 1e-8,
    return_pooled: bool = False,
    channels: Sequence[tuple[int, int] | None] | None = None,
    clip_fraction: float = 0.0,
) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
    """
    The regulariser term R of a list of layers' feature maps: :func:`mean_layer_distance` of each layer's
    :func:`delta_opt_and_pooled`.

    Args:
        feature_maps: one (B, C, *spatial) tensor per regularised layer; shapes may differ between layers.
        eps: see :func:`delta_opt`.
        return_pooled: also return every layer's detached raw 2x-pooled maps (see :func:`delta_opt_and_pooled`).
        channels: per map, None or ``(start, length)`` (see :func:`delta_opt_and_pooled`).
        clip_fraction: see :func:`delta_opt`.

    Returns:
        A scalar tensor (float32 for half-precision maps); with ``return_pooled``, ``(penalty, pooled maps of the
        layers' channels in the order of feature_maps)``.
    """
    if isinstance(feature_maps, torch.Tensor) or not isinstance(feature_maps, Sequence):
        raise TypeError(
            f"delta_opt_penalty: `feature_maps` must be a list of tensors, got {type(feature_maps).__name__}."
        )
    if channels is None:
        channels = [None] * len(feature_maps)
    elif not isinstance(channels, Sequence) or len(channels) != len(feature_maps):
        raise ValueError(
            f"delta_opt_penalty: `channels` must give one (start, length) or None per feature map "
            f"({len(feature_maps)}), got {channels!r}."
        )
    distances, pooled_maps = [], []
    for index, (features, selection) in enumerate(zip(feature_maps, channels)):
        where = f"delta_opt_penalty (feature_maps[{index}])"
        _check_feature_map(features, where)
        selected = _check_channel_run(selection, features.shape[1], where)
        layer, pooled = _delta_opt_and_pooled(features, eps, selected, clip_fraction)
        distances.append(layer)
        pooled_maps.append(pooled)
    penalty = mean_layer_distance(distances)
    return (penalty, pooled_maps) if return_pooled else penalty


def _check_channel_run(selection: Any, channels: int, where: str) -> tuple[int, int]:
    """``(start, length)`` of a non-empty run of channels inside ``[0, channels)``; None means all of them."""
    if selection is None:
        return 0, channels
    if (
        isinstance(selection, Sequence)
        and len(selection) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in selection)
        and selection[0] >= 0
        and selection[1] >= 1
        and selection[0] + selection[1] <= channels
    ):
        return int(selection[0]), int(selection[1])
    raise ValueError(
        f"{where}: `channels` must be None or (start, length) of a non-empty run inside its {channels} channels, "
        f"got {selection!r}."
    )


def delta_prune(features: torch.Tensor, reference: int, eps: float = 1e-15, pooled: bool = False) -> torch.Tensor:
    """
    Pruning score of every channel of one layer: its distance to a reference channel (``docs/sauron.md``).

    Unlike delta_opt the maps are *raw* (a channel that is a scaled copy of the reference is still far from it); the
    2x average pooled maps are compared by RMS distance over all spatial axes, each sample's distances are divided by
    their maximum over channels so that every sample weighs the same, and the result is averaged over the batch.

    Args:
        features: (B, C, *spatial) feature maps of one layer, 1 to 3 spatial dims. Detached: not differentiable.
        reference: index of the reference channel, in [0, C).
        eps: added to each sample's maximum distance so that a sample whose channels all equal the reference gives
            zeros instead of 0/0 (the original value 1e-15; raw maps can be small, so a larger value would bias).
        pooled: ``features`` are already 2x average pooled (e.g. from :func:`delta_opt_penalty` with
            ``return_pooled=True``).

    Returns:
        (C,) scores in [0, 1], unitless; the reference channel scores exactly 0.
    """
    _check_feature_map(features, "delta_prune")
    channels = features.shape[1]
    if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < channels:
        raise ValueError(f"delta_prune: `reference` must be a channel index in [0, {channels}), got {reference!r}.")
    with torch.no_grad():
        maps = _at_least_float32(features.detach())
        pooled = maps if pooled else _pool_2x(maps)
        distances = torch.sqrt(_spatial_mean_square(pooled - pooled[:, reference : reference + 1]))
        distances = distances / (distances.amax(dim=1, keepdim=True) + eps)
        scores = distances.mean(dim=0)
        scores[reference] = 0.0
    return scores


class DeltaPruneAccumulator:
    """
    Average of :func:`delta_prune` over several batches of one layer.

    The original code decided from the last minibatch only, with a fresh random reference at every forward pass; here
    the reference is drawn once per accumulation window (from the caller's generator, so a seeded run is
    reproducible) and the scores of all batches in the window, all measured against that same reference, are
    averaged per sample (a batch of 4 weighs twice a batch of 2).

    After the layer has been cut, call :meth:`reset`: an update with a different channel count is refused.

    Args:
        generator: the random generator the reference channel is drawn from.
        scorer: the delta_prune function, called as ``scorer(features, reference, pooled=pooled)``; None:
            :func:`delta_prune` (a compiled one: ``CompiledSauronTerms().delta_prune``).

    Example::

        acc = DeltaPruneAccumulator(torch.Generator().manual_seed(0))
        for features in maps_of_this_epoch:
            acc.update(features)
        scores, reference = acc.compute()
        acc.reset()
    """

    def __init__(self, generator: torch.Generator, scorer: Callable[..., torch.Tensor] | None = None) -> None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(
                f"DeltaPruneAccumulator: `generator` must be a torch.Generator, got {type(generator).__name__}."
            )
        if scorer is not None and not callable(scorer):
            raise TypeError(f"DeltaPruneAccumulator: `scorer` must be callable or None, got {type(scorer).__name__}.")
        self.generator = generator
        self.scorer = scorer if scorer is not None else delta_prune
        self.reset()

    def reset(self) -> None:
        """Start a new window: the next update draws a new reference and may have any channel count."""
        self._reference: int | None = None
        self._channels: int | None = None
        self._score_sum: torch.Tensor | None = None
        self._num_samples = 0

    @property
    def reference(self) -> int | None:
        """The reference channel of the current window, None before the first update."""
        return self._reference

    @property
    def num_samples(self) -> int:
        """Number of samples accumulated in the current window."""
        return self._num_samples

    def update(self, features: torch.Tensor, pooled: bool = False) -> None:
        """Add one batch of (B, C, *spatial) feature maps of the layer (already 2x pooled with ``pooled=True``)."""
        _check_feature_map(features, "DeltaPruneAccumulator.update")
        channels = features.shape[1]
        if self._reference is None:
            draw = torch.randint(channels, (1,), generator=self.generator, device=self.generator.device)
            self._reference = int(draw.item())
            self._channels = channels
        elif channels != self._channels:
            raise ValueError(
                f"DeltaPruneAccumulator.update: got {channels} channels but this window started with "
                f"{self._channels}; call reset() after cutting the layer."
            )
        batch_scores = self.scorer(features, self._reference, pooled=pooled) * features.shape[0]
        if self._score_sum is None:
            self._score_sum = batch_scores
        else:
            self._score_sum = self._score_sum + batch_scores.to(self._score_sum.device)
        self._num_samples += features.shape[0]

    def totals(self) -> tuple[torch.Tensor | None, int]:
        """The window's sum of per-sample delta_prune ``(C,)`` (None before any update) and its number of samples."""
        return self._score_sum, self._num_samples

    def load_totals(self, total: torch.Tensor, num_samples: int) -> None:
        """
        Replace the window's sum and sample count, e.g. by their sums over the ranks of a distributed run (whose
        generators draw the same reference): :meth:`compute` then averages over every rank's samples.
        """
        if self._reference is None or total.shape[0] != self._channels:
            raise ValueError(
                f"DeltaPruneAccumulator.load_totals: got {total.shape[0]} channels for a window of "
                f"{self._channels} channels (reference {self._reference})."
            )
        self._score_sum, self._num_samples = total.detach().clone(), int(num_samples)

    def compute(self) -> tuple[torch.Tensor, int]:
        """Return the (C,) per-sample mean of delta_prune over the window and the window's reference channel."""
        if self._score_sum is None or self._reference is None:
            raise RuntimeError("DeltaPruneAccumulator.compute: no feature maps were accumulated since the last reset.")
        return self._score_sum / self._num_samples, self._reference


def channels_to_cut(scores: torch.Tensor, reference: int, tau: float, min_channels: int = 1) -> list[int]:
    """
    Channels of one group to remove: those whose delta_prune score is below ``tau``, never the reference.

    The original code had no floor, so a layer could shrink to its reference alone. When the cut would leave fewer
    than ``min_channels``, the candidates with the *highest* scores are kept: they are the ones farthest from the
    reference, i.e. the least redundant with the channel that survives anyway. Equal scores keep the lower index.
    A group that already has fewer than ``min_channels`` channels loses none.

    Args:
        scores: (C,) delta_prune scores of the group.
        reference: the reference channel, always kept.
        tau: the group's threshold.
        min_channels: the fewest channels the group may keep, at least 1.

    Returns:
        Sorted channel indices to remove.
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 1:
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(f"channels_to_cut: `scores` must be a 1D (C,) tensor, got {shape}.")
    channels = scores.shape[0]
    if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < channels:
        raise ValueError(f"channels_to_cut: `reference` must be a channel index in [0, {channels}), got {reference!r}.")
    if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
        raise ValueError(f"channels_to_cut: `min_channels` must be an int >= 1, got {min_channels!r}.")
    values = scores.detach().cpu().tolist()
    candidates = [c for c, value in enumerate(values) if value < tau and c != reference]
    removable = max(channels - min_channels, 0)
    if len(candidates) > removable:
        # lowest scores first; on equal scores the higher index goes first so the lower index is kept
        candidates = sorted(candidates, key=lambda c: (values[c], -c))[:removable]
    return sorted(candidates)


def most_redundant_within_cost(
    candidates: Mapping[str, Sequence[int]],
    scores: Mapping[str, torch.Tensor],
    thresholds: Mapping[str, float],
    channel_costs: Mapping[str, float],
    needed_cost: float,
    unit_sizes: Mapping[str, int] | None = None,
) -> dict[str, list[int]]:
    """
    The part of a Sauron cut that removes at least ``needed_cost``, most redundant channels first.

    Used when a cut would pass a size target: rather than every channel below its threshold, only as many as the
    target needs. Channels of different groups rank on one scale, their delta_prune relative to their group's
    threshold (``score / tau``: 0 is a copy of the reference, 1 is at the threshold). A unit of ``k`` consecutive
    channels (one GroupNorm group, which is only ever cut whole) ranks by its mean ratio and costs ``k`` channels.
    Units are taken from the lowest ratio up until their summed cost reaches ``needed_cost``, so the result passes
    it by less than one unit; when all candidates together cost less, all are returned.

    Args:
        candidates: group name -> channel indices the threshold rule would cut (e.g. from :func:`channels_to_cut`).
        scores: group name -> (C,) delta_prune scores of the group.
        thresholds: group name -> the group's tau (> 0 wherever there are candidates).
        channel_costs: group name -> cost of one channel of the group (e.g. MACs, >= 0).
        needed_cost: the cost the cut must remove at least (same unit as ``channel_costs``).
        unit_sizes: group name -> unit size k; groups missing cut single channels.

    Returns:
        Group name -> sorted channel indices to remove, for the groups that lose any.
    """
    where = "most_redundant_within_cost"
    if isinstance(needed_cost, bool) or not isinstance(needed_cost, (int, float)) or math.isnan(needed_cost):
        raise ValueError(f"{where}: `needed_cost` must be a number, got {needed_cost!r}.")
    sizes = dict(unit_sizes or {})
    units: list[tuple[float, str, list[int]]] = []
    for group, channels in candidates.items():
        if not channels:
            continue
        if group not in scores or group not in thresholds or group not in channel_costs:
            raise ValueError(f"{where}: group {group!r} needs a score, a threshold and a channel cost.")
        tau = float(thresholds[group])
        if not tau > 0:
            raise ValueError(f"{where}: group {group!r} has candidates but a threshold of {tau!r} (must be > 0).")
        values = scores[group].detach().double().cpu()
        size = int(sizes.get(group, 1))
        blocks: dict[int, list[int]] = {}
        for channel in channels:
            blocks.setdefault(int(channel) // size, []).append(int(channel))
        for block, members in blocks.items():
            if len(members) != size:
                raise ValueError(f"{where}: group {group!r} would cut part of its unit {block} (unit size {size}).")
            units.append((float(values[members].mean()) / tau, str(group), sorted(members)))
    units.sort()
    chosen: dict[str, list[int]] = {}
    spent = 0.0
    for _, group, members in units:
        if spent >= needed_cost:
            break
        chosen.setdefault(group, []).extend(members)
        spent += len(members) * float(channel_costs[group])
    return {group: sorted(members) for group, members in chosen.items()}


class ThresholdSchedule:
    """
    The per-group thresholds tau of Sauron and the rule that raises them (``docs/sauron.md``).

    Each group's tau walks up the admissible values ``linspace(tau_start, tau_max, kappa + 1)`` one step at a time.
    Called once per epoch end, :meth:`update` does for every group: if its patience counter is positive, decrement
    it; otherwise, if training has converged for that group, move tau one step up (staying at ``tau_max`` once there)
    and set the counter to ``patience``. Converged means all of:

    - training-loss plateau: at least ``patience + 1`` losses are recorded and the last one is neither below the
      minimum (less ``plateau_tolerance`` of it) nor above the maximum of the previous ``patience`` ones;
    - validation stalled: the last validation metric is not a new best compared with the *earlier* ones (strictly
      greater for ``metric_mode="max"``, strictly smaller for ``"min"``; a single value counts as a new best).
      With no validation metric recorded at all this condition does not block, so runs without a validation set
      still prune (the original code then never raised tau). With ``new_best_blocks=False`` it is not tested;
    - the group removed fewer than ``ceil(mu * width_before)`` channels in its last cut.

    Groups are registered lazily at ``tau_start`` (the first time :meth:`update` or :meth:`threshold` sees them).

    Args:
        tau_start: first threshold, in delta_prune units ([0, 1]).
        tau_max: last threshold.
        kappa: number of steps from ``tau_start`` to ``tau_max``.
        patience: rho, epochs without a rise after each rise; also the plateau window. At least 1.
        mu: fraction of a group's channels; a cut of at least ``ceil(mu * width)`` channels means the group is still
            shrinking at its current tau and must not rise yet.
        metric_mode: ``"max"`` when a higher validation metric is better (Dice), ``"min"`` for a loss.
        plateau_tolerance: relative improvement of the training loss that still counts as a plateau, like the
            relative ``threshold`` of ``torch.optim.lr_scheduler.ReduceLROnPlateau``. 0 (the paper): any new minimum
            blocks. A short schedule whose loss keeps falling by a few percent per epoch (epochs of a few
            iterations, as in the demo bundles) never plateaus otherwise, so tau never leaves ``tau_start``.
        new_best_blocks: True (the paper's rule as written): a new best validation metric blocks every rise until a
            later validation is not a new best, and the last metric stands until the next validation (``val_interval``
            epochs). False: the metric is not consulted, which is what the original code did in effect (its test
            compared the last value with a minimum that already included it, so it never blocked). On a run whose
            validation Dice keeps rising, as on real frames where 100 epochs do not converge, True leaves tau at its
            first steps for most of the run.
    """

    def __init__(
        self,
        tau_start: float = 0.001,
        tau_max: float = 0.3,
        kappa: int = 15,
        patience: int = 5,
        mu: float = 0.02,
        metric_mode: str = "max",
        plateau_tolerance: float = 0.0,
        new_best_blocks: bool = True,
    ) -> None:
        if not 0.0 <= float(tau_start) <= float(tau_max):
            raise ValueError(
                f"ThresholdSchedule: need 0 <= tau_start <= tau_max, got tau_start={tau_start}, tau_max={tau_max}."
            )
        if isinstance(kappa, bool) or not isinstance(kappa, int) or kappa < 1:
            raise ValueError(f"ThresholdSchedule: `kappa` must be an int >= 1, got {kappa!r}.")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"ThresholdSchedule: `patience` must be an int >= 1, got {patience!r}.")
        if not 0.0 <= float(mu) <= 1.0:
            raise ValueError(f"ThresholdSchedule: `mu` must be in [0, 1], got {mu!r}.")
        if metric_mode not in ("max", "min"):
            raise ValueError(f"ThresholdSchedule: `metric_mode` must be 'max' or 'min', got {metric_mode!r}.")
        if isinstance(plateau_tolerance, bool) or not 0.0 <= float(plateau_tolerance) < 1.0:
            raise ValueError(f"ThresholdSchedule: `plateau_tolerance` must be in [0, 1), got {plateau_tolerance!r}.")
        if not isinstance(new_best_blocks, bool):
            raise ValueError(f"ThresholdSchedule: `new_best_blocks` must be True or False, got {new_best_blocks!r}.")
        self.plateau_tolerance = float(plateau_tolerance)
        self.new_best_blocks = new_best_blocks
        self.tau_start = float(tau_start)
        self.tau_max = float(tau_max)
        self.kappa = kappa
        self.patience = patience
        self.mu = float(mu)
        self.metric_mode = metric_mode
        step = (self.tau_max - self.tau_start) / kappa
        self.levels: list[float] = [self.tau_start + i * step for i in range(kappa)] + [self.tau_max]
        self._step: dict[str, int] = {}
        self._wait: dict[str, int] = {}

    @property
    def thresholds(self) -> dict[str, float]:
        """Current tau of every registered group."""
        return {group: self.levels[step] for group, step in self._step.items()}

    @property
    def patience_left(self) -> dict[str, int]:
        """Epochs each group still waits before its next rise can be considered."""
        return dict(self._wait)

    def threshold(self, group: str) -> float:
        """The tau of ``group``, registering it at ``tau_start`` if it is new."""
        self._register(group, "threshold")
        return self.levels[self._step[group]]

    def _register(self, group: Any, where: str) -> None:
        if not isinstance(group, str):
            raise TypeError(f"ThresholdSchedule.{where}: group names must be str, got {type(group).__name__}.")
        if group not in self._step:
            self._step[group] = 0
            self._wait[group] = 0

    def training_loss_plateaued(self, train_losses: Sequence[float]) -> bool:
        """
        True when the last of at least ``patience + 1`` losses lies within the range of the ``patience`` before, the
        lower end extended by ``plateau_tolerance`` of its magnitude.
        """
        if len(train_losses) < self.patience + 1:
            return False
        last = float(train_losses[-1])
        previous = [float(value) for value in train_losses[-self.patience - 1 : -1]]
        low = min(previous)
        return low - self.plateau_tolerance * abs(low) <= last <= max(previous)

    def validation_stalled(self, val_metrics: Sequence[float]) -> bool:
        """True unless the last validation metric beats every earlier one; True when none was recorded."""
        if len(val_metrics) == 0:
            return True
        last = float(val_metrics[-1])
        earlier = [float(value) for value in val_metrics[:-1]]
        if not earlier:
            return False
        if self.metric_mode == "max":
            return not last > max(earlier)
        return not last < min(earlier)

    def update(
        self,
        train_losses: Sequence[float],
        val_metrics: Sequence[float],
        last_cut: Mapping[str, tuple[int, int]],
    ) -> dict[str, float]:
        """
        Apply the end-of-epoch rule to every group and return the thresholds to cut with now.

        Args:
            train_losses: the training loss of every epoch so far, oldest first (this epoch's last).
            val_metrics: every validation metric recorded so far, oldest first.
            last_cut: per group, ``(removed, width_before)`` of its most recent cut. A registered group that is
                missing is treated as having removed nothing; a new group is registered at ``tau_start``.

        Returns:
            The tau of every registered group.
        """
        if isinstance(last_cut, torch.Tensor) or not isinstance(last_cut, Mapping):
            raise TypeError(f"ThresholdSchedule.update: `last_cut` must be a dict, got {type(last_cut).__name__}.")
        cut_small: dict[str, bool] = {}
        for group, entry in last_cut.items():
            if not isinstance(group, str):
                raise TypeError(f"ThresholdSchedule.update: group names must be str, got {type(group).__name__}.")
            if not isinstance(entry, Sequence) or len(entry) != 2:
                raise ValueError(
                    f"ThresholdSchedule.update: last_cut[{group!r}] must be (removed, width_before), got {entry!r}."
                )
            removed, width = int(entry[0]), int(entry[1])
            if removed < 0 or width < removed:
                raise ValueError(
                    f"ThresholdSchedule.update: last_cut[{group!r}] = {entry!r} needs 0 <= removed <= width_before."
                )
            cut_small[group] = removed < math.ceil(self.mu * width)
        for group in cut_small:
            self._register(group, "update")
        globally_converged = self.training_loss_plateaued(train_losses) and (
            not self.new_best_blocks or self.validation_stalled(val_metrics)
        )
        for group in self._step:
            if self._wait[group] > 0:
                self._wait[group] -= 1
            elif globally_converged and cut_small.get(group, self.mu > 0.0):
                self._step[group] = min(self._step[group] + 1, self.kappa)
                self._wait[group] = self.patience
        return self.thresholds

    def state_dict(self) -> dict[str, Any]:
        """Plain-data state (str keys, ints, floats): safe for JSON and ``torch.load(weights_only=True)``."""
        return {
            "tau_start": self.tau_start,
            "tau_max": self.tau_max,
            "kappa": self.kappa,
            "patience": self.patience,
            "mu": self.mu,
            "metric_mode": self.metric_mode,
            "plateau_tolerance": self.plateau_tolerance,
            "new_best_blocks": self.new_best_blocks,
            "groups": {
                group: {"step": self._step[group], "patience_left": self._wait[group], "tau": self.levels[step]}
                for group, step in self._step.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """
        Restore the groups' steps and patience counters. The schedule's settings must equal those saved: a step index
        means a different tau under another ``tau_start``/``tau_max``/``kappa``, so a mismatch is refused.
        """
        if not isinstance(state, Mapping) or "groups" not in state:
            raise ValueError("ThresholdSchedule.load_state_dict: `state` must be a state_dict() dict with 'groups'.")
        for key in ("tau_start", "tau_max", "kappa", "patience", "mu", "metric_mode", "plateau_tolerance",
                    "new_best_blocks"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"ThresholdSchedule.load_state_dict: saved {key}={state[key]!r} differs from this schedule's "
                    f"{key}={getattr(self, key)!r}."
                )
        steps: dict[str, int] = {}
        waits: dict[str, int] = {}
        for group, entry in state["groups"].items():
            if not isinstance(group, str) or not isinstance(entry, Mapping):
                raise ValueError(f"ThresholdSchedule.load_state_dict: malformed entry for group {group!r}.")
            step, wait = int(entry.get("step", -1)), int(entry.get("patience_left", -1))
            if not 0 <= step <= self.kappa or wait < 0:
                raise ValueError(
                    f"ThresholdSchedule.load_state_dict: group {group!r} has step={step}, patience_left={wait}; "
                    f"need 0 <= step <= {self.kappa} and patience_left >= 0."
                )
            steps[group], waits[group] = step, wait
        self._step, self._wait = steps, waits
