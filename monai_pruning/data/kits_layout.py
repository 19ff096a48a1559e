"""
Reader for the Kidney Tumor Segmentation challenge layout (KiTS19, KiTS21, KiTS23), left as distributed.

Each case is a folder ``case_XXXXX/`` holding ``imaging.nii.gz`` (CT in HU) and ``segmentation.nii.gz`` (0 background,
1 kidney, 2 tumour, 3 cyst in KiTS21/23). The case folders sit directly in the root (KiTS23 ``dataset/``) or in a
``data/`` sub-folder (KiTS19/21 repositories). KiTS21 names the majority-vote segmentation
``aggregated_MAJ_seg.nii.gz``; it is used when ``segmentation.nii.gz`` is absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_pairing import natural_key, require_folder, summarise_names, visible_subdirs

__all__ = ["read_kits", "find_kits_cases_dir", "list_kits_images", "KITS_LABELS", "KITS_IMAGE_NAME"]

logger = logging.getLogger(__name__)

KITS_LABELS = {"0": "background", "1": "kidney", "2": "tumor", "3": "cyst"}
KITS_IMAGE_NAME = "imaging.nii.gz"
_IMAGE = KITS_IMAGE_NAME
_MASKS = ("segmentation.nii.gz", "aggregated_MAJ_seg.nii.gz")


def _case_dirs(folder: Path) -> list[Path]:
    return [d for d in visible_subdirs(folder) if d.name.startswith("case_")]


def find_kits_cases_dir(root: Path) -> Path | None:
    """
    The folder holding the ``case_*`` folders: ``root``, ``root/data`` or ``root/dataset``, also one wrapper level
    down (``kits19/data``); None when there is none.
    """
    subdirs = visible_subdirs(root)
    for base in [root] + (subdirs if len(subdirs) == 1 else []):
        for candidate in (base, base / "data", base / "dataset"):
            if candidate.is_dir() and _case_dirs(candidate):
                return candidate
    return None


def list_kits_images(root: Path) -> list[Path] | None:
    """
    The ``imaging.nii.gz`` of every case folder under ``root`` (found as by :func:`find_kits_cases_dir`), labelled or
    not, in case order: what an inference run at a KiTS root segments. None when ``root`` holds no case folders.

    Raises:
        DatasetError: case folders without ``imaging.nii.gz`` (a KiTS19 clone before its images were downloaded),
            because segmenting only the cases that happen to be there would hide it.
    """
    cases_dir = find_kits_cases_dir(root)
    if cases_dir is None:
        return None
    cases = _case_dirs(cases_dir)
    no_image = [case.name for case in cases if not (case / _IMAGE).is_file()]
    if no_image:
        raise DatasetError(f"case folders without {_IMAGE} in {cases_dir}: {summarise_names(no_image)}")
    return [case / _IMAGE for case in cases]


def read_kits(root: str | os.PathLike) -> list[dict]:
    """
    List the KiTS cases under ``root`` that have both an image and a segmentation.

    KiTS19 ships its test cases as ``imaging.nii.gz`` without a segmentation; they are left out with one warning,
    because they are part of the official download rather than a copying mistake. A segmentation without an image is an
    error: it is what a KiTS19 clone looks like before its download script has fetched the images.

    Returns:
        ``[{"image": path, "label": path, "case": "case_XXXXX"}, ...]`` in case order.

    Raises:
        DatasetError: missing folder, no case folders, or segmentations without images.
    """
    base = require_folder(Path(root).expanduser(), "KiTS folder")
    cases_dir = find_kits_cases_dir(base)
    if cases_dir is None:
        raise DatasetError(f"no KiTS layout in {base}: expected case_XXXXX/ folders there or in data/ or dataset/")
    items, unlabelled, no_image = [], [], []
    for case in _case_dirs(cases_dir):
        image = case / _IMAGE
        mask = next((case / m for m in _MASKS if (case / m).is_file()), None)
        if not image.is_file():
            no_image.append(case.name)
        elif mask is None:
            unlabelled.append(case.name)
        else:
            items.append({"image": str(image), "label": str(mask), "case": case.name})
    if no_image:
        raise DatasetError(f"case folders without {_IMAGE} in {cases_dir}: {summarise_names(no_image)}")
    if unlabelled:
        logger.warning(
            "KiTS: left out the case folders that have %s but no segmentation (the KiTS19 test cases look like this) "
            "in %s: %s",
            _IMAGE,
            cases_dir,
            summarise_names(unlabelled),
        )
    if not items:
        raise DatasetError(f"no KiTS case in {cases_dir} has both {_IMAGE} and {_MASKS[0]}")
    return sorted(items, key=lambda item: natural_key(item["case"]))
