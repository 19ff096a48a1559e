"""
Size and arithmetic cost of a network: parameter count and multiply-accumulates (MACs) of one forward pass.

MACs are measured, not derived from a formula: forward hooks on the layers listed below record what each call
actually did during one real forward pass (under ``torch.no_grad()``, in the module's current train/eval mode, so a
network that adds deep-supervision heads in training mode is counted with them). A layer called twice is counted
twice; layers that are never called cost nothing.

Counting convention (one MAC = one multiplication plus one addition; FLOPs are about twice the MACs):

- ``ConvNd`` (1D/2D/3D): output elements x (in_channels / groups) x prod(kernel_size).
- ``ConvTransposeNd``: input elements x (out_channels / groups) x prod(kernel_size) -- every input element is
  scattered through the kernel into each output channel of its group.
- ``Linear``: output elements x in_features.
- ``BatchNorm``/``SyncBatchNorm``/``InstanceNorm``/``GroupNorm``/``LayerNorm`` with a learnable affine transform:
  one MAC per output element (the scale-and-shift); without it: zero.
- everything else (activations, pooling, interpolation, additions, concatenation, attention products written as
  tensor operations): zero.

Biases are not counted. "Elements" include the batch dimension, so the count is for the whole input batch: pass a
batch of one for per-sample numbers. Functional calls (``torch.nn.functional.conv2d`` written inline in a
``forward``) are not modules and are therefore not seen; neither are layers inside a ``torch.jit``/``torch.compile``
wrapper, so measure the plain ``nn.Module``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from monai_pruning.measure.probe import example_input, module_device_dtype, probe_forward

__all__ = ["Complexity", "count_parameters", "layer_macs", "macs_by_layer", "count_macs", "measure_complexity"]

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_TRANSPOSE = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_AFFINE_NORM = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
    nn.GroupNorm,
)
_COUNTED = _CONV + _CONV_TRANSPOSE + (nn.Linear, nn.LayerNorm) + _AFFINE_NORM


@dataclass(frozen=True)
class Complexity:
    """
    Size and cost of a network for one input shape.

    Attributes:
        params: number of parameters (scalars), trainable or not; shared parameters counted once.
        macs: multiply-accumulates of one forward pass of the whole input batch (see the module docstring).
    """

    params: int
    macs: int


def _check_module(module: object, where: str) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{where}: expected a torch.nn.Module, got {type(module).__name__}.")


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """
    Number of parameter scalars in ``module``; a parameter shared by several layers is counted once.

    Args:
        module: the network.
        trainable_only: count only parameters with ``requires_grad=True`` (e.g. to leave out a frozen encoder).

    Raises:
        ValueError: when the module still has lazy parameters (their size is unknown before a first forward pass).
    """
    _check_module(module, "count_parameters")
    total = 0
    for name, param in module.named_parameters():
        if isinstance(param, nn.parameter.UninitializedParameter):
            raise ValueError(
                f"count_parameters: parameter {name!r} is lazy and not initialised yet; run one forward pass first."
            )
        if trainable_only and not param.requires_grad:
            continue
        total += param.numel()
    return total


def layer_macs(layer: nn.Module, inputs: tuple[Any, ...], output: Any) -> int:
    """
    MACs of one call of ``layer`` given its positional inputs and its output, by the module-level convention.

    This is the body of the forward hook; it is public so that a caller can reuse the convention elsewhere.
    Layers outside the convention cost 0.
    """
    if isinstance(layer, _CONV_TRANSPOSE):
        per_input = (layer.out_channels // layer.groups) * math.prod(layer.kernel_size)
        return int(inputs[0].numel()) * per_input
    if isinstance(layer, _CONV):
        per_output = (layer.in_channels // layer.groups) * math.prod(layer.kernel_size)
        return int(output.numel()) * per_output
    if isinstance(layer, nn.Linear):
        return int(output.numel()) * layer.in_features
    if isinstance(layer, nn.LayerNorm):
        return int(output.numel()) if layer.elementwise_affine else 0
    if isinstance(layer, _AFFINE_NORM):
        return int(output.numel()) if layer.affine else 0
    return 0


def _fork_rng_for(module: nn.Module) -> AbstractContextManager:
    """Fork the global generators the forward pass may draw from (dropout), so the caller's stream is unchanged."""
    device, _ = module_device_dtype(module)
    if device.type == "cpu":
        return torch.random.fork_rng(devices=[])
    index = device.index if device.index is not None else getattr(torch, device.type).current_device()
    return torch.random.fork_rng(devices=[index], device_type=device.type)


