"""
Where the pruning handlers look at a channel group: forward pre-hooks on the modules that consume its channels.

A group's channels are observed where they *enter* their consumers (``ChannelGraph.consumer_taps()``), not where
they are produced: that tensor is what a cut removes (post-normalisation, post-activation, after any concatenation),
so activation x gradient there, summed over all consumers, is exactly the first-order effect of removing a channel.

Hooks capture nothing unless :attr:`FeatureTaps.enabled` is set: the evaluator shares the network object, and its
forward passes must neither be recorded nor keep tensors alive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from monai_pruning.criteria import taylor_channel_contributions

__all__ = ["FeatureTaps", "TapError"]

Taps = Mapping[str, Sequence[tuple[str, Sequence[int]]]]


class TapError(ValueError):
    """The taps do not fit the network (a consumer module that does not exist, bad positions)."""


class _GradSlot:
    """Receives the gradient of one tapped tensor from its autograd hook.

    The hook must not reference the tensor it is registered on: the hook lives on the tensor's ``grad_fn``, in C++,
    where Python's garbage collector cannot see a cycle back to the tensor, so every captured forward pass (its
    feature maps and autograd graph) would stay in memory for good.
    """

    __slots__ = ("grad",)

    def __init__(self) -> None:
        self.grad: torch.Tensor | None = None

    def __call__(self, grad: torch.Tensor) -> None:
        self.grad = grad


class _Call:
    """One call of a consumer module during a captured forward pass: its input and, later, that input's gradient."""

    __slots__ = ("inputs", "slot")

    def __init__(self, inputs: torch.Tensor, slot: _GradSlot | None = None) -> None:
        self.inputs = inputs
        self.slot = slot

    @property
    def grad(self) -> torch.Tensor | None:
        return None if self.slot is None else self.slot.grad


def _select(tensor: torch.Tensor, positions: torch.Tensor, span: tuple[int, int] | None) -> torch.Tensor:
    """The group's channels of a consumer input: a view when they are one contiguous run, else a gathered copy."""
    if span is not None:
        start, length = span
        if start == 0 and length == tensor.shape[1]:
            return tensor
        return tensor.narrow(1, start, length)
    return tensor.index_select(1, positions.to(tensor.device))


