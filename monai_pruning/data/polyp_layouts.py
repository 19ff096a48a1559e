"""
Readers for the two public polyp segmentation layouts, left exactly as they are distributed.

- Kvasir-SEG: ``images/*.jpg`` and ``masks/*.jpg`` with equal names (the zip unpacks into a ``Kvasir-SEG/`` folder).
- CVC-ClinicDB: ``Original/<n>.tif|png|jpg`` and ``Ground Truth/<n>.tif|png|jpg`` (the original is TIFF; copies
  circulate as PNG and JPEG, some wrapped in ``PNG/``, ``TIF/`` or ``JPG/`` folders side by side; a lossless copy is
  preferred to a JPEG one, whose masks carry compression noise).
"""

from __future__ import annotations

import os
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_pairing import list_data_files, pair_by_stem, require_folder, resolve_wrapped_root

__all__ = ["CVC_PREFERRED_COPIES", "read_kvasir_seg", "read_cvc_clinicdb", "looks_like_kvasir_seg", "looks_like_cvc_clinicdb"]

_KVASIR_SUFFIXES = (".jpg", ".jpeg", ".png")
_CVC_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
# Wrapper folders of the copies, best first: lossless before JPEG.
CVC_PREFERRED_COPIES = ("PNG", "png", "TIF", "tif", "TIFF", "tiff")
_CVC_IMAGES, _CVC_MASKS = "Original", "Ground Truth"


def looks_like_kvasir_seg(folder: Path) -> bool:
    """True when ``folder`` has the ``images/`` and ``masks/`` sub-folders of Kvasir-SEG."""
    return (folder / "images").is_dir() and (folder / "masks").is_dir()


def looks_like_cvc_clinicdb(folder: Path) -> bool:
    """True when ``folder`` has the ``Original/`` and ``Ground Truth/`` sub-folders of CVC-ClinicDB."""
    return (folder / _CVC_IMAGES).is_dir() and (folder / _CVC_MASKS).is_dir()


def _read_pairs(root: Path, image_dir: Path, mask_dir: Path, suffixes: tuple[str, ...], title: str) -> list[dict]:
    images = list_data_files(image_dir, suffixes)
    masks = list_data_files(mask_dir, suffixes)
    if not images and not masks:
        raise DatasetError(f"no {title} image/mask pairs in {root}: {image_dir.name}/ and {mask_dir.name}/ hold no "
                           f"{'/'.join(suffixes)} files")
    return pair_by_stem(images, masks, image_dir, mask_dir)


def read_kvasir_seg(root: str | os.PathLike) -> list[dict]:
    """
    List the Kvasir-SEG image/mask pairs under ``root`` (or under its single ``Kvasir-SEG/`` sub-folder).

    Masks are JPEGs with compression noise around 0 and 255; they are returned as they are, for a later transform to
    binarise, so nothing here depends on the exact grey values.

    Returns:
        ``[{"image": path, "label": path, "case": stem}, ...]`` in natural order of the stems.

    Raises:
        DatasetError: missing folder, no pairs, or an image without a mask / a mask without an image.
    """
    base = require_folder(Path(root).expanduser(), "Kvasir-SEG folder")
    found = resolve_wrapped_root(base, looks_like_kvasir_seg)
    if found is None:
        raise DatasetError(
            f"no Kvasir-SEG layout in {base}: expected images/ and masks/ folders there or in one sub-folder"
        )
    return _read_pairs(found, found / "images", found / "masks", _KVASIR_SUFFIXES, "Kvasir-SEG")


def read_cvc_clinicdb(root: str | os.PathLike) -> list[dict]:
    """
    List the CVC-ClinicDB frame/mask pairs under ``root`` (or its ``PNG/``, ``TIF/``, ``JPG/`` or other single
    sub-folder; of several such copies the PNG one is read, else the TIFF one).

    Returns:
        ``[{"image": path, "label": path, "case": frame number as str}, ...]`` in numeric order.

    Raises:
        DatasetError: missing folder, no pairs, or a frame without a mask / a mask without a frame.
    """
    base = require_folder(Path(root).expanduser(), "CVC-ClinicDB folder")
    found = resolve_wrapped_root(base, looks_like_cvc_clinicdb, preferred=CVC_PREFERRED_COPIES)
    if found is None:
        raise DatasetError(
            f"no CVC-ClinicDB layout in {base}: expected 'Original/' and 'Ground Truth/' folders there or in one "
            f"sub-folder"
        )
    return _read_pairs(found, found / _CVC_IMAGES, found / _CVC_MASKS, _CVC_SUFFIXES, "CVC-ClinicDB")
