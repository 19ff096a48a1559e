"""Channel groups: the sets of channels of a network that must be removed together.

Every tensor in the traced graph is described along its channel axis (dim 1) by a list of *labels*: label
``(space, i)`` says that this channel is channel ``i`` of the *channel space* ``space``.  A convolution creates a new
space for its output channels; per-channel operations (normalisation, activation, pooling, up-sampling) keep the
labels; ``torch.cat`` on dim 1 concatenates them; a residual ``add`` or a gating ``mul`` of two tensors with the same
number of channels says the two spaces are one (union-find).  A space reaching the network output or coming from its
input is fixed.  A *channel group* is one union of spaces holding at least one producing convolution.

Every tensor dimension the cut must slice is recorded as a :class:`ChannelSlot`: a module, the role that tells which
parameter dimension is meant, and the labels of that dimension's positions.  Cutting channel ``i`` of a group removes,
in every slot, the positions whose label belongs to the group with index ``i``; it is therefore correct through any
number of concatenations, skips and residual joins, whatever their order.

Anything not understood (an unknown module or function touching channels, channels combined out of order, a
convolution with ``groups`` that is neither 1 nor depthwise) fixes the spaces involved; the group then is not
prunable and one warning names the module and operation.
"""

from __future__ import annotations

import math
import operator
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import TensorMetadata

from monai_pruning.engine.fx_capture import capture_graph

__all__ = ["ChannelGroup", "ChannelSlot", "ChannelGraph", "UnprunableChannelsWarning", "trace_channel_groups"]

Label = tuple[int, int]


class UnprunableChannelsWarning(UserWarning):
    """Some channels cannot be pruned because the tracer does not understand an operation that uses them."""


@dataclass(frozen=True)
class ChannelSlot:
    """One channel-indexed dimension of one module's tensors.

    ``role`` is ``"out"`` (output channels of a convolution), ``"in"`` (input channels of a convolution),
    ``"depthwise"`` (a depthwise convolution: input and output channels are the same), ``"channel"`` (per-channel
    parameters and buffers of a normalisation or PReLU) or ``"groupnorm"``.
    """

    module: str
    role: str
    labels: tuple[Label, ...]


@dataclass
class ChannelGroup:
    """A set of channels removed together; channel ``i`` of the group is channel ``i`` of each of its spaces.

    Attributes:
        name: stable identifier, the name of the first (in execution order) convolution producing these channels.
        size: number of channels.
        producers: convolutions whose output channels are this group (several when joined by residual additions).
        consumers: modules that read these channels (their input slice is cut).
        followers: per-channel modules (normalisation, PReLU, depthwise convolutions) between producer and consumers.
        unit: channels can only be removed in blocks of ``unit`` consecutive channels (GroupNorm groups).
        prunable: whether any channel of the group may be removed.
        reason: why the group is not prunable.
    """

    name: str
    size: int
    producers: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)
    followers: list[str] = field(default_factory=list)
    unit: int = 1
    prunable: bool = True
    reason: str | None = None
    root: int = -1


