"""Torch-Pruning (Fang et al., "DepGraph", CVPR 2023; ``pip install -e ".[benchmark]"``) as the peer of our TaylorFO
handler in the benchmark: an Ignite handler that prunes the trainer's network with Torch-Pruning's own pruner and
importance, so that the peer trains, validates, checkpoints and is evaluated by exactly the same bundle configuration
as our method (``benchmarks/prune_torch_pruning.json`` is the overlay).

At the end of each of the first ``steps`` epochs it takes Torch-Pruning's pruning steps until the network's MACs (one
sample of ``example_shape``, eval mode) are at most the epoch's target, which goes linearly from the starting MACs to
``target_macs``; the remaining epochs fine-tune. The starting MACs are those of the network the first step saw:
they go into ``state_dict()`` (the overlay names the handler in the bundle's ``pruning_state``), so a run resumed
with ``--resume`` keeps the same linear schedule instead of starting it again from its already pruned network.
Torch-Pruning's pruner itself is rebuilt on the resumed network, so after a resume its ``max_pruning_ratio`` counts
from the resumed widths. ``importance="taylor"`` is Torch-Pruning's ``GroupTaylorImportance``
(|weight x gradient| summed over each dependency group, gradients of the training loss accumulated over
``score_batches`` training batches right before the step); ``"l1"`` is ``GroupMagnitudeImportance`` with p=1. The
benchmark ranks Taylor channels globally, as our TaylorFO does, and L1 channels per layer (every layer loses the same
fraction, as in Li et al., "Pruning Filters for Efficient ConvNets"): filter L1 norms are not comparable across layers
(they grow with a layer's fan-in, and behind an affine-free InstanceNorm a filter's scale does not change its output).
The groups our channel engine cannot prune (the output heads) are Torch-Pruning's ignored layers, and no group is cut
below our engine's floor (``min_channels``, 2 as in our handlers; Torch-Pruning's own floor is 1 channel), so both
methods choose from the same channels.

Around Torch-Pruning's surgery the handler does what our engine does after a cut, so that the two methods differ in
their criterion and nothing else: the optimizer keeps its state for the channels kept (AdamW's moments and step
count, sliced like the weights; Torch-Pruning replaces each pruned parameter by a new tensor and slices nothing but
the weight and its ``.grad``, so the handler routes each parameter's element positions through ``.grad`` to learn
which elements survived), the affine-free InstanceNorm layers that Torch-Pruning does not see get their
``num_features`` set to the width they now receive (else the pruning record saved with the model names the old
width), and the Taylor gradients are taken with BatchNorm in eval mode and the training data stream left as it was
(as our TaylorFO scores). ``docs/taylorfo.md`` ("Peers") says what was measured before and after.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers.pruning_base import preserved_rng
from monai_pruning.handlers.taylorfo_scoring import batch_norms_in_eval
from monai_pruning.measure import count_macs

__all__ = ["FlooredImportance", "TorchPruningPeer", "element_positions", "leaves_at_least",
           "match_instance_norm_widths", "prune_keeping_optimizer_state"]

IMPORTANCES = ("taylor", "l1")
_EXACT_POSITIONS = 2**24  # element positions carried through ``.grad`` must be exact in float32


def element_positions(name: str, param: torch.Tensor) -> torch.Tensor:
    """
    The position of every element of ``param``, shaped like it: set as its ``.grad`` before a Torch-Pruning cut, what
    remains afterwards names the elements kept (Torch-Pruning slices ``.grad`` with the weight).

    Raises:
        ValueError: ``param`` is not float32/float64 or has 2**24 elements or more (positions would not be exact).
    """
    if param.dtype not in (torch.float32, torch.float64) or param.numel() >= _EXACT_POSITIONS:
        raise ValueError(f"TorchPruningPeer: cannot follow the elements of parameter {name!r} "
                         f"({param.dtype}, {param.numel()} elements) through a cut.")
    return torch.arange(param.numel(), dtype=param.dtype, device=param.device).view_as(param)


def prune_keeping_optimizer_state(network: torch.nn.Module, prune: Callable[[], None],
                                  optimizer: torch.optim.Optimizer | None) -> None:
    """
    Run ``prune()`` (a Torch-Pruning group's ``prune``), then re-point ``optimizer`` at the new parameters with its
    per-parameter state sliced to the elements kept, and give the new parameters their old gradients, sliced alike.

    Torch-Pruning slices each pruned parameter's ``.grad`` with the same indices as the weight, so each ``.grad`` is
    set to the position of every element beforehand and read back afterwards: the positions that remain are the
    elements kept, whatever dimensions were cut. Parameters are matched by name; state tensors shaped like their
    parameter (Adam's moments, SGD's momentum) are sliced, others (Adam's step count) are kept as they are.

    Raises:
        ValueError: a parameter is not float32/float64 or has 2**24 elements or more (positions would not be exact),
            or a pruned parameter came back without its gradient (a pruning function that does not slice ``.grad``).
    """
    before = dict(network.named_parameters())
    saved = {}
    for name, param in before.items():
        positions = element_positions(name, param)
        saved[name] = param.grad
        param.grad = positions
    prune()
    replaced = {}
    for name, param in network.named_parameters():
        old = before[name]
        if param is old:
            param.grad = saved[name]
            continue
        if param.grad is None:
            raise ValueError(f"TorchPruningPeer: parameter {name!r} was pruned without its gradient.")
        kept = param.grad.detach().flatten().long()
        grad = saved[name]
        param.grad = None if grad is None else grad.flatten()[kept].view_as(param)
        replaced[old] = param
        if optimizer is not None and old in optimizer.state:
            state = optimizer.state.pop(old)
            optimizer.state[param] = {
                key: value.flatten()[kept].view_as(param)
                if isinstance(value, torch.Tensor) and value.shape == old.shape else value
                for key, value in state.items()
            }
    if optimizer is not None:
        for group in optimizer.param_groups:
            group["params"] = [replaced.get(p, p) for p in group["params"]]


@torch.no_grad()
def match_instance_norm_widths(network: torch.nn.Module, example: torch.Tensor) -> None:
    """Set ``num_features`` of every InstanceNorm to the channels it receives in a forward pass of ``example``."""

    def fit(norm: torch.nn.Module, args: tuple) -> None:
        width = int(args[0].shape[1])
        if norm.affine and norm.weight.shape[0] != width:
            raise ValueError(f"TorchPruningPeer: an affine InstanceNorm has {norm.weight.shape[0]} weights but "
                             f"receives {width} channels.")
        norm.num_features = width

    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.instancenorm._InstanceNorm)]
    hooks = [norm.register_forward_pre_hook(fit) for norm in norms]
    training = network.training
    try:
        network.eval()
        network(example)
    finally:
        network.train(training)
        for hook in hooks:
            hook.remove()


class FlooredImportance:
    """
    A Torch-Pruning importance whose ``min_channels`` highest-scored channels of every group score +inf, so
    Torch-Pruning ranks them last and takes channels elsewhere rather than cut a group below our engine's floor.
    """

    def __init__(self, importance: Callable[..., torch.Tensor | None], min_channels: int) -> None:
        self.importance = importance
        self.min_channels = int(min_channels)

    def __call__(self, group: Any, **kwargs: Any) -> torch.Tensor | None:
        scores = self.importance(group, **kwargs)
        if scores is None:
            return None
        scores = scores.clone()
        scores[torch.topk(scores, min(self.min_channels, scores.numel())).indices] = float("inf")
        return scores


def leaves_at_least(group: Any, graph: Any, min_channels: int) -> bool:
    """Whether a Torch-Pruning group, once pruned, leaves every layer whose output channels it cuts ``min_channels``."""
    for dep, indices in group:
        if graph.is_out_channel_pruning_fn(dep.handler):
            width = graph.get_out_channels(dep.target.module)
            if width is not None and width - len(indices) < min_channels:
                return False
    return True


class TorchPruningPeer:
    """
    Torch-Pruning's channel pruning of the trainer's network, spread over the first ``steps`` epochs.

    Args:
        importance: ``"taylor"`` (weight x gradient) or ``"l1"`` (filter magnitude).
        target_macs: MACs (one sample of ``example_shape``) to reach at the end of epoch ``steps``.
        steps: number of epochs over which the MACs go down linearly.
        example_shape: input shape (batch included) of the bundle's training patches.
        score_batches: training batches whose loss gradients feed the Taylor importance (None: the whole loader).
        max_pruning_ratio: the largest fraction of any one layer's channels Torch-Pruning may remove.
        min_channels: the fewest channels a group keeps (our handlers' ``min_channels``).
        granularity: Torch-Pruning's ``iterative_steps``: the pruning ratio grows by ``1 / granularity`` per call.
        global_pruning: rank channels across the whole network (True) or remove the same fraction of every layer.

    Example (overlay ``benchmarks/prune_torch_pruning.json``)::

        {"_target_": "torch_pruning_peer.TorchPruningPeer", "importance": "l1", "target_macs": 190000000,
         "steps": 12, "example_shape": "@example_shape"}
    """

    def __init__(
        self,
        importance: str,
        target_macs: int,
        steps: int,
        example_shape: Sequence[int],
        score_batches: int | None = None,
        max_pruning_ratio: float = 0.9,
        min_channels: int = 2,
        granularity: int = 400,
        global_pruning: bool = True,
    ) -> None:
        if importance not in IMPORTANCES:
            raise ValueError(f"TorchPruningPeer: `importance` must be one of {IMPORTANCES}, got {importance!r}.")
        if int(target_macs) <= 0 or int(steps) < 1:
            raise ValueError(f"TorchPruningPeer: need target_macs > 0 and steps >= 1, got {target_macs}, {steps}.")
        self.importance = importance
        self.target_macs = int(target_macs)
        self.steps = int(steps)
        self.example_shape = tuple(int(s) for s in example_shape)
        self.score_batches = score_batches
        self.max_pruning_ratio = float(max_pruning_ratio)
        if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
            raise ValueError(f"TorchPruningPeer: `min_channels` must be an int >= 1, got {min_channels!r}.")
        self.min_channels = min_channels
        self.granularity = int(granularity)
        self.global_pruning = bool(global_pruning)
        self.pruner = None
        self.start_macs: int | None = None
        self.exhausted = False

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _macs(self, network: torch.nn.Module) -> int:
        training = network.training
        network.eval()
        try:
            return count_macs(network, (1, *self.example_shape[1:]))
        finally:
            network.train(training)

    def _build(self, engine: Engine) -> None:
        import torch_pruning as tp

        network = engine.network
        if self.start_macs is None:
            self.start_macs = self._macs(network)
        modules = dict(network.named_modules())
        graph = ChannelPruner(network, self.example_shape).graph
        ignored = [modules[p] for g in graph.groups.values() if not g.prunable for p in g.producers]
        if self.importance == "taylor":
            importance = tp.importance.GroupTaylorImportance()
        else:
            importance = tp.importance.GroupMagnitudeImportance(p=1)
        network.train()
        example = torch.zeros(self.example_shape, device=next(network.parameters()).device)
        self.pruner = tp.pruner.MetaPruner(
            network,
            example,
            importance=FlooredImportance(importance, self.min_channels),
            global_pruning=self.global_pruning,
            pruning_ratio=1.0,
            max_pruning_ratio=self.max_pruning_ratio,
            iterative_steps=self.granularity,
            ignored_layers=ignored,
        )

    def state_dict(self) -> dict[str, Any]:
        """The schedule's anchor as plain data (``torch.load(weights_only=True)`` reads it back)."""
        return {"start_macs": self.start_macs, "exhausted": self.exhausted}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        start = state_dict.get("start_macs")
        self.start_macs = None if start is None else int(start)
        self.exhausted = bool(state_dict.get("exhausted", False))

    def _accumulate_gradients(self, engine: Engine) -> None:
        network = engine.network
        network.zero_grad(set_to_none=True)
        loader = engine.state.dataloader
        # as our TaylorFO scores: BatchNorm statistics untouched, and the training data stream as if this had not run
        with preserved_rng(network, data=loader), batch_norms_in_eval(network):
            batches = itertools.islice(loader, self.score_batches) if self.score_batches else loader
            for batch in batches:
                prepared = engine.prepare_batch(batch, engine.state.device, engine.non_blocking, **engine.to_kwargs)
                inputs, targets, args, kwargs = prepared if len(prepared) == 4 else (*prepared, (), {})
                loss = engine.loss_function(engine.inferer(inputs, network, *args, **kwargs), targets)
                loss.backward()

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        if epoch > self.steps or self.exhausted:
            return
        if self.pruner is None:
            self._build(engine)
        network = engine.network
        device = next(network.parameters()).device
        target = self.start_macs - (self.start_macs - self.target_macs) * epoch / self.steps
        if self.importance == "taylor":
            self._accumulate_gradients(engine)
        while self._macs(network) > target:
            if self.pruner.current_step >= self.pruner.iterative_steps:
                self.exhausted = True
                engine.logger.warning("TorchPruningPeer: Torch-Pruning's schedule is exhausted before the target.")
                break
            for group in self.pruner.step(interactive=True):
                if leaves_at_least(group, self.pruner.DG, self.min_channels):
                    prune_keeping_optimizer_state(network, group.prune, engine.optimizer)
            match_instance_norm_widths(network, torch.zeros((1, *self.example_shape[1:]), device=device))
        network.zero_grad(set_to_none=True)
        engine.logger.info(
            f"TorchPruningPeer ({self.importance}) epoch {epoch}: MACs {self._macs(network):,} "
            f"(target {int(target):,}, start {self.start_macs:,})"
        )
