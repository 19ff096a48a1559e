"""
The one entry point the bundles call: find the task's dataset (or write the demo phantoms), check it, split it by
case, and return MONAI-style data lists.
"""

from __future__ import annotations

import logging
import numbers
import os
from pathlib import Path

from monai_pruning.data.brain_layouts import read_msd_metadata
from monai_pruning.data.demo_data import demo_folder_lock, is_phantom_dataset, write_demo_dataset
from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_checks import CHECK_CACHE_NAME, check_cases
from monai_pruning.data.file_pairing import summarise_names
from monai_pruning.data.layouts import LAYOUTS, TASK_DEMO_LAYOUT, TASK_LAYOUTS, detect_layout, layout_for
from monai_pruning.data.splits import (
    SPLIT_FILE_NAME,
    SPLIT_NAMES,
    check_fractions,
    check_split_for_processes,
    load_split,
    save_split,
    split_cases,
)
from monai_pruning.distributed import rank_zero_first, world_size

__all__ = ["prepare_task_data"]

logger = logging.getLogger(__name__)

_REAL_DATA_HINT = {
    "polyp": "the Kvasir-SEG folder (images/ + masks/), the CVC-ClinicDB folder or the PolypGen folder (data_Cn/)",
    "kidney": "the KiTS folder (case_XXXXX/imaging.nii.gz + segmentation.nii.gz)",
    "brain": "the Decathlon task folder (dataset.json) or the ATLAS v2.0 folder",
}


def _as_path(value: str | os.PathLike, argument: str) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise DatasetError(f"{argument} must be a folder path, got {value!r}")
    return Path(value).expanduser().resolve()


def _check_arguments(task: str, layout: str, seed: int, demo_cases: int | None) -> None:
    if task not in TASK_LAYOUTS:
        raise DatasetError(f"unknown task {task!r}: choose one of {', '.join(TASK_LAYOUTS)}")
    if layout != "auto":
        layout_for(task, layout)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise DatasetError(f"seed must be an integer, got {seed!r}")
    if demo_cases is not None and (
        isinstance(demo_cases, bool) or not isinstance(demo_cases, numbers.Integral) or demo_cases < 1
    ):
        raise DatasetError(f"demo_cases must be a positive integer or None, got {demo_cases!r}")


def _provide_demo(task: str, folder: Path, layout: str, demo_cases: int | None, seed: int) -> None:
    """Write the phantoms into the demo ``folder`` unless it already holds a dataset of ``task``."""
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"dataset_dir is not a folder: {folder}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the demo folder {folder}: {exc.strerror or exc}") from None
    with demo_folder_lock(folder):
        if detect_layout(task, folder) is not None:
            return
        demo_layout = TASK_DEMO_LAYOUT[task]
        if layout not in ("auto", demo_layout):
            raise DatasetError(
                f"dataset_dir {folder} holds no dataset, and demo phantoms exist only in the {demo_layout!r} layout, "
                f"not {layout!r}: point dataset_dir at {_REAL_DATA_HINT[task]}"
            )
        written = write_demo_dataset(task, folder, demo_layout, demo_cases, seed)
        logger.info("wrote %d synthetic %s phantom cases to %s", written, task, folder)


def _warn_synthetic(task: str, folder: Path) -> None:
    logger.warning(
        "*** SYNTHETIC DEMO DATA *** the %s images in %s are generated phantoms, not real scans; results on them say "
        "nothing about clinical performance. To train on real data, set dataset_dir to %s (e.g. --dataset_dir "
        "/data/your_dataset).",
        task,
        folder,
        _REAL_DATA_HINT[task],
    )


def _split(items: list[dict], output: Path | None, seed: int, fractions: tuple[float, float], details: dict):
    """The split, reused from ``output/split.json`` when that file exists, else made and saved there."""
    cases = [item["case"] for item in items]
    split_file = output / SPLIT_FILE_NAME if output is not None else None
    if split_file is not None and split_file.is_file():
        split = load_split(split_file, cases)
        used = {case for name in SPLIT_NAMES for case in split[name]}
        unused = [case for case in cases if case not in used]
        if unused:
            logger.warning(
                "reusing %s as is: the dataset's cases that it does not name are left out: %s",
                split_file,
                summarise_names(unused),
            )
        else:
            logger.info("reusing the case split in %s", split_file)
        return split, True
    split = split_cases(cases, seed, *fractions)
    if split_file is not None:
        settings = {"seed": seed, "val_fraction": fractions[0], "test_fraction": fractions[1]}
        save_split(split_file, split, {**details, **settings})
    return split, False