class _UnionFind:
    def __init__(self) -> None:
        self.parent: list[int] = []

    def add(self) -> int:
        self.parent.append(len(self.parent))
        return len(self.parent) - 1

    def find(self, item: int) -> int:
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORM = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.InstanceNorm1d,
    nn.InstanceNorm2d,
    nn.InstanceNorm3d,
)
# leaf modules that act on each channel separately, with no per-channel parameters
_PASSTHROUGH_MODULES = (
    nn.Identity,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Upsample,
    nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d,
    nn.ConstantPad1d,
    nn.ConstantPad2d,
    nn.ConstantPad3d,
    nn.ReflectionPad1d,
    nn.ReflectionPad2d,
    nn.ReflectionPad3d,
    nn.ReplicationPad1d,
    nn.ReplicationPad2d,
    nn.ReplicationPad3d,
    nn.ZeroPad1d,
    nn.ZeroPad2d,
    nn.ZeroPad3d,
)
_PASSTHROUGH_FUNCTIONS = {
    torch.relu,
    torch.relu_,
    torch.sigmoid,
    torch.tanh,
    torch.exp,
    torch.abs,
    torch.neg,
    torch.clamp,
    torch.square,
    torch.sqrt,
    operator.neg,
    F.relu,
    F.relu6,
    F.leaky_relu,
    F.elu,
    F.selu,
    F.gelu,
    F.silu,
    F.mish,
    F.hardswish,
    F.softplus,
    F.sigmoid,
    F.tanh,
    F.dropout,
    F.dropout1d,
    F.dropout2d,
    F.dropout3d,
    F.interpolate,
    F.upsample,
    F.max_pool1d,
    F.max_pool2d,
    F.max_pool3d,
    F.avg_pool1d,
    F.avg_pool2d,
    F.avg_pool3d,
    F.adaptive_avg_pool1d,
    F.adaptive_avg_pool2d,
    F.adaptive_avg_pool3d,
    F.adaptive_max_pool1d,
    F.adaptive_max_pool2d,
    F.adaptive_max_pool3d,
}
_PASSTHROUGH_METHODS = {
    "relu",
    "relu_",
    "sigmoid",
    "sigmoid_",
    "tanh",
    "tanh_",
    "exp",
    "abs",
    "neg",
    "clamp",
    "clamp_",
    "contiguous",
    "clone",
    "detach",
    "float",
    "to",
    "type_as",
    "sqrt",
    "square",
}
_BINARY_FUNCTIONS = {
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
}
_BINARY_METHODS = {"add", "sub", "mul", "div", "add_", "sub_", "mul_", "div_"}
_CAT_FUNCTIONS = {torch.cat, torch.concat, torch.concatenate}


def _module_path(node: torch.fx.Node) -> str:
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack") or {}
    if stack:
        return str(list(stack.values())[-1][0]) or "<network>"
    return "<network>"


def _op_name(node: torch.fx.Node) -> str:
    target = node.target
    return target if isinstance(target, str) else getattr(target, "__name__", repr(target))


def _tensor_meta(node: Any) -> Any:
    return node.meta.get("tensor_meta") if isinstance(node, torch.fx.Node) else None


def _is_label_list(labels: Any) -> bool:
    return isinstance(labels, list) and bool(labels) and isinstance(labels[0], tuple)


def _channels_of(meta: Any) -> int | None:
    if isinstance(meta, TensorMetadata) and len(meta.shape) >= 2:
        return int(meta.shape[1])
    return None


