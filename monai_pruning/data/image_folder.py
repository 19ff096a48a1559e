"""
What an inference run is given, checked before the network runs: the images to segment (every image file of one
folder, or every case of a dataset root as distributed), the names their masks are written under, and the trained
model file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.data.folder_layout import default_name_formatter

from monai_pruning.data.brain_layouts import list_msd_images
from monai_pruning.data.errors import DatasetError
from monai_pruning.data.kits_layout import KITS_IMAGE_NAME, list_kits_images
from monai_pruning.data.layouts import LAYOUTS, detect_layout

__all__ = ["list_image_files", "case_name_formatter", "require_model_file"]

logger = logging.getLogger(__name__)


def _dataset_images(root: Path, suffixes: Sequence[str]) -> list[Path] | None:
    """The images of a KiTS or Decathlon root at ``root``, logged with where they came from; None for neither."""
    kits = list_kits_images(root)
    if kits is not None:
        logger.info("%s is a KiTS root: segmenting the %s of its %d case folders", root, KITS_IMAGE_NAME, len(kits))
        return kits
    msd = list_msd_images(root, suffixes)
    if msd is not None:
        logger.info("%s is a Decathlon task: segmenting the %d images of imagesTr/ and imagesTs/", root, len(msd))
        return msd
    return _polyp_frames(root, suffixes)


def _polyp_frames(root: Path, suffixes: Sequence[str]) -> list[Path] | None:
    """
    The frames of the Kvasir-SEG, CVC-ClinicDB or PolypGen dataset at ``root``, found and listed by that dataset's own
    reader (so exactly the frames training would read, never their masks), those whose name ends with one of
    ``suffixes``; None when ``root`` holds none of these layouts.
    """
    name = detect_layout("polyp", root)
    if name is None:
        return None
    layout = LAYOUTS[name]
    wanted = tuple(s.lower() for s in suffixes)
    frames = [Path(item["image"]) for item in layout.read(root) if item["image"].lower().endswith(wanted)]
    logger.info("%s is a %s dataset: segmenting its %d frames", root, layout.title, len(frames))
    return frames


def list_image_files(
    folder: str | os.PathLike, suffixes: Sequence[str], exclude_names: Sequence[str] = ()
) -> list[dict[str, str]]:
    """``[{"image": path}, ...]`` for the files of ``folder`` whose name ends with one of ``suffixes``, sorted.

    Hidden files and macOS ``._*`` companions are skipped.  Suffixes are matched case-insensitively, so
    ``".jpg"`` finds ``IMG_0001.JPG``.  ``exclude_names`` are exact file names that are not images to segment, e.g.
    the ``segmentation.nii.gz`` next to a KiTS ``imaging.nii.gz``; they are left out before the folder is judged
    empty, so a folder holding only masks is reported as such instead of failing later in the network.

    A folder with no such file of its own may be the root of a dataset as distributed; then every case is listed: the
    ``imaging.nii.gz`` of each KiTS ``case_*/`` folder (also under ``data/`` or ``dataset/``), labelled or not, or
    the images of a Decathlon task's ``imagesTr/`` and ``imagesTs/``, or every frame of a Kvasir-SEG (``images/``),
    CVC-ClinicDB (``Original/``, also in a ``PNG/``, ``TIF/`` or ``JPG/`` wrapper) or PolypGen (``data_Cn/images_Cn/``,
    the release or one centre) dataset, as its reader lists them. KiTS names every scan alike, so a bundle saving
    masks of such a list names them with :func:`case_name_formatter`; polyp frame names are unique in their dataset
    (the PolypGen reader refuses a name found in two centres), so masks named by frame cannot overwrite each other.

    Raises:
        DatasetError: the folder is missing or holds no such file (nor a dataset); KiTS case folders without an image;
            a polyp dataset its reader refuses (e.g. a frame without its mask).
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
        files = _dataset_images(root, suffixes) or []
    if not files:
        masks = f" (only {', '.join(sorted({p.name for p in matching}))}, which are not images)" if matching else ""
        raise DatasetError(f"no {'/'.join(suffixes)} images in {root}{masks}")
    return [{"image": str(p)} for p in files]


def case_name_formatter(metadict: dict | None, saver: Any) -> dict:
    """
    Output name parts for MONAI's ``SaveImage(output_name_formatter=...)``: an input named ``imaging.nii.gz``, as
    every KiTS scan is, is named by its case folder (``case_00003/imaging.nii.gz`` -> ``case_00003_seg.nii.gz``), so
    that the masks of a KiTS root neither overwrite each other nor lose their case; any other input keeps MONAI's
    default (its own file name).
    """
    parts = default_name_formatter(metadict or {}, saver)
    source = Path(str(parts["subject"]))
    if source.name == KITS_IMAGE_NAME and source.parent.name:
        parts["subject"] = source.parent.name
    return parts


def require_model_file(path: str | os.PathLike, setting: str = "checkpoint") -> str:
    """
    ``path`` as a string when it names a file; otherwise a one-line error saying how to get a model, raised before
    the network is built and the images are read (instead of torch's ``[Errno 2]`` once the run has started).
    ``setting`` is the config id the path can be given with on the command line.

    Raises:
        FileNotFoundError: no file at ``path`` (a user error that the bundles' error hook prints as one line).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(
            f"no trained model at {path}: train first (configs/train.json), or set --{setting} <path>"
        )
    return str(path)
