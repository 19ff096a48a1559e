"""The new images an inference run is asked to segment: every image file of one folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from monai_pruning.data.errors import DatasetError

__all__ = ["list_image_files"]


def list_image_files(
    folder: str | os.PathLike, suffixes: Sequence[str], exclude_names: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for the files of ``folder`` whose name ends with one of ``suffixes``, sorted.

    Hidden files and macOS ``._*`` companions are skipped.  Suffixes are matched case-insensitively, so
    ``".jpg"`` finds ``IMG_0001.JPG``.  ``exclude_names`` are exact file names that are not images to segment, e.g.
    the ``segmentation.nii.gz`` next to a KiTS ``imaging.nii.gz``; they are left out before the folder is judged
    empty, so a folder holding only masks is reported as such instead of failing later in the network.

    Raises:
        DatasetError: the folder is missing or holds no such file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"input folder not found: {root} (set input_dir to a folder of images to segment)")
    wanted = tuple(s.lower() for s in suffixes)
    matching = sorted(
        p for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(wanted)
    )
    excluded = set(exclude_names)
    files = [p for p in matching if p.name not in excluded]
    if not files:
        masks = f" (only {', '.join(sorted({p.name for p in matching}))}, which are not images)" if matching else ""
        raise DatasetError(f"no {'/'.join(suffixes)} images in {root}{masks}")
    return [{"image": str(p)} for p in files]