class _ChannelFlow:
    """Walks a traced graph once and builds spaces, slots, joins and fixes."""

    def __init__(self, graph_module: torch.fx.GraphModule) -> None:
        self.graph_module = graph_module
        self.modules = dict(graph_module.named_modules())
        self.spaces = _UnionFind()
        self.space_size: list[int] = []
        self.space_producer: list[str | None] = []
        self.fixed: dict[int, tuple[str, bool]] = {}  # space -> (reason, warn)
        self.slots: list[ChannelSlot] = []
        self.groupnorm_blocks: list[tuple[str, tuple[Label, ...], int]] = []
        self.labels: dict[torch.fx.Node, Any] = {}
        self.module_calls: dict[str, tuple[list[Label], Any]] = {}

    # --- spaces -------------------------------------------------------------------------------------------------
    def new_space(self, size: int, producer: str | None = None, fixed: str | None = None, warn: bool = False):
        space = self.spaces.add()
        self.space_size.append(size)
        self.space_producer.append(producer)
        if fixed is not None:
            self.fixed[space] = (fixed, warn)
        return [(space, i) for i in range(size)]

    def fix(self, labels: Any, reason: str, warn: bool) -> None:
        for space in {lab[0] for lab in self._iter_labels(labels)}:
            if space not in self.fixed or (warn and not self.fixed[space][1]):
                self.fixed[space] = (reason, warn)

    def _iter_labels(self, labels: Any):
        if labels is None:
            return
        if _is_label_list(labels):
            yield from labels
        elif isinstance(labels, (list, tuple)):
            for item in labels:
                yield from self._iter_labels(item)
        elif isinstance(labels, dict):
            for item in labels.values():
                yield from self._iter_labels(item)

    def join(self, a: list[Label], b: list[Label], where: str) -> bool:
        """Declare that position ``k`` of ``a`` and of ``b`` are the same channel (residual add, gating mul)."""
        aligned = len(a) == len(b) and all(
            la[1] == lb[1] and self.space_size[la[0]] == self.space_size[lb[0]] for la, lb in zip(a, b)
        )
        if not aligned:
            self.fix(a + b, f"channels combined out of order by {where}", warn=True)
            return False
        for la, lb in zip(a, b):
            self.spaces.union(la[0], lb[0])
        return True

    # --- graph walk ---------------------------------------------------------------------------------------------
    def labels_of(self, arg: Any) -> Any:
        if isinstance(arg, torch.fx.Node):
            return self.labels.get(arg)
        if isinstance(arg, (list, tuple)):
            return [self.labels_of(a) for a in arg]
        return None

    def run(self) -> None:
        for node in self.graph_module.graph.nodes:
            if node.op == "placeholder":
                out = self._fresh_for(node, "network input", warn=False)
            elif node.op == "get_attr":
                out = self._fresh_for(node, f"constant tensor '{node.target}'", warn=False)
            elif node.op == "output":
                self.fix(self.labels_of(node.args[0]), "network output", warn=False)
                continue
            elif node.op == "call_module":
                out = self._call_module(node)
            else:
                out = self._call_function(node)
            self.labels[node] = self._checked(node, out)

    def _fresh_for(self, node: torch.fx.Node, reason: str, warn: bool) -> Any:
        meta = _tensor_meta(node)
        channels = _channels_of(meta)
        if channels is not None:
            return self.new_space(channels, fixed=reason, warn=warn)
        if isinstance(meta, (list, tuple)):
            return [self.new_space(c, fixed=reason, warn=warn) if (c := _channels_of(m)) is not None else None
                    for m in meta]
        return None

    def _checked(self, node: torch.fx.Node, labels: Any) -> Any:
        """Guard against our own bookkeeping errors: the label count must equal the real channel count."""
        meta = _tensor_meta(node)
        channels = _channels_of(meta)
        if channels is None:
            if isinstance(meta, (list, tuple)):  # several tensors (split/chunk results): one label list each
                if isinstance(labels, list) and len(labels) == len(meta) and not _is_label_list(labels):
                    return labels
                return self._fresh_for(node, f"{_op_name(node)} in {_module_path(node)}", warn=True)
            return None
        if _is_label_list(labels) and len(labels) == channels:
            return labels
        if labels is not None:
            self.fix(labels, f"{_op_name(node)} in {_module_path(node)} (channel count not understood)", warn=True)
        return self._fresh_for(node, f"{_op_name(node)} in {_module_path(node)}", warn=True)

    def opaque(self, node: torch.fx.Node, what: str) -> Any:
        reason, warn = f"unsupported {what} in {_module_path(node)}", True
        if node.users and all(user.op == "output" for user in node.users):
            # e.g. deep-supervision outputs stacked into one tensor: these are output heads, fixed anyway
            reason, warn = f"network output (through {what})", False
        inputs = [self.labels_of(a) for a in node.args] + [self.labels_of(v) for v in node.kwargs.values()]
        self.fix(inputs, reason, warn=warn)
        return self._fresh_for(node, reason, warn=warn)

    def _input_labels(self, node: torch.fx.Node) -> list[Label] | None:
        labels = self.labels_of(node.args[0]) if node.args else None
        return labels if _is_label_list(labels) else None

    def _call_module(self, node: torch.fx.Node) -> Any:
        name = str(node.target)
        module = self.modules[name]
        labels_in = self._input_labels(node)
        if labels_in is None or len(node.args) != 1 or node.kwargs:
            if isinstance(module, _CONV + _CONV_T + _NORM + (nn.GroupNorm, nn.PReLU)):
                return self.opaque(node, f"call of {type(module).__name__}")
            if isinstance(module, _PASSTHROUGH_MODULES) and labels_in is not None:
                return labels_in
            return self.opaque(node, f"module {type(module).__name__}")
        if isinstance(module, _CONV + _CONV_T):
            return self._convolution(node, name, module, labels_in)
        if isinstance(module, _NORM):
            if module.num_features != len(labels_in):
                return self.opaque(node, f"{type(module).__name__} width")
            self.slots.append(ChannelSlot(name, "channel", tuple(labels_in)))
            return labels_in
        if isinstance(module, nn.GroupNorm):
            if module.num_channels != len(labels_in):
                return self.opaque(node, "GroupNorm width")
            self.slots.append(ChannelSlot(name, "groupnorm", tuple(labels_in)))
            self.groupnorm_blocks.append((name, tuple(labels_in), module.num_channels // module.num_groups))
            return labels_in
        if isinstance(module, nn.PReLU):
            if module.num_parameters == len(labels_in) and module.num_parameters > 1:
                self.slots.append(ChannelSlot(name, "channel", tuple(labels_in)))
                return labels_in
            if module.num_parameters == 1:
                return labels_in
            return self.opaque(node, "PReLU width")
        if isinstance(module, _PASSTHROUGH_MODULES):
            return labels_in
        return self.opaque(node, f"module {type(module).__name__}")

    def _convolution(self, node: torch.fx.Node, name: str, module: nn.Module, labels_in: list[Label]) -> Any:
        if module.in_channels != len(labels_in):
            return self.opaque(node, f"{type(module).__name__} input width")
        if name in self.module_calls:  # shared weights: every call must see the same channels
            first_in, first_out = self.module_calls[name]
            self.join(first_in, labels_in, f"second call of {name}")
            return first_out
        groups = module.groups
        if groups == 1:
            self.slots.append(ChannelSlot(name, "in", tuple(labels_in)))
            out = self.new_space(module.out_channels, producer=name)
            self.slots.append(ChannelSlot(name, "out", tuple(out)))
        elif isinstance(module, _CONV) and groups == module.in_channels == module.out_channels:
            self.slots.append(ChannelSlot(name, "depthwise", tuple(labels_in)))
            out = labels_in
        else:
            reason = f"grouped convolution {name} (groups={groups})"
            self.fix(labels_in, reason, warn=True)
            out = self.new_space(module.out_channels, producer=name, fixed=reason, warn=True)
        self.module_calls[name] = (labels_in, out)
        return out

    def _call_function(self, node: torch.fx.Node) -> Any:
        target = node.target
        meta = _tensor_meta(node)
        tensor_args = [a for a in list(node.args) + list(node.kwargs.values()) if isinstance(a, torch.fx.Node)]
        if node.op == "call_function" and target is operator.getitem:
            source = self.labels_of(node.args[0])
            if isinstance(source, list) and not _is_label_list(source) and isinstance(node.args[1], int):
                return source[node.args[1]]
        if meta is None or (_channels_of(meta) is None and not isinstance(meta, (list, tuple))):
            # no channel axis in the result (shapes, sizes, scalars): nothing flows on
            if any(self.labels_of(a) is not None for a in tensor_args) and not (
                (node.op == "call_function" and target in (getattr, operator.getitem))
                or (node.op == "call_method" and target in ("size", "dim"))
            ):
                return self.opaque(node, f"operation '{_op_name(node)}'")
            return None
        is_fn = node.op == "call_function"
        if is_fn and target is getattr and node.args[1] == "data":
            return self._input_labels(node)
        if (is_fn and target in _PASSTHROUGH_FUNCTIONS) or (not is_fn and target in _PASSTHROUGH_METHODS):
            labels_in = self._input_labels(node)
            return labels_in if labels_in is not None else self.opaque(node, f"operation '{_op_name(node)}'")
        if (is_fn and target is F.pad) or (not is_fn and target == "pad"):
            pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
            if isinstance(pad, (list, tuple)) and len(pad) <= 2 * (len(meta.shape) - 2):
                return self._input_labels(node)
            return self.opaque(node, "padding of the channel axis")
        if (is_fn and target in _BINARY_FUNCTIONS) or (not is_fn and target in _BINARY_METHODS):
            return self._binary(node)
        if is_fn and target in _CAT_FUNCTIONS:
            return self._cat(node)
        return self.opaque(node, f"operation '{_op_name(node)}'")

    def _binary(self, node: torch.fx.Node) -> Any:
        operands = list(node.args[:2]) + [v for k, v in node.kwargs.items() if k == "other"]
        ndim = len(node.meta["tensor_meta"].shape)
        labelled = []
        for arg in operands:
            meta = _tensor_meta(arg)
            if isinstance(meta, TensorMetadata):
                if len(meta.shape) != ndim:
                    return self.opaque(node, f"broadcast in '{_op_name(node)}'")
                labelled.append(self.labels_of(arg))
        if any(lab is None for lab in labelled):
            return self.opaque(node, f"operation '{_op_name(node)}'")
        if len(labelled) == 1:
            return labelled[0]
        a, b = labelled
        if len(a) == len(b):
            self.join(a, b, f"'{_op_name(node)}' in {_module_path(node)}")
            return a
        wide, narrow = (a, b) if len(b) == 1 else (b, a)
        if len(narrow) == 1:  # a one-channel gate broadcast over all channels (attention)
            self.fix(narrow, "broadcast over channels", warn=False)
            return wide
        return self.opaque(node, f"operation '{_op_name(node)}'")

    def _cat(self, node: torch.fx.Node) -> Any:
        tensors = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        ndim = len(node.meta["tensor_meta"].shape)
        parts = [self.labels_of(t) for t in tensors]
        if not all(_is_label_list(p) for p in parts):
            return self.opaque(node, "concatenation")
        if dim % ndim == 1:
            return [label for part in parts for label in part]
        for other in parts[1:]:
            self.join(parts[0], other, f"concatenation along dim {dim} in {_module_path(node)}")
        return parts[0]


class ChannelGraph:
    """The channel groups of a network, and the slots that cutting a group touches."""

    def __init__(self, flow: _ChannelFlow, module_names: Sequence[str]) -> None:
        self._flow = flow
        find = flow.spaces.find
        self.slots: list[ChannelSlot] = [
            ChannelSlot(s.module, s.role, tuple((find(sp), i) for sp, i in s.labels)) for s in flow.slots
        ]
        roots: dict[int, ChannelGroup] = {}
        for space, producer in enumerate(flow.space_producer):
            if producer is None:
                continue
            root = find(space)
            if root not in roots:
                roots[root] = ChannelGroup(name=producer, size=flow.space_size[space], root=root)
            if producer not in roots[root].producers:
                roots[root].producers.append(producer)
        self._warn: set[str] = set()  # groups made unprunable by something not understood
        for space, (reason, warn) in sorted(flow.fixed.items(), key=lambda item: item[1][1]):
            group = roots.get(find(space))
            if group is not None and group.prunable:
                group.prunable, group.reason = False, reason
                if warn:
                    self._warn.add(group.name)
        self._apply_groupnorm_units(roots)
        for slot in self.slots:
            for root in {lab[0] for lab in slot.labels}:
                group = roots.get(root)
                if group is None:
                    continue
                bucket = {"in": group.consumers, "out": None}.get(slot.role, group.followers)
                if bucket is not None and slot.module not in bucket:
                    bucket.append(slot.module)
        order = {name: k for k, name in enumerate(module_names)}
        self.groups: dict[str, ChannelGroup] = {
            g.name: g for g in sorted(roots.values(), key=lambda g: order.get(g.name, len(order)))
        }
        # one warning per cause: a grouped convolution blocks both its input and its output group
        blocked: dict[str, list[ChannelGroup]] = {}
        for group in self.groups.values():
            if group.name in self._warn:
                blocked.setdefault(str(group.reason), []).append(group)
        for reason, groups in blocked.items():
            which = ", ".join(f"'{g.name}' ({g.size} channels)" for g in groups)
            warnings.warn(
                f"channel group{'s' if len(groups) > 1 else ''} {which} will not be pruned: {reason}",
                UnprunableChannelsWarning,
                stacklevel=3,
            )

    def _apply_groupnorm_units(self, roots: dict[int, ChannelGroup]) -> None:
        find = self._flow.spaces.find
        for name, labels, block in self._flow.groupnorm_blocks:
            resolved = [(find(sp), i) for sp, i in labels]
            ok = True
            for start in range(0, len(resolved), block):
                chunk = resolved[start : start + block]
                root, first = chunk[0]
                ok &= first % block == 0 and all(r == root and i == first + k for k, (r, i) in enumerate(chunk))
            for root in {r for r, _ in resolved}:
                group = roots.get(root)
                if group is None:
                    continue
                if not ok:
                    if group.prunable:
                        group.prunable, group.reason = False, f"GroupNorm {name} mixes channels of several groups"
                        self._warn.add(group.name)
                    continue
                group.unit = math.lcm(group.unit, block)
                if group.unit >= group.size and group.prunable:
                    group.prunable, group.reason = False, f"GroupNorm {name} normalises all channels together"

    @property
    def prunable_groups(self) -> dict[str, ChannelGroup]:
        return {name: g for name, g in self.groups.items() if g.prunable}

    def widths(self) -> dict[str, int]:
        """Number of channels of every group, by group name."""
        return {name: g.size for name, g in self.groups.items()}

    def consumer_taps(self) -> dict[str, list[tuple[str, list[int]]]]:
        """Where each group's channels enter their consumers: ``{group: [(module, positions), ...]}``.

        ``positions[i]`` is the position of group channel ``i`` along dim 1 of that module's input.  The sum over
        consumers of activation x gradient at these positions is the first-order effect of removing the channel
        (the masking oracle), and the first entry is a good place to observe the group's feature maps.
        """
        taps: dict[str, list[tuple[str, list[int]]]] = {}
        for name, group in self.groups.items():
            for slot in self.slots:
                if slot.role != "in":
                    continue
                first: dict[int, int] = {}
                for position, (root, index) in enumerate(slot.labels):
                    if root == group.root and index not in first:
                        first[index] = position
                if len(first) == group.size:
                    taps.setdefault(name, []).append((slot.module, [first[i] for i in range(group.size)]))
        return taps

    def positions_to_remove(self, removals: dict[str, Sequence[int]]) -> dict[tuple[str, str], list[int]]:
        """For each ``(module, role)`` slot, the positions along its channel dimension that the removals delete."""
        removed: set[Label] = set()
        for name, channels in removals.items():
            root = self.groups[name].root
            removed.update((root, int(c)) for c in channels)
        result: dict[tuple[str, str], list[int]] = {}
        for slot in self.slots:
            positions = [p for p, label in enumerate(slot.labels) if label in removed]
            if positions:
                result.setdefault((slot.module, slot.role), [])
                result[(slot.module, slot.role)] = sorted(set(result[(slot.module, slot.role)]) | set(positions))
        return result


def trace_channel_groups(network: nn.Module, example_shape: Sequence[int]) -> ChannelGraph:
    """Trace ``network`` on an input of ``example_shape`` and return its channel groups.

    The network is traced in training mode (so deep-supervision heads are included) and left unchanged.

    Raises:
        TraceError: the network cannot be traced or its traced graph does not match its eager output.
    """
    graph_module = capture_graph(network, example_shape, train=True)
    flow = _ChannelFlow(graph_module)
    flow.run()
    return ChannelGraph(flow, [name for name, _ in network.named_modules()])