def macs_by_layer(module: nn.Module, inputs: Sequence[int] | torch.Tensor) -> dict[str, int]:
    """
    MACs of one forward pass, per counted layer (qualified name as in ``named_modules()``; ``""`` is ``module``).

    Args:
        module: the network, measured in its current train/eval mode.
        inputs: the full input shape, batch dimension included (a fixed-seed standard-normal tensor is made on the
            module's device and dtype), or an example tensor used as is.

    Returns:
        MACs of every counted layer that ran, in the order they first ran. Layers that cost nothing by the
        convention (e.g. a norm without affine) appear with 0.

    The pass leaves no trace on the caller: the global random state is forked and the module's buffers (e.g.
    BatchNorm running statistics, which a training-mode pass would update with the statistics of random noise) are
    put back afterwards. The module's output may be a tensor, a tuple/list or a dict; it is discarded.

    Raises:
        ValueError: bad ``inputs`` shape, or a forward pass that fails for it (one line naming the shape).
    """
    return _collect_macs(module, inputs, "macs_by_layer")


def _collect_macs(module: nn.Module, inputs: Sequence[int] | torch.Tensor, where: str) -> dict[str, int]:
    """Body of :func:`macs_by_layer`; ``where`` names the public function in error messages."""
    _check_module(module, where)
    counts: dict[str, int] = {}
    names: dict[nn.Module, str] = {}
    for name, layer in module.named_modules():
        if isinstance(layer, _COUNTED):
            names.setdefault(layer, name)

    def hook(layer: nn.Module, layer_inputs: tuple[Any, ...], output: Any) -> None:
        name = names[layer]
        counts[name] = counts.get(name, 0) + layer_macs(layer, layer_inputs, output)

    handles = [layer.register_forward_hook(hook) for layer in names]
    saved_buffers = {
        name: buf.detach().clone()
        for name, buf in module.named_buffers()
        if not isinstance(buf, nn.parameter.UninitializedBuffer)
    }
    try:
        with _fork_rng_for(module), torch.no_grad():
            x = example_input(module, inputs, where)
            probe_forward(module, x, where)
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for name, buf in module.named_buffers():
                saved = saved_buffers.get(name)
                if saved is not None and buf.shape == saved.shape:
                    buf.copy_(saved)
    return counts


def count_macs(module: nn.Module, inputs: Sequence[int] | torch.Tensor) -> int:
    """
    Multiply-accumulates of one forward pass of ``module`` (convention in the module docstring).

    Args:
        module: the network, measured in its current train/eval mode.
        inputs: the full input shape, batch dimension included, e.g. ``(1, 1, 96, 96, 96)`` for one 3D patch; or an
            example tensor used as is.

    Raises:
        ValueError: bad ``inputs`` shape, or a forward pass that fails for it.
    """
    return sum(_collect_macs(module, inputs, "count_macs").values())


def measure_complexity(module: nn.Module, input_shape: Sequence[int] | torch.Tensor) -> Complexity:
    """
    Parameter count and MACs of ``module`` for inputs of ``input_shape`` (batch dimension included).

    Raises:
        ValueError: bad ``input_shape``, or a forward pass that fails for it.
    """
    _check_module(module, "measure_complexity")
    return Complexity(
        params=count_parameters(module), macs=sum(_collect_macs(module, input_shape, "measure_complexity").values())
    )
