"""MONAI's ``CheckpointLoader`` for ``--resume``, where some saved objects are optional."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import CheckpointLoader
from monai.utils import IgniteInfo, min_version, optional_import

if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["ResumeCheckpointLoader"]


class ResumeCheckpointLoader(CheckpointLoader):
    """
    ``monai.handlers.CheckpointLoader`` that starts the objects named in ``optional`` afresh, with one log line,
    when the checkpoint does not hold them; every other object must be there, as with the stock loader.

    A run may resume a checkpoint written by another configuration: plain ``train.json`` continuing a pruning
    overlay's run, whose best checkpoint was the pruning handler's own, so it saved no record of the validation
    saver's best score. That record is then started empty (the next validation sets it), instead of the stock
    loader's "Object labeled by 'best_saver' ... not found" stopping the run.

    Example (``train.json``)::

        "resume_loader": {"_target_": "monai_pruning.handlers.ResumeCheckpointLoader", "load_path": "...",
                          "load_dict": "@resume_objects", "optional": ["best_saver"], "map_location": "@device"}

    Args:
        optional: names in ``load_dict`` a checkpoint may lack.
        args, kwargs: as ``CheckpointLoader``.
    """

    def __init__(self, *args: Any, optional: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if isinstance(optional, str):
            raise ValueError(f"ResumeCheckpointLoader: optional must be a list of names, got the string {optional!r}.")
        self.optional = tuple(optional)

    def __call__(self, engine: Engine) -> None:
        saved = torch.load(self.load_path, map_location="cpu", weights_only=True)
        missing = [name for name in self.optional if name in self.load_dict and name not in saved]
        if not missing:
            super().__call__(engine)
            return
        self.logger.info(
            "%s holds no %s: started afresh", self.load_path, ", ".join(missing)
        )
        complete = self.load_dict
        self.load_dict = {name: obj for name, obj in complete.items() if name not in missing}
        try:
            super().__call__(engine)
        finally:
            self.load_dict = complete
