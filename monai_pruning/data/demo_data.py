"""
The embedded demo data: synthetic phantoms written into the demo folder, in the real layout of each task, the first
time a bundle runs without a dataset.

Generation happens in a hidden folder inside the demo folder whose contents are then moved into place, with a marker
file moved last; a lock file serialises concurrent callers (e.g. the ranks of a ``torchrun`` job), so a reader never
sees half a phantom set and only one process writes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.brain_phantoms import BRAIN_DEMO_CASES, write_brain_phantoms
from monai_pruning.data.kidney_phantoms import KIDNEY_DEMO_CASES, write_kidney_phantoms
from monai_pruning.data.polyp_phantoms import POLYP_DEMO_CASES, write_polyp_phantoms

__all__ = ["PHANTOM_MARKER", "DEMO_WRITERS", "is_phantom_dataset", "write_demo_dataset", "demo_folder_lock"]

logger = logging.getLogger(__name__)

PHANTOM_MARKER = ".monai_pruning_phantoms.json"
_LOCK_NAME = ".monai_pruning_phantoms.lock"

# task -> (writer(root, num_cases, seed), default number of cases)
DEMO_WRITERS: dict[str, tuple[Callable[..., list[dict]], int]] = {
    "polyp": (write_polyp_phantoms, POLYP_DEMO_CASES),
    "kidney": (write_kidney_phantoms, KIDNEY_DEMO_CASES),
    "brain": (write_brain_phantoms, BRAIN_DEMO_CASES),
}


def is_phantom_dataset(folder: Path) -> bool:
    """True when ``folder`` holds a complete phantom set written by :func:`write_demo_dataset`."""
    return (folder / PHANTOM_MARKER).is_file()


@contextlib.contextmanager
def demo_folder_lock(folder: Path) -> Iterator[None]:
    """
    Hold an exclusive lock on ``folder`` (created if needed) while checking for and writing phantoms.

    Uses ``fcntl.flock``, which the system releases if the process dies, so a crash leaves no stale lock; where
    ``fcntl`` does not exist (Windows) it does not lock.
    """
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(folder / _LOCK_NAME, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_demo_dataset(task: str, folder: Path, layout: str, num_cases: int | None = None, seed: int = 0) -> int:
    """
    Write the phantom set of ``task`` into ``folder`` and mark it as synthetic.

    Args:
        task: "polyp", "kidney" or "brain".
        folder: the demo folder; existing unrelated files are left alone.
        layout: recorded in the marker (the layout the writer produces).
        num_cases: cases to write; default the task's demo size (80 polyp frames, 24 kidney or brain volumes).
        seed: the phantoms' seed; case ``i`` depends only on ``(seed, i)``.

    Returns:
        the number of cases written.
    """
    writer, default_cases = DEMO_WRITERS[task]
    num_cases = default_cases if num_cases is None else num_cases
    staging = folder / f".phantoms-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        writer(staging, num_cases=num_cases, seed=seed)
        clashes = [entry.name for entry in staging.iterdir() if (folder / entry.name).exists()]
        if clashes:
            raise DatasetError(
                f"cannot write demo phantoms into {folder}: {', '.join(sorted(clashes))} already there but no complete "
                f"dataset; empty the folder, or point dataset_dir at a real dataset"
            )
        for entry in sorted(staging.iterdir()):
            os.replace(entry, folder / entry.name)
        marker = {"task": task, "layout": layout, "num_cases": num_cases, "seed": seed, "synthetic": True}
        (staging / PHANTOM_MARKER).write_text(json.dumps(marker, indent=1), encoding="utf-8")
        os.replace(staging / PHANTOM_MARKER, folder / PHANTOM_MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return num_cases