def prepare_task_data(
    task: str,
    dataset_dir: str,
    demo_dir: str | None = None,
    output_dir: str | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.2,
    demo_cases: int | None = None,
    layout: str = "auto",
) -> dict:
    """
    Find, check and split the dataset of ``task``; the bundles' single data entry point.

    Demo data: phantoms are written only when ``dataset_dir`` resolves to the same folder as ``demo_dir`` and that
    folder is missing or holds no dataset of the task, so a mistyped ``dataset_dir`` fails instead of silently
    training on phantoms. They are written in the task's real layout (polyp: Kvasir-SEG, kidney: KiTS, brain: MSD) and
    read back by the same reader as real data; whenever the data are phantoms a loud warning is logged.

    In a ``torch.distributed`` process group (``torchrun``, ``multi_gpu_train.json``) every rank must call it: rank 0
    writes the phantoms, the check cache and the split first, the others wait for it and then read them.

    Args:
        task: "polyp" (2-D endoscopy), "kidney" (3-D CT) or "brain" (3-D MR).
        dataset_dir: the dataset folder, as distributed (see :mod:`monai_pruning.data` for the accepted layouts).
        demo_dir: the bundle's demo-data folder, or None for no demo data.
        output_dir: where ``split.json`` and ``dataset_check.json`` are kept (created if needed); None keeps nothing,
            so every call checks every file and makes the split afresh.
        seed: seed of the split (and of newly written phantoms); the same seed and cases give the same split.
        val_fraction, test_fraction: shares of the cases for validation and test, in [0, 1); 0 leaves that split
            empty on purpose; otherwise each gets at least one case.
        demo_cases: number of phantom cases to write; default 80 (polyp), 24 (kidney, brain). Ignored when the demo
            folder already holds data.
        layout: "auto" (detected from the folder) or, for polyp, "kvasir" / "cvc_clinicdb" / "polypgen"; kidney "kits"; brain
            "msd" / "atlas".

    Returns:
        ``{"training": [...], "validation": [...], "test": [...], "info": {...}}``; the lists hold
        ``{"image": path, "label": path, "case": id}`` for ``LoadImaged(keys=["image", "label"])``; ``info`` holds
        ``task``, ``layout``, ``synthetic``, ``dataset_dir`` (resolved), ``num_cases``, ``modality`` and ``labels``
        (channel index / label value as str -> name, from dataset.json for MSD), ``seed``, ``split_file`` (str or
        None) and ``split_reused``.

    Raises:
        DatasetError: with a one-line message naming the path, case or argument: bad arguments, missing folder, no
            dataset (naming the layouts looked for), unpaired images or masks, unreadable files, image/mask shape
            mismatches, label values outside the layout's set, an empty split, a saved split naming missing cases, or
            (under ``torchrun``) fewer validation cases than processes.
    """
    # under torchrun every rank calls this: rank 0 writes the phantoms, the file check cache and the split, then
    # the other ranks read them (and raise the same one-line error if rank 0 did)
    with rank_zero_first():
        _check_arguments(task, layout, seed, demo_cases)
        fractions = (val_fraction, test_fraction)
        check_fractions(*fractions)
        root = _as_path(dataset_dir, "dataset_dir")
        demo = _as_path(demo_dir, "demo_dir") if demo_dir is not None else None
        output = _as_path(output_dir, "output_dir") if output_dir is not None else None

        if demo is not None and root == demo:
            _provide_demo(task, root, layout, demo_cases, seed)
        if not root.exists():
            hint = f" (demo phantoms are written only to demo_dir {demo})" if demo is not None else ""
            raise DatasetError(f"dataset_dir does not exist: {root}{hint}")
        if not root.is_dir():
            raise DatasetError(f"dataset_dir is not a folder: {root}")

        if layout == "auto":
            found = detect_layout(task, root)
            if found is None:
                looked_for = "; ".join(LAYOUTS[name].title for name in TASK_LAYOUTS[task])
                raise DatasetError(f"no {task} dataset in {root}: looked for {looked_for}")
            layout = found
        spec = LAYOUTS[layout]
        items = spec.read(root)
        labels, modality, checked = dict(spec.labels), dict(spec.modality), spec.checked_values
        if layout == "msd":
            meta = read_msd_metadata(root)
            labels, modality = meta["labels"], meta["modality"]
            checked = frozenset(int(key) for key in labels)
        # The marker sits in the folder the phantoms were written to; dataset_dir may be that folder's parent.
        synthetic = is_phantom_dataset(root) or is_phantom_dataset(Path(items[0]["image"]).parents[1])
        if synthetic:
            _warn_synthetic(task, root)

        if output is not None:
            output.mkdir(parents=True, exist_ok=True)
        check_cases(items, checked, output / CHECK_CACHE_NAME if output is not None else None)
        details = {"task": task, "layout": layout, "dataset_dir": str(root)}
        split, reused = _split(items, output, int(seed), fractions, details)
        check_split_for_processes(split, world_size())
        by_case = {item["case"]: item for item in items}
        result: dict = {name: [dict(by_case[case]) for case in split[name]] for name in SPLIT_NAMES}
        result["info"] = {
            **details,
            "synthetic": bool(synthetic),
            "num_cases": len(items),
            "modality": modality,
            "labels": labels,
            "seed": int(seed),
            "split_file": str(output / SPLIT_FILE_NAME) if output is not None else None,
            "split_reused": reused,
        }
        return result
