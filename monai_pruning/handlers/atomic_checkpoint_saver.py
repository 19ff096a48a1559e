"""MONAI's ``CheckpointSaver``, writing every file atomically."""

from __future__ import annotations

from typing import Any

from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are written to a temporary file and then renamed into place.

    A run killed while saving therefore leaves the previous checkpoint intact instead of a truncated file, so it can
    always resume.  MONAI turns Ignite's atomic mode off because it once left files readable only by their owner;
    Ignite (>= 0.4.11) now adds group/other read permission after the rename, so the reason is gone.  Same arguments
    as ``CheckpointSaver``.

    Example::

        {"_target_": "monai_pruning.handlers.AtomicCheckpointSaver", "save_dir": "@ckpt_dir",
         "save_dict": {"pruning": "@pruning_record", "model": "@network"}, "save_final": true,
         "final_filename": "model.pt"}
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True
