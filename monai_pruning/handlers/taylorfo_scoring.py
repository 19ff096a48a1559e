"""
TaylorFO importance of every channel of every group, from dedicated forward/backward passes (``docs/taylorfo.md``).

For each scoring batch: one forward pass with the feature taps on; the gradient at the network output (of the loss,
or random when ``gradient="random"``: label-free) is scaled per sample to unit L2 norm over the whole output (all
deep-supervision heads together) and backpropagated *only to the tapped consumer inputs*
(``torch.autograd.grad``), so parameter ``.grad`` fields, the optimizer and any AMP grad scaler are left untouched
and the scores are unscaled by construction. The per-sample normalisation assumes that the samples of a batch do not
interact: BatchNorm layers run in eval mode (everything else keeps training mode, so deep-supervision heads stay on),
and the loss must be a per-sample one (a sum or mean of per-sample terms, e.g.
:class:`~monai_pruning.criteria.PerSampleLoss` around a loss that pools the batch, such as ``DiceCELoss(batch=True)``);
the scores then do not depend on how the scoring set is cut into batches.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from monai_pruning.criteria import (
    REDUCTION_MODES,
    TaylorAccumulator,
    layerwise_l2_normalize,
    normalize_output_gradients,
)
from monai_pruning.handlers.feature_taps import FeatureTaps

__all__ = ["GRADIENT_SOURCES", "batch_norms_in_eval", "score_channels", "summed_weight_gradients"]

GRADIENT_SOURCES = ("loss", "random")


@contextlib.contextmanager
def batch_norms_in_eval(network: nn.Module) -> Iterator[None]:
    """Training mode for the network (deep supervision on), eval mode for its BatchNorm layers; modes restored."""
    modes = {module: module.training for module in network.modules()}
    network.train()
    for module in network.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


def _output_tensors(pred: Any) -> list[torch.Tensor]:
    """The network output as a list of tensors: one tensor, or a list/tuple of deep-supervision outputs."""
    if isinstance(pred, torch.Tensor):
        return [pred]
    if isinstance(pred, (list, tuple)) and pred and all(isinstance(p, torch.Tensor) for p in pred):
        return list(pred)
    raise TypeError(f"score_channels: the network output must be a tensor or a list of tensors, got {type(pred)}.")


def _unpack(batch: Any) -> tuple[torch.Tensor, Any, tuple, dict]:
    """``(inputs, targets)`` or ``(inputs, targets, args, kwargs)`` as produced by a MONAI ``prepare_batch``."""
    if isinstance(batch, (list, tuple)) and len(batch) == 2:
        return batch[0], batch[1], (), {}
    if isinstance(batch, (list, tuple)) and len(batch) == 4:
        return batch[0], batch[1], tuple(batch[2]), dict(batch[3])
    raise TypeError("score_channels: each prepared batch must be (inputs, targets) or (inputs, targets, args, kwargs).")


def _forward_and_loss(
    run: Callable[..., Any],
    batch: Any,
    loss_function: Callable[..., torch.Tensor] | None,
    autocast: Mapping[str, Any] | None,
) -> tuple[Any, torch.Tensor | None]:
    """One forward pass (under CUDA autocast when asked, as ``SupervisedTrainer(amp=True)``) and its mean loss."""
    inputs, targets, args, kwargs = _unpack(batch)
    context = (
        torch.autocast("cuda", **dict(autocast))
        if autocast is not None and inputs.device.type == "cuda"
        else contextlib.nullcontext()
    )
    with context:
        pred = run(inputs, *args, **kwargs)
        loss = loss_function(pred, targets).mean() if loss_function is not None else None
    return pred, loss


def summed_weight_gradients(
    network: nn.Module,
    module_names: Iterable[str],
    batches: Iterable[Any],
    loss_function: Callable[..., torch.Tensor],
    forward: Callable[..., Any] | None = None,
    autocast: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """
    Gradient of the loss with respect to the ``weight`` of each named module, summed over ``batches``: what
    Torch-Pruning's Taylor importance reads from ``.grad`` after one ``loss.backward()`` per batch, taken here with
    ``torch.autograd.grad`` so that parameter ``.grad`` fields and the optimizer are left untouched.

    Args:
        network: the network (BatchNorm in eval mode while scoring, modes restored after).
        module_names: modules of ``network`` with a ``weight`` parameter (e.g. its convolutions and BatchNorms).
        batches: prepared batches ``(inputs, targets)`` or ``(inputs, targets, args, kwargs)``, on the device.
        loss_function: ``loss(pred, targets)``, reduced with ``.mean()``: the training loss as it is, batch-pooled
            or not (the gradient is that of the batch loss, as in a training step).
        forward: ``forward(inputs, *args, **kwargs) -> pred`` (e.g. the trainer's inferer); default ``network(x)``.
        autocast: keyword arguments for ``torch.autocast("cuda")`` (CUDA inputs only), or None.

    Returns:
        ``{module name: gradient}`` shaped like each weight (float32 at least), summed over the batches.

    Raises:
        ValueError: no batch at all, or a named module without a ``weight`` parameter.
    """
    modules = dict(network.named_modules())
    weights = {}
    for name in module_names:
        weight = getattr(modules.get(name), "weight", None)
        if not isinstance(weight, nn.Parameter):
            raise ValueError(f"summed_weight_gradients: module {name!r} has no weight parameter.")
        weights[name] = weight
    run = forward if forward is not None else (lambda x, *a, **k: network(x, *a, **k))
    totals = {name: torch.zeros_like(weight, dtype=torch.promote_types(weight.dtype, torch.float32))
              for name, weight in weights.items()}
    batches_seen = 0
    with batch_norms_in_eval(network), torch.enable_grad():
        for batch in batches:
            _, loss = _forward_and_loss(run, batch, loss_function, autocast)
            grads = torch.autograd.grad(loss, list(weights.values()), allow_unused=True)
            for name, grad in zip(weights, grads):
                if grad is not None:
                    totals[name] += grad.detach().to(totals[name].dtype)
            batches_seen += 1
    if batches_seen == 0:
        raise ValueError("summed_weight_gradients: no batch to score on (empty data loader or score_batches=0).")
    return totals


def score_channels(
    network: nn.Module,
    taps: FeatureTaps,
    batches: Iterable[Any],
    loss_function: Callable[..., torch.Tensor] | None = None,
    forward: Callable[..., Any] | None = None,
    reduction: str = "abs",
    gradient: str = "loss",
    normalize_gradient: bool = True,
    layerwise_normalize: bool = False,
    generator: torch.Generator | None = None,
    autocast: Mapping[str, Any] | None = None,
    merge: Callable[[Mapping[str, TaylorAccumulator]], None] | None = None,
) -> dict[str, torch.Tensor]:
    """
    TaylorFO importance ``(C,)`` per group over ``batches``.

    Args:
        network: the network (BatchNorm in eval mode while scoring, modes restored after).
        taps: feature taps on all consumer inputs of the groups, built with ``gradients=True``.
        batches: prepared batches ``(inputs, targets)`` or ``(inputs, targets, args, kwargs)``, on the device.
        loss_function: ``loss(pred, targets)``, reduced with ``.mean()``; needed for ``gradient="loss"``. Its
            gradient for one sample must not depend on the other samples of the batch (wrap a loss that pools the
            batch in :class:`~monai_pruning.criteria.PerSampleLoss`).
        forward: ``forward(inputs, *args, **kwargs) -> pred`` (e.g. the trainer's inferer); default ``network(x)``.
        reduction: ``"abs"`` (sum over samples of ``|z|``), ``"sq"`` (of ``z**2``) or ``"signed"`` (``|sum z|``).
        gradient: ``"loss"`` (gradient of the loss at the output) or ``"random"`` (standard normal, label-free).
        normalize_gradient: scale each sample's output gradient to unit L2 norm before backpropagating it.
        layerwise_normalize: divide each group's scores by their L2 norm (ablation; makes groups comparable).
        generator: random generator for ``gradient="random"`` (drawn on the CPU, so results do not depend on the
            device).
        autocast: keyword arguments for ``torch.autocast("cuda")`` (AMP, CUDA inputs only, like MONAI's trainer),
            or None to run in full precision.
        merge: called with the accumulators (``{group: TaylorAccumulator}``) before the scores are computed, e.g.
            :meth:`~monai_pruning.handlers.PruningHandlerBase.sum_accumulators` to score over every rank's batches
            in a distributed run (the sums add up exactly; the ``"signed"`` absolute value comes after).

    Returns:
        ``{group: (C,) scores}`` for the groups whose channels received a gradient, in loss units (unitless after
        gradient normalisation; squared for ``"sq"``).

    Raises:
        ValueError: an unknown ``reduction``/``gradient``, or no batch at all.
    """
    if reduction not in REDUCTION_MODES:
        raise ValueError(f"score_channels: `reduction` must be one of {REDUCTION_MODES}, got {reduction!r}.")
    if gradient not in GRADIENT_SOURCES:
        raise ValueError(f"score_channels: `gradient` must be one of {GRADIENT_SOURCES}, got {gradient!r}.")
    if gradient == "loss" and loss_function is None:
        raise ValueError("score_channels: gradient='loss' needs a `loss_function`.")
    if not taps.gradients:
        raise ValueError("score_channels: the feature taps must be built with gradients=True.")
    run = forward if forward is not None else (lambda x, *a, **k: network(x, *a, **k))
    accumulators = {group: TaylorAccumulator(reduction) for group in taps.groups}
    batches_seen = 0
    with batch_norms_in_eval(network), torch.enable_grad():
        for batch in batches:
            taps.clear()
            taps.enabled = True
            try:
                pred, loss = _forward_and_loss(run, batch, loss_function if gradient == "loss" else None, autocast)
            finally:
                taps.enabled = False
            outputs = _output_tensors(pred)
            if gradient == "loss":
                grads = list(torch.autograd.grad(loss, outputs, retain_graph=True, allow_unused=True))
                grads = [torch.zeros_like(o) if g is None else g for o, g in zip(outputs, grads)]
            else:
                # drawn on the CPU in float32: the same seed gives the same gradients on any device
                grads = [
                    torch.randn(o.shape, generator=generator, dtype=torch.float32).to(o.device, o.dtype)
                    for o in outputs
                ]
            if normalize_gradient:
                grads = normalize_output_gradients(grads)
            tapped = taps.tapped_tensors()
            if tapped:
                torch.autograd.grad(outputs, tapped, grad_outputs=grads, allow_unused=True)
            for group, contributions in taps.contributions().items():
                accumulators[group].update(contributions)
            taps.clear()
            batches_seen += 1
    if batches_seen == 0:
        raise ValueError("score_channels: no batch to score on (empty data loader or score_batches=0).")
    if merge is not None:
        merge(accumulators)
    scores = {group: acc.compute() for group, acc in accumulators.items() if acc.num_samples > 0}
    return layerwise_l2_normalize(scores) if layerwise_normalize else scores
