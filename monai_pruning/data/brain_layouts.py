"""
Readers for the two public brain lesion layouts, left as distributed.

- Medical Segmentation Decathlon (e.g. Task01_BrainTumour, 4-D multi-channel images with labels 0-3;
  Task04_Hippocampus, 3-D with labels 0-2): ``dataset.json`` lists the training pairs as ``./imagesTr/x.nii.gz`` and
  ``./labelsTr/x.nii.gz`` and names the channels (``modality``) and label values (``labels``). The tarballs also carry
  macOS ``._*`` files next to the real ones; only the files that ``dataset.json`` names are read.
- ATLAS v2.0 stroke lesions (BIDS-like, usually ``Training/R0xx/sub-*/ses-*/anat/``): a ``*_T1w.nii.gz`` image and a
  ``*_label-L_desc-T1lesion_mask.nii.gz`` mask with the same prefix in the same ``anat/`` folder. Its ``Testing/`` part
  has no masks, so when a ``Training/`` folder exists only that part is read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_pairing import (
    data_stem,
    is_hidden,
    natural_key,
    require_folder,
    resolve_wrapped_root,
    summarise_names,
)

__all__ = [
    "read_msd",
    "read_msd_metadata",
    "list_msd_images",
    "read_atlas",
    "looks_like_msd",
    "looks_like_atlas",
    "ATLAS_LABELS",
    "ATLAS_MODALITY",
]

ATLAS_LABELS = {"0": "background", "1": "lesion"}
ATLAS_MODALITY = {"0": "T1w"}
_ATLAS_IMAGE_SUFFIX = "_T1w.nii.gz"
_ATLAS_MASK_SUFFIX = "_label-L_desc-T1lesion_mask.nii.gz"
# Training/R0xx/sub-*/ses-*/anat is four levels below the ATLAS root, plus one for a wrapper folder such as ATLAS_2/.
_ATLAS_MAX_DEPTH = 6


def looks_like_msd(folder: Path) -> bool:
    """True when ``folder`` holds a Decathlon ``dataset.json``."""
    return (folder / "dataset.json").is_file()


def _walk(root: Path, max_depth: int):
    """
    ``os.walk`` over visible folders that descends at most ``max_depth`` levels (the sub-folders of the deepest level
    are still reported), so that detection on a wrong path such as a home folder stays quick.
    """
    root_depth = len(root.parts)
    for current, dirs, files in os.walk(root):
        depth = len(Path(current).parts) - root_depth
        visible = sorted((d for d in dirs if not is_hidden(d)), key=natural_key)
        dirs[:] = visible if depth < max_depth else []
        yield Path(current), visible, files


def looks_like_atlas(folder: Path) -> bool:
    """True when a BIDS subject folder (``sub-*``) lies at most four levels below ``folder``."""
    return any(any(d.startswith("sub-") for d in dirs) for _, dirs, _ in _walk(folder, 3))


def read_msd_metadata(root: str | os.PathLike) -> dict:
    """
    Read and check the Decathlon ``dataset.json`` under ``root`` (or its single ``TaskXX_*`` sub-folder).

    Returns:
        ``{"root": folder str, "name": str, "modality": {"0": "FLAIR", ...}, "labels": {"0": "background", ...},
        "training": [{"image": "./imagesTr/...", "label": "./labelsTr/..."}, ...]}`` with the JSON's own strings.

    Raises:
        DatasetError: missing folder or file, invalid JSON, or a missing/malformed ``training`` or ``labels`` entry.
    """
    base = require_folder(Path(root).expanduser(), "Decathlon folder")
    found = resolve_wrapped_root(base, looks_like_msd)
    if found is None:
        raise DatasetError(f"no Decathlon layout in {base}: expected dataset.json there or in one sub-folder")
    path = found / "dataset.json"
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} does not hold a JSON object")
    training = meta.get("training")
    if not isinstance(training, list):
        raise DatasetError(f"{path} has no 'training' list")
    for index, entry in enumerate(training):
        if not (isinstance(entry, dict) and all(isinstance(entry.get(key), str) for key in ("image", "label"))):
            raise DatasetError(f"{path}: training entry {index} is not an object with 'image' and 'label' paths")
    labels = meta.get("labels")
    if not isinstance(labels, dict) or not labels or not all(str(k).strip().isdigit() for k in labels):
        raise DatasetError(
            f"{path} has no 'labels' object keyed by integer label values, e.g. {{\"0\": \"background\"}}"
        )
    modality = meta.get("modality", {})
    if not isinstance(modality, dict):
        raise DatasetError(f"{path}: 'modality' is not an object keyed by channel index")
    return {
        "root": str(found),
        "name": str(meta.get("name", found.name)),
        "modality": {str(k).strip(): str(v) for k, v in modality.items()},
        "labels": {str(k).strip(): str(v) for k, v in labels.items()},
        "training": training,
    }


def list_msd_images(root: Path, suffixes: Sequence[str]) -> list[Path] | None:
    """
    The images of the Decathlon task at ``root`` (or in its single ``TaskXX_*`` sub-folder): the visible files of
    ``imagesTr/`` and then ``imagesTs/`` whose name ends with one of ``suffixes`` (case-insensitive), each folder in
    natural order. What an inference run at a task root segments; None when there is no ``dataset.json``.
    """
    found = resolve_wrapped_root(root, looks_like_msd)
    if found is None:
        return None
    wanted = tuple(s.lower() for s in suffixes)
    images: list[Path] = []
    for part in ("imagesTr", "imagesTs"):
        folder = found / part
        if folder.is_dir():
            files = [p for p in folder.iterdir() if p.is_file() and not is_hidden(p.name)]
            images += sorted((p for p in files if p.name.lower().endswith(wanted)), key=lambda p: natural_key(p.name))
    return images


def read_msd(root: str | os.PathLike) -> list[dict]:
    """
    List the Decathlon training pairs named by ``dataset.json`` under ``root``.

    Returns:
        ``[{"image": path, "label": path, "case": file name without .nii.gz}, ...]`` in natural case order.

    Raises:
        DatasetError: see :func:`read_msd_metadata`; an empty ``training`` list; listed files that do not exist
            (images and labels counted separately, with the first few names).
    """
    meta = read_msd_metadata(root)
    found = Path(meta["root"])
    items, no_image, no_label = [], [], []
    for entry in meta["training"]:
        image = Path(os.path.normpath(found / entry["image"]))
        label = Path(os.path.normpath(found / entry["label"]))
        if is_hidden(image.name):
            continue
        if not image.is_file():
            no_image.append(entry["image"])
        if not label.is_file():
            no_label.append(entry["label"])
        items.append({"image": str(image), "label": str(label), "case": data_stem(image.name)})
    json_path = found / "dataset.json"
    if no_image:
        raise DatasetError(f"images listed in {json_path} are missing: {summarise_names(no_image)}")
    if no_label:
        raise DatasetError(f"labels listed in {json_path} are missing: {summarise_names(no_label)}")
    if not items:
        raise DatasetError(f"no training pairs listed in {json_path}")
    cases = [item["case"] for item in items]
    duplicates = sorted({c for c in cases if cases.count(c) > 1})
    if duplicates:
        raise DatasetError(f"{json_path} lists the same case more than once: {summarise_names(duplicates)}")
    return sorted(items, key=lambda item: natural_key(item["case"]))


def _atlas_case_id(prefix: str) -> str:
    """``sub-r001s001_ses-1_space-MNI152NLin2009aSym`` -> ``sub-r001s001_ses-1``: subject and session make a case."""
    entities = [token for token in prefix.split("_") if token.startswith(("sub-", "ses-"))]
    return "_".join(entities) if entities else prefix


def read_atlas(root: str | os.PathLike) -> list[dict]:
    """
    List the ATLAS v2.0 T1w/lesion-mask pairs under ``root`` (its ``Training/`` part when there is one).

    Returns:
        ``[{"image": path, "label": path, "case": "sub-XXX_ses-Y"}, ...]`` in natural case order.

    Raises:
        DatasetError: missing folder, no pairs, a T1w image without its lesion mask or a mask without its image, or two
            images of the same subject and session.
    """
    base = require_folder(Path(root).expanduser(), "ATLAS folder")
    search = resolve_wrapped_root(base, lambda d: (d / "Training").is_dir()) or base
    if (search / "Training").is_dir():
        search = search / "Training"
    images: dict[tuple[Path, str], Path] = {}
    masks: dict[tuple[Path, str], Path] = {}
    for folder, _, files in _walk(search, _ATLAS_MAX_DEPTH):
        for name in files:
            if is_hidden(name):
                continue
            if name.endswith(_ATLAS_IMAGE_SUFFIX):
                images[(folder, name[: -len(_ATLAS_IMAGE_SUFFIX)])] = folder / name
            elif name.endswith(_ATLAS_MASK_SUFFIX):
                masks[(folder, name[: -len(_ATLAS_MASK_SUFFIX)])] = folder / name
    if not images and not masks:
        raise DatasetError(
            f"no ATLAS pairs in {search}: looked for sub-*/ses-*/anat/*{_ATLAS_IMAGE_SUFFIX} with "
            f"*{_ATLAS_MASK_SUFFIX}"
        )
    lonely_images = [images[k].name for k in images.keys() - masks.keys()]
    if lonely_images:
        raise DatasetError(f"ATLAS T1w images without a lesion mask under {search}: {summarise_names(lonely_images)}")
    lonely_masks = [masks[k].name for k in masks.keys() - images.keys()]
    if lonely_masks:
        raise DatasetError(f"ATLAS lesion masks without a T1w image under {search}: {summarise_names(lonely_masks)}")
    items: dict[str, dict] = {}
    for key in images:
        case = _atlas_case_id(key[1])
        if case in items:
            raise DatasetError(f"two ATLAS images for {case} under {search}: {items[case]['image']} and {images[key]}")
        items[case] = {"image": str(images[key]), "label": str(masks[key]), "case": case}
    return [items[case] for case in sorted(items, key=natural_key)]
