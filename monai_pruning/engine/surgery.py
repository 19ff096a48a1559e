"""Physical removal of channel positions from modules, in place.

The module objects stay the same (the trainer, the evaluator and the checkpoint savers all hold references to them);
their parameters and buffers are replaced by smaller tensors and their width attributes (``out_channels``,
``num_features``, ...) updated so that ``repr``, export and a later rebuild agree with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["ParameterSlice", "channel_dims", "remove_positions"]

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


@dataclass(frozen=True)
class ParameterSlice:
    """How a new parameter was cut from an old one: ``new = old.index_select(d, idx)`` for each ``(d, idx)``."""

    old: nn.Parameter
    new: nn.Parameter
    kept: tuple[tuple[int, torch.Tensor], ...]

    def apply(self, tensor: torch.Tensor) -> torch.Tensor:
        """Cut a tensor shaped like the old parameter (an optimizer moment, a gradient) the same way."""
        for dim, idx in self.kept:
            tensor = tensor.index_select(dim, idx.to(tensor.device))
        return tensor


def _kept(size: int, removed: Sequence[int], device: torch.device) -> torch.Tensor:
    drop = set(removed)
    return torch.tensor([i for i in range(size) if i not in drop], dtype=torch.long, device=device)


def channel_dims(module: nn.Module, role: str) -> tuple[dict[str, int], str | None]:
    """
    Which dimension of which tensor of ``module`` a channel slot of ``role`` (see ``ChannelSlot``) indexes, and the
    attribute holding the width: ``({"weight": 0, "bias": 0}, "out_channels")`` for a convolution's output channels.
    """
    if isinstance(module, _CONV_T):
        if role == "out":
            return {"weight": 1, "bias": 0}, "out_channels"
        if role == "in":
            return {"weight": 0}, "in_channels"
    elif isinstance(module, nn.modules.conv._ConvNd):
        if role == "out":
            return {"weight": 0, "bias": 0}, "out_channels"
        if role == "in":
            return {"weight": 1}, "in_channels"
        if role == "depthwise":
            return {"weight": 0, "bias": 0}, None
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        return {"weight": 0, "bias": 0, "running_mean": 0, "running_var": 0}, "num_features"
    elif isinstance(module, nn.GroupNorm):
        return {"weight": 0, "bias": 0}, "num_channels"
    elif isinstance(module, nn.PReLU):
        return {"weight": 0}, "num_parameters"
    raise TypeError(f"cannot cut role '{role}' of {type(module).__name__}")


def remove_positions(module: nn.Module, removals: dict[str, Sequence[int]]) -> list[ParameterSlice]:
    """Remove channel positions from one module; ``removals`` maps a role (see ``ChannelSlot``) to positions.

    Returns one :class:`ParameterSlice` per replaced parameter so that an optimizer can follow the change.
    """
    cuts: dict[str, list[tuple[int, torch.Tensor]]] = {}
    widths: dict[str, int] = {}
    for role, positions in removals.items():
        dims, width_attr = channel_dims(module, role)
        for tensor_name, dim in dims.items():
            tensor = getattr(module, tensor_name, None)
            if tensor is None:
                continue
            idx = _kept(tensor.shape[dim], positions, tensor.device)
            cuts.setdefault(tensor_name, []).append((dim, idx))
        if role == "depthwise":
            width = module.weight.shape[0] - len(set(positions))
            widths.update(in_channels=width, out_channels=width, groups=width)
        if isinstance(module, nn.GroupNorm):
            group_size = module.num_channels // module.num_groups
            widths["num_groups"] = (module.num_channels - len(set(positions))) // group_size
        if width_attr is not None:
            widths[width_attr] = getattr(module, width_attr) - len(set(positions))

    slices: list[ParameterSlice] = []
    with torch.no_grad():
        for tensor_name, kept in cuts.items():
            old = getattr(module, tensor_name)
            new_data = old.detach()
            for dim, idx in kept:
                new_data = new_data.index_select(dim, idx)
            if tensor_name in module._parameters:
                new = nn.Parameter(new_data.clone(), requires_grad=old.requires_grad)
                if old.grad is not None:
                    grad = old.grad
                    for dim, idx in kept:
                        grad = grad.index_select(dim, idx)
                    new.grad = grad.clone()
                module._parameters[tensor_name] = new
                slices.append(ParameterSlice(old, new, tuple(kept)))
            else:
                module._buffers[tensor_name] = new_data.clone()
    for attr, value in widths.items():
        setattr(module, attr, value)
    return slices
