"""
Probing a network: the example input a measurement feeds it, and the guarded forward pass itself.

Every measurement in this subpackage runs a real forward pass, so it needs an input of the right shape, dtype and
device. The input is drawn from a private, fixed-seed generator: the same shape always gives the same tensor, and
the caller's global random state is never consumed. A forward pass that fails (typically an input shape the network
cannot take) is reported as a one-line ``ValueError`` naming the network and the shape.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["EXAMPLE_SEED", "module_device_dtype", "validate_shape", "example_input", "probe_forward"]

#: seed of the private generator used for example inputs (any fixed value works; fixed makes runs comparable).
EXAMPLE_SEED = 0


def module_device_dtype(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """
    Device and floating-point dtype an input must have to go through ``module``.

    Taken from the first floating-point parameter, then buffer; a module with neither (e.g. ``nn.ReLU``) accepts
    a CPU tensor of torch's default dtype. Lazy (not yet materialised) tensors are skipped.
    """
    for tensor in list(module.parameters()) + list(module.buffers()):
        if isinstance(tensor, nn.parameter.UninitializedTensorMixin):
            continue
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def _as_dim(value: object) -> int | None:
    """``value`` as a Python int when it is an integer (Python, NumPy or 0-d integer tensor), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        return None


def validate_shape(shape: object, where: str) -> tuple[int, ...]:
    """
    Check an input shape given by a caller and return it as a tuple of Python ints.

    Args:
        shape: full input shape including the batch dimension, e.g. ``(1, 1, 96, 96, 96)``.
        where: name of the calling function, put at the start of the error message.

    Raises:
        ValueError: when ``shape`` is not a non-empty sequence of positive integers.
    """
    if isinstance(shape, (str, bytes)) or not isinstance(shape, Sequence) or len(shape) == 0:
        raise ValueError(f"{where}: input_shape must be a non-empty sequence of positive ints, got {shape!r}.")
    dims = [_as_dim(value) for value in shape]
    if any(dim is None for dim in dims):
        raise ValueError(f"{where}: input_shape must contain only ints, got {tuple(shape)!r}.")
    if any(dim <= 0 for dim in dims):  # type: ignore[operator]
        raise ValueError(f"{where}: every input_shape entry must be positive, got {tuple(dims)!r}.")
    return tuple(dims)  # type: ignore[arg-type]


def example_input(
    module: nn.Module, shape_or_tensor: Sequence[int] | torch.Tensor, where: str, device: torch.device | None = None
) -> torch.Tensor:
    """
    The input a measurement feeds to ``module``.

    Args:
        module: network to be measured; decides the dtype (and the device unless ``device`` is given).
        shape_or_tensor: a full input shape (batch dimension included) for a standard-normal tensor drawn with
            :data:`EXAMPLE_SEED`, or a ready tensor, which is used unchanged.
        where: name of the calling function, for error messages.
        device: device to create the tensor on; defaults to the module's.
    """
    if isinstance(shape_or_tensor, torch.Tensor):
        return shape_or_tensor
    shape = validate_shape(shape_or_tensor, where)
    module_device, dtype = module_device_dtype(module)
    generator = torch.Generator(device="cpu").manual_seed(EXAMPLE_SEED)
    # drawn on the CPU so that the values do not depend on an accelerator's generator, then moved
    return torch.randn(shape, generator=generator, dtype=dtype).to(device if device is not None else module_device)


def probe_forward(module: nn.Module, x: torch.Tensor, where: str) -> Any:
    """
    Call ``module(x)`` and turn a failure into a one-line ``ValueError``.

    The original exception's first line is kept in the message; its traceback (deep inside torch) is dropped
    because the usual cause is the caller's input shape, not the network.
    """
    try:
        return module(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        text = str(err).strip()
        first_line = text.splitlines()[0] if text else type(err).__name__
        raise ValueError(
            f"{where}: forward pass of {type(module).__name__} failed for an input of shape {tuple(x.shape)}: "
            f"{first_line}"
        ) from None
