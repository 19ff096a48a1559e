"""MONAI's ``CheckpointSaver``, writing every file atomically and keeping ``n_saved`` across a resumed run."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from monai.handlers import CheckpointSaver
from monai.utils import IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
Checkpoint, _ = optional_import("ignite.handlers", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Checkpoint")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["AtomicCheckpointSaver"]


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are written to a temporary file and then renamed into place.

    A run killed while saving therefore leaves the previous checkpoint intact instead of a truncated file, so it can
    always resume.  MONAI turns Ignite's atomic mode off because it once left files readable only by their owner;
    Ignite (>= 0.4.11) now adds group/other read permission after the rename, so the reason is gone.  Same arguments
    as ``CheckpointSaver``.

    A resumed run also keeps ``n_saved`` for the interval checkpoints: Ignite only deletes files it wrote in the same
    process, so each resume used to leave the checkpoints of the run before it on disk for good. When the trainer
    starts, interval checkpoint files already in ``save_dir`` whose epoch (or iteration) is not past the one the
    trainer starts from are adopted as if this saver had written them: the ``n_saved`` newest stay, older ones are
    deleted, and the next saves rotate them out. Files of a later epoch (another, longer run) are left alone. Attach
    it after the ``CheckpointLoader`` that resumes, so that the trainer's restored epoch is known at that point.

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

    def state_dict(self) -> dict:
        """
        The key-metric saver's record of its best checkpoint (score and file name, plain data), for the resume
        checkpoint: restored by ``load_state_dict`` (MONAI's), a resumed run replaces ``model_best.pt`` only with a
        better epoch. Without it, the first validation after a resume overwrote the best model of the run so far
        with whatever it scored.

        Raises:
            ValueError: the saver does not save by key metric (it has nothing to resume).
        """
        if self._key_metric_checkpoint is None:
            raise ValueError("AtomicCheckpointSaver.state_dict: only a key-metric saver (save_key_metric=True) "
                             "has a best-checkpoint record to resume.")
        return dict(self._key_metric_checkpoint.state_dict())

    def attach(self, engine: Engine) -> None:
        """Attach MONAI's saving handlers, and adopt earlier interval checkpoints when the trainer starts."""
        super().attach(engine)
        if self._interval_checkpoint is not None:
            engine.add_event_handler(Events.STARTED, self.adopt_earlier_checkpoints)

    def _interval_file_regex(self) -> re.Pattern | None:
        """The interval checkpoints' file names, the epoch or iteration as group 1 (None for a custom pattern)."""
        checkpoint = self._interval_checkpoint
        if checkpoint.filename_pattern is not None:
            return None
        pattern = Checkpoint.setup_filename_pattern(
            with_prefix=bool(checkpoint.filename_prefix),
            with_score=True,
            with_score_name=bool(checkpoint.score_name),
            with_global_step=False,
        )
        name = next(iter(self.save_dict)) if len(self.save_dict) == 1 else "checkpoint"
        marker = "\0"
        filename = pattern.format(
            filename_prefix=checkpoint.filename_prefix,
            name=name,
            score_name=checkpoint.score_name,
            score=marker,
            ext=checkpoint.ext,
            global_step=None,
        )
        before, after = filename.split(marker)
        return re.compile(re.escape(before) + r"(\d+)" + re.escape(after))

    def adopt_earlier_checkpoints(self, engine: Engine) -> None:
        """Take over the interval checkpoints an earlier run left in ``save_dir`` (see the class docstring)."""
        checkpoint = self._interval_checkpoint
        regex = self._interval_file_regex()
        if checkpoint.n_saved is None or regex is None:
            return
        start = engine.state.epoch if self.epoch_level else engine.state.iteration
        known = {item.filename for item in checkpoint._saved}
        for path in checkpoint.save_handler.dirname.iterdir():
            found = regex.fullmatch(path.name)
            if found and path.is_file() and path.name not in known and int(found.group(1)) <= start:
                checkpoint._saved.append(Checkpoint.Item(int(found.group(1)), path.name))
        checkpoint._saved.sort(key=lambda item: item.priority)
        while len(checkpoint._saved) > checkpoint.n_saved:
            stale = checkpoint._saved.pop(0)
            checkpoint.save_handler.remove(stale.filename)
            self.logger.info(f"Deleted the earlier run's checkpoint {stale.filename} (n_saved={checkpoint.n_saved}).")