class FeatureTaps:
    """
    Captures, per channel group, the feature maps ``(B, C_group, *spatial)`` at the inputs of its consumer modules
    and, optionally, their gradients.

    Args:
        network: the network the consumer modules belong to (module names as in ``named_modules()``).
        taps: ``{group: [(consumer module, positions), ...]}`` from ``ChannelPruner.graph.consumer_taps()``;
            ``positions[i]`` is where group channel ``i`` sits along dim 1 of that consumer's input.
        first_only: observe only the first consumer of each group (enough to see the group's feature maps; fewer
            hooks), instead of all of them (needed for first-order scores).
        gradients: also capture the gradient reaching each tapped input. Each consumer then receives an alias of
            its input, so the gradient captured is the one flowing back through *that* consumer only, even when one
            tensor feeds several consumers.
        on_capture: called during the forward pass as ``on_capture(group, tensor, (start, length))`` each time a
            group's first consumer is first called, with what :meth:`feature_sources` would give for it. Work done
            there reads the maps just after the producing layer wrote them (on a CPU, usually still in the cache).

    Example::

        taps = FeatureTaps(net, pruner.graph.consumer_taps(), gradients=True)
        taps.enabled = True
        out = net(x)
        taps.enabled = False
        torch.autograd.grad(out, taps.tapped_tensors(), grad_outputs=torch.ones_like(out), allow_unused=True)
        z = taps.contributions()        # {group: (B, C_group) sum over space and consumers of a * dL/da}
        taps.clear()
    """

    def __init__(
        self,
        network: nn.Module,
        taps: Taps,
        first_only: bool = False,
        gradients: bool = False,
        on_capture: Callable[[str, torch.Tensor, tuple[int, int]], None] | None = None,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise TypeError(f"FeatureTaps: `network` must be a torch.nn.Module, got {type(network).__name__}.")
        if on_capture is not None and not callable(on_capture):
            raise TypeError(f"FeatureTaps: `on_capture` must be callable or None, got {type(on_capture).__name__}.")
        self.network = network
        self.first_only = bool(first_only)
        self.gradients = bool(gradients)
        self.on_capture = on_capture
        self.enabled = False
        self._handles: list[Any] = []
        self._taps: dict[str, list[tuple[str, torch.Tensor, tuple[int, int] | None]]] = {}
        self._calls: dict[str, list[_Call]] = {}
        self.set_taps(taps)

    # --- registration -------------------------------------------------------------------------------------------
    @property
    def groups(self) -> list[str]:
        """Names of the observed groups, in the order of the taps given."""
        return list(self._taps)

    def set_taps(self, taps: Taps) -> None:
        """Replace the taps (after a cut the positions change) and re-register the hooks."""
        if not isinstance(taps, Mapping):
            raise TypeError(f"FeatureTaps: `taps` must be a dict of group -> [(module, positions)], got {type(taps)}.")
        modules = dict(self.network.named_modules())
        parsed: dict[str, list[tuple[str, torch.Tensor, tuple[int, int] | None]]] = {}
        for group, entries in taps.items():
            entries = list(entries)[:1] if self.first_only else list(entries)
            parsed[group] = []
            for module_name, positions in entries:
                if module_name not in modules:
                    raise TapError(f"FeatureTaps: group {group!r} taps module {module_name!r}, not in the network.")
                pos = [int(p) for p in positions]
                if not pos or min(pos) < 0:
                    raise TapError(f"FeatureTaps: group {group!r} has bad positions {pos} at {module_name!r}.")
                contiguous = pos == list(range(pos[0], pos[0] + len(pos)))
                span = (pos[0], len(pos)) if contiguous else None
                parsed[group].append((module_name, torch.tensor(pos, dtype=torch.long), span))
        self.remove()
        self._taps = parsed
        self._first_consumer_groups: dict[str, list[str]] = {}
        for group, entries in parsed.items():
            if entries:
                self._first_consumer_groups.setdefault(entries[0][0], []).append(group)
        for module_name in dict.fromkeys(name for entries in parsed.values() for name, _, _ in entries):
            handle = modules[module_name].register_forward_pre_hook(self._make_hook(module_name))
            self._handles.append(handle)

    def remove(self) -> None:
        """Remove every hook and drop all captured tensors."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.clear()

    def clear(self) -> None:
        """Drop the captured tensors (and, with them, the autograd graph they keep alive)."""
        self._calls = {}

    def _make_hook(self, module_name: str):
        def hook(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            if not self.enabled or not args or not isinstance(args[0], torch.Tensor) or args[0].ndim < 3:
                return None
            inputs = args[0]
            if self.first_only and self._calls.get(module_name):
                return None  # a module called twice: its first call is enough to see the group
            first_call = not self._calls.get(module_name)
            replaced = None
            if self.gradients and torch.is_grad_enabled() and inputs.requires_grad:
                alias, slot = inputs.view_as(inputs), _GradSlot()
                alias.register_hook(slot)
                self._calls.setdefault(module_name, []).append(_Call(alias, slot))
                replaced = (alias, *args[1:])
            else:
                self._calls.setdefault(module_name, []).append(_Call(inputs))
            if self.on_capture is not None and first_call:
                for group in self._first_consumer_groups.get(module_name, ()):
                    self.on_capture(group, *self._source(group))
            return replaced

        return hook

    # --- captured data ------------------------------------------------------------------------------------------
    def features(self) -> dict[str, torch.Tensor]:
        """
        Per group, its feature maps ``(B, C_group, *spatial)`` at its first consumer during the last captured pass.

        Still attached to the autograd graph, so a loss term built on them trains the network. Groups whose first
        consumer did not run are missing.
        """
        return {group: tensor.narrow(1, *run) for group, (tensor, run) in self.feature_sources().items()}

    def feature_sources(self) -> dict[str, tuple[torch.Tensor, tuple[int, int]]]:
        """
        Per group, ``(tensor, (start, length))``: the whole input of its first consumer during the last captured
        pass and where the group's channels lie along its dim 1 (a gathered copy and ``(0, C_group)`` when they are
        not one contiguous run).

        :meth:`features` narrowed for the caller; a loss term that selects the run itself (e.g.
        :func:`~monai_pruning.criteria.delta_opt_penalty` with ``channels``) spares autograd the backward of that
        narrow, a zero-filled copy of the whole input when the group is one part of a concatenation.
        """
        captured = [group for group, entries in self._taps.items() if entries and self._calls.get(entries[0][0])]
        return {group: self._source(group) for group in captured}

    def _source(self, group: str) -> tuple[torch.Tensor, tuple[int, int]]:
        module_name, positions, span = self._taps[group][0]
        inputs = self._calls[module_name][0].inputs
        if span is None:
            return _select(inputs, positions, None), (0, len(positions))
        return inputs, span

    def tapped_tensors(self) -> list[torch.Tensor]:
        """The consumer inputs whose gradients are captured: the ``inputs`` to give ``torch.autograd.grad``."""
        return [call.inputs for calls in self._calls.values() for call in calls if call.inputs.requires_grad]

    def contributions(self) -> dict[str, torch.Tensor]:
        """
        Per group, ``z[b, c]``: activation x gradient summed over space and over every consumer (and every call).

        That is the derivative of the loss with respect to a gate multiplying the channel wherever it is consumed,
        in loss units; groups without any captured gradient are missing. Needs ``gradients=True``.
        """
        if not self.gradients:
            raise RuntimeError("FeatureTaps.contributions: these taps were built with gradients=False.")
        result: dict[str, torch.Tensor] = {}
        for group, entries in self._taps.items():
            total: torch.Tensor | None = None
            for module_name, positions, span in entries:
                for call in self._calls.get(module_name, []):
                    if call.grad is None:
                        continue
                    z = taylor_channel_contributions(
                        _select(call.inputs.detach(), positions, span), _select(call.grad, positions, span)
                    )
                    total = z if total is None else total + z
            if total is not None:
                result[group] = total
        return result

    def __len__(self) -> int:
        return len(self._taps)

    def __repr__(self) -> str:
        mode = "first consumer" if self.first_only else "all consumers"
        return f"FeatureTaps({len(self._taps)} groups, {mode}, gradients={self.gradients}, {len(self._handles)} hooks)"
