"""Fresh initial weights for a (pruned) network when training starts: the "pruned architecture from scratch" control."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_pruning.distributed import unwrap_network

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["ReinitialiseNetwork", "reinitialise"]


def reinitialise(network: torch.nn.Module, seed: int) -> int:
    """
    Call ``reset_parameters()`` of every module that has one (convolutions, norms, PReLU, linear layers), under a
    generator seeded with ``seed``, so each layer is drawn from its default initialisation at its *current* width
    (the fan-in of a pruned convolution is smaller than the unpruned one's). Returns the number of modules reset.
    """
    count = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in unwrap_network(network).modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                count += 1
    return count


class ReinitialiseNetwork:
    """
    Re-initialises the trainer's network when the run starts, keeping its architecture.

    With a ``CheckpointLoader`` that loads only a pruned checkpoint's record (``{"pruning": @pruning_record}``), the
    network takes the pruned widths; this handler then discards every weight, so the run trains the pruned
    architecture from scratch (Liu et al., "Rethinking the value of network pruning", ICLR 2019): the control that
    tells whether a pruning method found good weights or only a good shape. Attach it after that loader. A resumed
    run is unaffected: the resume loader is attached after the trainer's handlers and loads the saved weights over
    these.

    Example (overlay on ``train.json``)::

        "pruning_handlers": [
            {"_target_": "CheckpointLoader", "load_path": "/runs/sauron/models/model.pt",
             "load_dict": {"pruning": "@pruning_record"}, "map_location": "@device"},
            {"_target_": "monai_pruning.handlers.ReinitialiseNetwork", "seed": "@seed"}
        ]

    Args:
        seed: seed of the fresh weights.
        name: logger name; None uses the engine's logger.
    """

    def __init__(self, seed: int = 0, name: str | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"ReinitialiseNetwork: seed must be an int, got {seed!r}.")
        self.seed = seed
        self.name = name

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        reset = reinitialise(engine.network, self.seed)
        logger = engine.logger if self.name is None else logging.getLogger(self.name)
        logger.info("ReinitialiseNetwork: fresh weights for %d layers (seed %d), architecture kept", reset, self.seed)
