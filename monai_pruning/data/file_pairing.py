"""
Folder scanning shared by the dataset readers: listing data files while skipping hidden and macOS ``._*`` files,
pairing images with masks by file stem, and summarising long name lists for one-line error messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from monai_pruning.data.errors import DatasetError

__all__ = [
    "natural_key",
    "summarise_names",
    "is_hidden",
    "data_stem",
    "list_data_files",
    "visible_subdirs",
    "pair_by_stem",
    "require_folder",
    "resolve_wrapped_root",
]

_NIFTI_SUFFIX = ".nii.gz"


def natural_key(text: str) -> tuple:
    """Sort key that orders ``case_2`` before ``case_10`` (CVC-ClinicDB names its frames 1..612)."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


def summarise_names(names: Iterable[str], limit: int = 5) -> str:
    """``"3 (a, b, c)"`` or ``"120 (first 5: a, b, c, d, e)"``: a count plus a few names, for one-line errors."""
    ordered = sorted(names, key=natural_key)
    if len(ordered) <= limit:
        return f"{len(ordered)} ({', '.join(ordered)})"
    return f"{len(ordered)} (first {limit}: {', '.join(ordered[:limit])})"


def is_hidden(name: str) -> bool:
    """Dot files, including the ``._*`` AppleDouble files that the MSD tarballs and macOS zips carry."""
    return name.startswith(".")


def data_stem(name: str) -> str:
    """File name without its data suffix; ``.nii.gz`` counts as one suffix."""
    if name.lower().endswith(_NIFTI_SUFFIX):
        return name[: -len(_NIFTI_SUFFIX)]
    return os.path.splitext(name)[0]


def list_data_files(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """
    Map stem -> path for the visible files in ``folder`` whose name ends with one of ``suffixes`` (case-insensitive).

    Raises:
        DatasetError: when two files share a stem (e.g. ``12.png`` and ``12.tif``), since either could be the mask's
            partner and picking one silently would hide a half-converted dataset.
    """
    found: dict[str, Path] = {}
    lowered = tuple(s.lower() for s in suffixes)
    for entry in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if is_hidden(entry.name) or not entry.name.lower().endswith(lowered) or not entry.is_file():
            continue
        stem = data_stem(entry.name)
        if stem in found:
            raise DatasetError(
                f"two files with the same name stem '{stem}' in {folder}: {found[stem].name} and {entry.name}"
            )
        found[stem] = entry
    return found


def visible_subdirs(folder: Path) -> list[Path]:
    """Sub-folders that are not hidden, in natural order; an unreadable folder counts as empty."""
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    return sorted((e for e in entries if e.is_dir() and not is_hidden(e.name)), key=lambda p: natural_key(p.name))


def pair_by_stem(images: dict[str, Path], masks: dict[str, Path], image_dir: Path, mask_dir: Path) -> list[dict]:
    """
    Join images and masks that share a stem into ``{"image", "label", "case"}`` items, the stem being the case id.

    Raises:
        DatasetError: an image without a mask or a mask without an image (first few names and the count), because a
            half-copied dataset would otherwise train on a silently smaller set.
    """
    lonely_images = sorted(set(images) - set(masks), key=natural_key)
    if lonely_images:
        raise DatasetError(
            f"images without a mask in {mask_dir}: {summarise_names(images[s].name for s in lonely_images)}"
        )
    lonely_masks = sorted(set(masks) - set(images), key=natural_key)
    if lonely_masks:
        raise DatasetError(
            f"masks without an image in {image_dir}: {summarise_names(masks[s].name for s in lonely_masks)}"
        )
    return [
        {"image": str(images[stem]), "label": str(masks[stem]), "case": stem}
        for stem in sorted(images, key=natural_key)
    ]


def require_folder(path: Path, what: str) -> Path:
    """Fail with a one-line message unless ``path`` is an existing folder; ``what`` says which argument it came from."""
    if not path.exists():
        raise DatasetError(f"{what} does not exist: {path}")
    if not path.is_dir():
        raise DatasetError(f"{what} is not a folder: {path}")
    return path


def resolve_wrapped_root(root: Path, looks_like: Callable[[Path], bool], preferred: Sequence[str] = ()) -> Path | None:
    """
    The folder that holds the dataset: ``root`` itself, or the one sub-folder of ``root`` that does.

    Archives unpack into a wrapper folder (``Kvasir-SEG/``, ``Task01_BrainTumour/``, ``PNG/``), and users point at
    either level. When several sub-folders qualify, the first name in ``preferred`` that qualifies wins; otherwise the
    choice would be a guess, so it is an error.

    Returns:
        the dataset folder, or None when neither ``root`` nor any sub-folder looks like the layout.
    """
    if looks_like(root):
        return root
    matches = [d for d in visible_subdirs(root) if looks_like(d)]
    if len(matches) == 1:
        return matches[0]
    for name in preferred:
        for match in matches:
            if match.name == name:
                return match
    if matches:
        raise DatasetError(
            f"several datasets in {root}: {', '.join(m.name for m in matches)}; point dataset_dir at one of them"
        )
    return None
