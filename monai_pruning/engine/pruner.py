"""Cut channels of a network physically, group by group, keeping an optimizer attached.

Example::

    pruner = ChannelPruner(network, example_shape=(2, 1, 64, 64))
    widths = pruner.widths()                       # {"model.0.conv": 16, ...}
    pruner.cut({"model.0.conv": [3, 7]}, optimizer=optimizer)

The network is re-traced after each cut, so group names stay the same (the first producing convolution) while
channel indices always refer to the current network.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from monai_pruning.engine.channel_groups import ChannelGraph, ChannelGroup, trace_channel_groups
from monai_pruning.engine.optimizer_state import follow_parameter_slices
from monai_pruning.engine.surgery import ParameterSlice, remove_positions

__all__ = ["ChannelPruner", "PruningError"]


class PruningError(ValueError):
    """A requested cut is not allowed (unknown or unprunable group, bad indices, too few channels left)."""


class ChannelPruner:
    """Physical channel pruning of one network.

    Args:
        network: the network to prune in place; its module objects are kept, their tensors replaced.
        example_shape: ``(batch, channels, *spatial)`` of an input the network accepts; used to trace the channel
            flow. Small spatial sizes keep tracing fast; use a batch of 2 or more with BatchNorm.
        min_channels: every group keeps at least this many channels.
    """

    def __init__(self, network: nn.Module, example_shape: Sequence[int], min_channels: int = 1) -> None:
        if min_channels < 1:
            raise PruningError(f"min_channels must be at least 1, got {min_channels}")
        self.network = network
        self.example_shape = tuple(int(s) for s in example_shape)
        self.min_channels = int(min_channels)
        self.graph: ChannelGraph = trace_channel_groups(network, self.example_shape)

    @property
    def groups(self) -> dict[str, ChannelGroup]:
        """All channel groups by name, prunable or not."""
        return self.graph.groups

    @property
    def prunable_groups(self) -> dict[str, ChannelGroup]:
        return self.graph.prunable_groups

    def widths(self, prunable_only: bool = True) -> dict[str, int]:
        """Current number of channels per group."""
        groups = self.prunable_groups if prunable_only else self.groups
        return {name: g.size for name, g in groups.items()}

    def removable(self, name: str) -> int:
        """How many more channels group ``name`` can lose before reaching ``min_channels``."""
        group = self.prunable_groups[name]
        keep = -(-max(self.min_channels, group.unit) // group.unit) * group.unit
        return max(0, group.size - keep)

    def _validate(self, removals: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
        clean: dict[str, list[int]] = {}
        for name, channels in removals.items():
            if name not in self.groups:
                raise PruningError(f"unknown channel group '{name}'; known groups: {', '.join(self.groups)}")
            group = self.groups[name]
            if not group.prunable:
                raise PruningError(f"channel group '{name}' is not prunable: {group.reason}")
            idx = sorted({int(c) for c in channels})
            if not idx:
                continue
            if idx[0] < 0 or idx[-1] >= group.size:
                raise PruningError(f"channel index out of range for group '{name}' of {group.size} channels: {idx}")
            if group.unit > 1:
                blocks = {i // group.unit for i in idx}
                if len(idx) != len(blocks) * group.unit:
                    raise PruningError(
                        f"group '{name}' can only lose whole blocks of {group.unit} channels (GroupNorm groups)"
                    )
            if group.size - len(idx) < max(self.min_channels, group.unit):
                raise PruningError(
                    f"cutting {len(idx)} of {group.size} channels from group '{name}' would leave fewer than "
                    f"min_channels={max(self.min_channels, group.unit)}"
                )
            clean[name] = idx
        return clean

    def cut(
        self, removals: Mapping[str, Sequence[int]], optimizer: torch.optim.Optimizer | None = None
    ) -> dict[str, int]:
        """Remove the given channels (``{group name: channel indices}``) from the network, all at once.

        The optimizer, if given, is re-pointed at the new parameters with its state cut alike, so training continues
        without a restart.  Returns the number of channels removed per group.

        Raises:
            PruningError: a group is unknown or not prunable, an index is out of range or not a whole GroupNorm
                block, or a group would keep fewer than ``min_channels``.
        """
        clean = self._validate(removals)
        if not clean:
            return {}
        modules = dict(self.network.named_modules())
        per_module: dict[str, dict[str, list[int]]] = {}
        for (module_name, role), positions in self.graph.positions_to_remove(clean).items():
            per_module.setdefault(module_name, {})[role] = positions
        slices: list[ParameterSlice] = []
        for module_name, roles in per_module.items():
            slices.extend(remove_positions(modules[module_name], roles))
        if optimizer is not None:
            follow_parameter_slices(optimizer, slices)
        self.graph = trace_channel_groups(self.network, self.example_shape)
        return {name: len(idx) for name, idx in clean.items()}
