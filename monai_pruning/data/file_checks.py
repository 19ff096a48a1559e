"""
Checks on every image/label file before training starts: readable, image and mask of one case with the same spatial
shape, mask values inside the layout's label set.

Reading every mask costs minutes on a large 3-D dataset, so the findings (shape, value set) are cached in a JSON file
keyed by path, size and modification time, and a second run reads only the files that changed. Image volumes are read
for their header only, plus a cheap completeness test of the payload (see :func:`inspect_file`).
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from monai_pruning.data.errors import DatasetError

__all__ = ["CHECK_CACHE_NAME", "inspect_file", "check_cases", "write_json_atomic"]

logger = logging.getLogger(__name__)

CHECK_CACHE_NAME = "dataset_check.json"
_CACHE_FORMAT = 1
# A mask with more distinct values than this is not a label map; keeping them all would bloat the cache.
_MAX_VALUES = 64


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON through a temporary file and a rename, so that a crash or a second process never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _unique_values(array: np.ndarray) -> list:
    values = np.unique(array)
    return [v.item() for v in values[: _MAX_VALUES + 1]]


def _nifti_payload_complete(path: Path, header) -> bool:
    """
    Whether the voxel data of a NIfTI file can be all there, judged without decompressing it.

    A ``.nii`` file must be at least offset + voxel bytes long. A ``.nii.gz`` stores the uncompressed length modulo
    2**32 in its last four bytes, and a truncated download ends elsewhere, so those bytes no longer match.
    """
    expected = int(header.get_data_offset()) + int(np.prod(header.get_data_shape(), dtype=np.int64)) * int(
        header.get_data_dtype().itemsize
    )
    if not path.name.lower().endswith(".gz"):
        return path.stat().st_size >= expected
    with open(path, "rb") as handle:
        handle.seek(-4, os.SEEK_END)
        (stored,) = struct.unpack("<I", handle.read(4))
    return stored == expected % 2**32


def _inspect_nifti(path: Path, want_values: bool) -> dict:
    import nibabel as nib

    image = nib.load(str(path))
    shape = [int(s) for s in image.shape]
    values = None
    # A mismatching gzip trailer is confirmed by a full read before calling the file corrupt: multi-member gzip files
    # written by some tools have a valid payload and a different trailer.
    if want_values or not _nifti_payload_complete(path, image.header):
        data = np.asanyarray(image.dataobj)
        values = _unique_values(data) if want_values else None
    return {"shape": shape, "spatial": shape[:3], "values": values}


def _inspect_picture(path: Path, want_values: bool) -> dict:
    from PIL import Image

    with Image.open(path) as picture:
        picture.load()
        bands = len(picture.getbands())
        shape = [picture.height, picture.width] + ([bands] if bands > 1 else [])
        values = _unique_values(np.asarray(picture)) if want_values else None
    return {"shape": shape, "spatial": shape[:2], "values": values}


def inspect_file(path: str | os.PathLike, want_values: bool = False) -> dict:
    """
    Read what the checks need from one image or mask file.

    NIfTI files are read through their header (plus a payload completeness test); pictures (JPEG, PNG, TIFF) are
    decoded fully, which is cheap at endoscopy sizes and catches truncated JPEGs. With ``want_values`` the voxel data
    are read and their distinct values returned.

    Returns:
        ``{"shape": [...], "spatial": [...], "values": [...] or None}``; ``spatial`` is the first three axes of a
        volume (a 4-D Decathlon image keeps its channels last) and height, width of a picture.

    Raises:
        DatasetError: the file is missing or cannot be decoded, naming the file and the decoder's reason.
    """
    path = Path(path)
    try:
        return _inspect_nifti(path, want_values) if _is_nifti(path) else _inspect_picture(path, want_values)
    except Exception as exc:  # nibabel, gzip, zlib and PIL raise many unrelated types for a corrupt file
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DatasetError(f"cannot read {path}: {reason}") from None


def _load_cache(cache_file: Path | None) -> dict:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        logger.info("ignoring unreadable check cache %s; all files are checked again", cache_file)
        return {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached(entry: dict | None, stamp: dict, want_values: bool) -> dict | None:
    if not isinstance(entry, dict) or entry.get("size") != stamp["size"] or entry.get("mtime_ns") != stamp["mtime_ns"]:
        return None
    if want_values and entry.get("values") is None:
        return None
    return entry


def _format_values(values: Sequence) -> str:
    shown = ", ".join(str(v) for v in values[:_MAX_VALUES])
    return f"[{shown}, ...]" if len(values) > _MAX_VALUES else f"[{shown}]"


def check_cases(
    items: Sequence[dict],
    checked_values: frozenset[int] | None,
    cache_file: Path | None = None,
    num_workers: int | None = None,
) -> None:
    """
    Check every case of ``items`` (``{"image", "label", "case"}`` dicts), reusing and updating ``cache_file``.

    Args:
        items: the reader's output.
        checked_values: the label values a mask may hold; None skips the value check (the masks are still decoded).
        cache_file: JSON cache of earlier findings, keyed by path with size and modification time; None: no cache.
            It is rewritten to hold the files of ``items`` only, so it does not grow across datasets.
        num_workers: threads reading files (decompression releases the GIL); default min(4, CPU count).

    Raises:
        DatasetError: for the first case (in ``items`` order) with an unreadable file, a spatial shape mismatch, or
            label values outside ``checked_values``. The findings for the files read so far are cached first, so that
            the run after a fix re-reads only what changed.
    """
    cache = _load_cache(cache_file)
    jobs: list[tuple[Path, bool]] = []
    for item in items:
        jobs.append((Path(item["image"]), False))
        jobs.append((Path(item["label"]), checked_values is not None))

    def run(job: tuple[Path, bool]) -> dict:
        path, want_values = job
        try:
            stamp = _stamp(path)
        except OSError as exc:
            raise DatasetError(f"cannot read {path}: {exc.strerror or exc}") from None
        hit = _cached(cache.get(str(path)), stamp, want_values)
        return hit if hit is not None else {**inspect_file(path, want_values), **stamp}

    workers = num_workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, job) for job in jobs]
    findings: list[dict | DatasetError] = []
    for future in futures:
        error = future.exception()
        findings.append(error if error is not None else future.result())
    fresh = {str(path): f for (path, _), f in zip(jobs, findings) if isinstance(f, dict)}
    if cache_file is not None:
        write_json_atomic(cache_file, {"format": _CACHE_FORMAT, "files": fresh})
    for index, item in enumerate(items):
        image_facts, label_facts = findings[2 * index], findings[2 * index + 1]
        for facts in (image_facts, label_facts):
            if isinstance(facts, BaseException):
                raise facts
        if list(image_facts["spatial"]) != list(label_facts["spatial"]):
            raise DatasetError(
                f"case {item['case']}: image shape {tuple(image_facts['shape'])} and label shape "
                f"{tuple(label_facts['shape'])} differ in their spatial axes ({item['image']} vs {item['label']})"
            )
        if checked_values is not None:
            outside = [v for v in label_facts["values"] if v not in checked_values]
            if outside:
                raise DatasetError(
                    f"case {item['case']}: label values {_format_values(label_facts['values'])} in {item['label']} are "
                    f"outside the expected set {sorted(checked_values)}"
                )
