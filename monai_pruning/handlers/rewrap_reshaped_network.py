"""Keeps a DistributedDataParallel trainer in sync after a checkpoint loader reshaped its network."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_pruning.distributed import rewrap, sum_over_ranks, wrapper_is_stale

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["RewrapReshapedNetwork", "rewrap_engine_network"]


def rewrap_engine_network(engine: Engine, validator: Engine | None = None) -> None:
    """
    Give ``engine`` a new ``DistributedDataParallel`` around its reshaped network (collective: every rank calls it),
    and point ``validator`` at it too where it shared the old one. No-op for an engine without a wrapper.
    """
    wrapper = engine.network
    if not isinstance(wrapper, nn.parallel.DistributedDataParallel):
        return
    engine.network = rewrap(wrapper)
    if validator is not None and getattr(validator, "network", None) is wrapper:
        validator.network = engine.network


class RewrapReshapedNetwork:
    """
    Gives the trainer a new ``DistributedDataParallel`` when its network was reshaped behind the wrapper's back.

    Loading a pruned checkpoint into an unpruned network (``PruningRecord`` in a ``CheckpointLoader``, e.g. when a
    run resumes) replaces the parameters of every cut layer. The pruning handlers rewrap the network after their own
    cuts, but plain training has no pruning handler, and a wrapper built around the old parameters never all-reduces
    the gradients of the new ones: DDP stops at the second iteration with its "Expected to have finished reduction"
    error about unused parameters, which points nowhere near the cause. This handler checks once, when the trainer
    starts, and rewraps with the same settings if any rank's wrapper is stale. A validator sharing the trainer's
    wrapper gets the new one too. Without a wrapper, or with a current one, it does nothing.

    Attach it *after* the ``CheckpointLoader`` (Ignite calls the handlers of an event in the order they were
    attached). Example (``run`` section of a multi-GPU config)::

        "$@resume_loader.attach(@train#trainer) if monai_pruning.config_values.read_flag(@resume, 'resume') else None",
        "$monai_pruning.handlers.RewrapReshapedNetwork().attach(@train#trainer)",
        "$@train#trainer.run()"

    Args:
        validator: an evaluator that may share the trainer's wrapper; it is pointed at the new one.
        event: when to check; ``Events.STARTED`` follows a resume loader, which loads at that event.
    """

    def __init__(self, validator: Engine | None = None, event: str | Events = Events.STARTED) -> None:
        self.validator = validator
        self.event = Events[event.upper()] if isinstance(event, str) else event

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(self.event, self)

    def __call__(self, engine: Engine) -> None:
        wrapper = engine.network
        if not isinstance(wrapper, nn.parallel.DistributedDataParallel):
            return
        # rewrapping is collective: every rank rewraps when one of them has to
        stale_ranks = sum_over_ranks(torch.tensor([float(wrapper_is_stale(wrapper))]))
        if stale_ranks.item() > 0:
            rewrap_engine_network(engine, self.validator)
