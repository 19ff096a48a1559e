"""
Reader for the PolypGen layout (Ali et al., Scientific Data 2023): single colonoscopy frames from six centres.

The release unpacks into one folder per centre, ``data_C1/`` .. ``data_C6/``, each holding ``images_Cn/NAME.jpg`` and
``masks_Cn/NAME_mask.jpg``. Users point ``dataset_dir`` at the release (the folder holding the ``data_Cn/`` folders,
or its single wrapper sub-folder) or at one ``data_Cn/`` folder to train on one centre. Frames without a polyp have
an all-zero mask; they are valid cases, not errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_pairing import (
    list_data_files,
    natural_key,
    pair_by_stem,
    require_folder,
    resolve_wrapped_root,
    visible_subdirs,
)

__all__ = ["read_polypgen", "looks_like_polypgen", "polypgen_centres"]

_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff")
_CENTRE_DIR = re.compile(r"^data_(C\d+)$")
_MASK_SUFFIX = "_mask"


def _centre_of(folder: Path) -> str | None:
    """``"C3"`` for a ``data_C3`` folder that holds ``images_C3/`` and ``masks_C3/``, else None."""
    match = _CENTRE_DIR.match(folder.name)
    if match is None:
        return None
    centre = match.group(1)
    return centre if (folder / f"images_{centre}").is_dir() and (folder / f"masks_{centre}").is_dir() else None


def polypgen_centres(folder: Path) -> dict[str, Path]:
    """Centre name -> its ``data_Cn`` folder, for ``folder`` being the release root or one centre's folder."""
    own = _centre_of(folder)
    if own is not None:
        return {own: folder}
    found = {}
    for sub in visible_subdirs(folder):
        centre = _centre_of(sub)
        if centre is not None:
            found[centre] = sub
    return found


def looks_like_polypgen(folder: Path) -> bool:
    """True when ``folder`` is a PolypGen release root or one ``data_Cn/`` centre folder (names only, no pixels)."""
    return bool(polypgen_centres(folder))


def _read_centre(centre: str, folder: Path) -> list[dict]:
    image_dir, mask_dir = folder / f"images_{centre}", folder / f"masks_{centre}"
    images = list_data_files(image_dir, _SUFFIXES)
    masks: dict[str, Path] = {}
    for stem, path in list_data_files(mask_dir, _SUFFIXES).items():
        if not stem.endswith(_MASK_SUFFIX):
            raise DatasetError(f"mask file without the '{_MASK_SUFFIX}' name ending in {mask_dir}: {path.name}")
        masks[stem[: -len(_MASK_SUFFIX)]] = path
    if not images and not masks:
        raise DatasetError(f"no PolypGen frames in {folder}: images_{centre}/ and masks_{centre}/ hold no image files")
    return [{**item, "centre": centre} for item in pair_by_stem(images, masks, image_dir, mask_dir)]


def read_polypgen(root: str | os.PathLike) -> list[dict]:
    """
    List the PolypGen frame/mask pairs under ``root``: the release, its wrapper folder, or one ``data_Cn/`` folder.

    The case id is the frame's file name without suffix (the release's names are unique across centres, and a
    clash is refused rather than renamed, since a renamed case would not match the published split lists).

    Returns:
        ``[{"image": path, "label": path, "case": name, "centre": "C1".."C6"}, ...]``, centres in order, frames in
        natural order within a centre; ``centre`` lets evaluation report Dice per centre.

    Raises:
        DatasetError: missing folder, no ``data_Cn/`` folder, a centre without frames, a frame without its
            ``NAME_mask`` file or the reverse, or the same frame name in two centres.
    """
    base = require_folder(Path(root).expanduser(), "PolypGen folder")
    found = resolve_wrapped_root(base, looks_like_polypgen)
    if found is None:
        raise DatasetError(
            f"no PolypGen layout in {base}: expected data_Cn/images_Cn/ and data_Cn/masks_Cn/ folders there, in one "
            "sub-folder, or dataset_dir pointing at one data_Cn/ folder"
        )
    items: list[dict] = []
    seen: dict[str, str] = {}
    for centre, folder in sorted(polypgen_centres(found).items(), key=lambda kv: natural_key(kv[0])):
        for item in _read_centre(centre, folder):
            if item["case"] in seen:
                raise DatasetError(
                    f"frame name {item['case']!r} appears in both {seen[item['case']]} and {centre} under {found}"
                )
            seen[item["case"]] = centre
            items.append(item)
    return items
