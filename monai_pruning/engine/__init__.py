"""The channel engine: trace a network into channel groups, cut them physically, record the result."""

from monai_pruning.engine.channel_groups import (
    ChannelGraph,
    ChannelGroup,
    ChannelSlot,
    UnprunableChannelsWarning,
    trace_channel_groups,
)
from monai_pruning.engine.fx_capture import TraceError
from monai_pruning.engine.optimizer_state import follow_parameter_slices
from monai_pruning.engine.pruner import ChannelPruner, PruningError
from monai_pruning.engine.record import (
    PruningRecord,
    PruningRecordError,
    load_pruned_network,
    module_widths,
    resize_to_widths,
)
from monai_pruning.engine.surgery import ParameterSlice, channel_dims, remove_positions

__all__ = [
    "ChannelGraph",
    "ChannelGroup",
    "ChannelPruner",
    "ChannelSlot",
    "ParameterSlice",
    "PruningError",
    "PruningRecord",
    "PruningRecordError",
    "TraceError",
    "UnprunableChannelsWarning",
    "channel_dims",
    "follow_parameter_slices",
    "load_pruned_network",
    "module_widths",
    "remove_positions",
    "resize_to_widths",
    "trace_channel_groups",
]
