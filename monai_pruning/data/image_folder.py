"""The new images an inference run is asked to segment: every image file of one folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from monai_pruning.data.errors import DatasetError

__all__ = ["list_image_files"]


def list_image_files(folder: str | os.PathLike, suffixes: Sequence[str]) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for the files of ``folder`` whose name ends with one of ``suffixes``, sorted.

    Hidden files and macOS ``._*`` companions are skipped.  Suffixes are matched case-insensitively, so
    ``".jpg"`` finds ``IMG_0001.JPG``.

    Raises:
        DatasetError: the folder is missing or holds no such file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"input folder not found: {root} (set input_dir to a folder of images to segment)")
    wanted = tuple(s.lower() for s in suffixes)
    files = sorted(
        p for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(wanted)
    )
    if not files:
        raise DatasetError(f"no {'/'.join(suffixes)} images in {root}")
    return [{"image": str(p)} for p in files]
