"""
Which public dataset layouts each task accepts, how each is recognised in a folder, and what its labels mean.

Detection looks only at folder and file names (never at pixel data), so it is cheap and it recognises a dataset even
when the dataset is broken; the reader then reports what is wrong instead of the folder being mistaken for empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from monai_pruning.data.brain_layouts import (
    ATLAS_LABELS,
    ATLAS_MODALITY,
    looks_like_atlas,
    looks_like_msd,
    read_atlas,
    read_msd,
)
from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_pairing import resolve_wrapped_root
from monai_pruning.data.kits_layout import KITS_LABELS, find_kits_cases_dir, read_kits
from monai_pruning.data.polyp_layouts import (
    CVC_PREFERRED_COPIES,
    looks_like_cvc_clinicdb,
    looks_like_kvasir_seg,
    read_cvc_clinicdb,
    read_kvasir_seg,
)
from monai_pruning.data.polypgen_layout import looks_like_polypgen, read_polypgen

__all__ = ["DatasetLayout", "LAYOUTS", "TASK_LAYOUTS", "TASK_DEMO_LAYOUT", "detect_layout", "layout_for"]


@dataclass(frozen=True)
class DatasetLayout:
    """
    One public dataset layout.

    Attributes:
        name: the ``layout`` argument value, e.g. ``"kvasir"``.
        title: how error messages name it, with the folders it needs.
        read: the reader, folder -> ``[{"image", "label", "case"}, ...]``.
        present: cheap test on folder names only: does this folder (or its single wrapper sub-folder) hold the layout.
        labels: label value (str) -> name, as in a Decathlon ``dataset.json``; replaced by the file's own for MSD.
        modality: channel index (str) -> name; replaced by the file's own for MSD.
        checked_values: the label values a mask may hold; None means any value (polyp JPEG masks are thresholded
            later, so their compression noise is expected); MSD takes the keys of its ``labels``.
    """

    name: str
    title: str
    read: Callable[[Path], list[dict]]
    present: Callable[[Path], bool]
    labels: dict[str, str] = field(default_factory=dict)
    modality: dict[str, str] = field(default_factory=dict)
    checked_values: frozenset[int] | None = None


def _wrapped(looks_like: Callable[[Path], bool], preferred: tuple[str, ...] = ()) -> Callable[[Path], bool]:
    """Presence test that accepts the layout in one wrapper sub-folder, choosing among several as the reader does."""
    return lambda folder: resolve_wrapped_root(folder, looks_like, preferred) is not None


_POLYP_LABELS = {"0": "background", "1": "polyp"}
_RGB = {"0": "red", "1": "green", "2": "blue"}

LAYOUTS: dict[str, DatasetLayout] = {
    "kvasir": DatasetLayout(
        "kvasir", "Kvasir-SEG (images/ + masks/)", read_kvasir_seg, _wrapped(looks_like_kvasir_seg), _POLYP_LABELS, _RGB
    ),
    "cvc_clinicdb": DatasetLayout(
        "cvc_clinicdb",
        "CVC-ClinicDB (Original/ + Ground Truth/)",
        read_cvc_clinicdb,
        _wrapped(looks_like_cvc_clinicdb, CVC_PREFERRED_COPIES),
        _POLYP_LABELS,
        _RGB,
    ),
    "polypgen": DatasetLayout(
        "polypgen",
        "PolypGen (data_Cn/images_Cn/ + data_Cn/masks_Cn/)",
        read_polypgen,
        _wrapped(looks_like_polypgen),
        _POLYP_LABELS,
        _RGB,
    ),
    "kits": DatasetLayout(
        "kits",
        "KiTS (case_XXXXX/imaging.nii.gz + segmentation.nii.gz)",
        read_kits,
        lambda folder: find_kits_cases_dir(folder) is not None,
        KITS_LABELS,
        {"0": "CT"},
        frozenset({0, 1, 2, 3}),
    ),
    "msd": DatasetLayout("msd", "Medical Segmentation Decathlon (dataset.json)", read_msd, _wrapped(looks_like_msd)),
    "atlas": DatasetLayout(
        "atlas",
        "ATLAS v2.0 (sub-*/ses-*/anat/*_T1w.nii.gz + *_label-L_desc-T1lesion_mask.nii.gz)",
        read_atlas,
        looks_like_atlas,
        ATLAS_LABELS,
        ATLAS_MODALITY,
        frozenset({0, 1}),
    ),
}

TASK_LAYOUTS: dict[str, tuple[str, ...]] = {
    "polyp": ("kvasir", "cvc_clinicdb", "polypgen"),
    "kidney": ("kits",),
    "brain": ("msd", "atlas"),
}
# The layout in which the demo phantoms of each task are written (the most common public dataset of the task).
TASK_DEMO_LAYOUT: dict[str, str] = {"polyp": "kvasir", "kidney": "kits", "brain": "msd"}


def _check_task(task: str) -> None:
    if task not in TASK_LAYOUTS:
        raise DatasetError(f"unknown task {task!r}: choose one of {', '.join(TASK_LAYOUTS)}")


def layout_for(task: str, layout: str) -> DatasetLayout:
    """The layout named by the ``layout`` argument, checked against the task (``"auto"`` is resolved elsewhere)."""
    _check_task(task)
    if layout not in TASK_LAYOUTS[task]:
        choices = ", ".join(("auto",) + TASK_LAYOUTS[task])
        raise DatasetError(f"layout {layout!r} is not valid for task {task!r}: choose one of {choices}")
    return LAYOUTS[layout]


def detect_layout(task: str, folder: Path) -> str | None:
    """
    The name of the one layout of ``task`` present in ``folder``, or None when there is none.

    Raises:
        DatasetError: when several layouts are present, since reading either would be a guess.
    """
    _check_task(task)
    present = [name for name in TASK_LAYOUTS[task] if LAYOUTS[name].present(folder)]
    if len(present) > 1:
        raise DatasetError(
            f"{folder} holds several dataset layouts ({', '.join(present)}): pass layout= to choose one"
        )
    return present[0] if present else None
