"""
Case-level training/validation/test splits that depend only on the seed and the case ids, and their JSON file.

Cases are ordered by a hash of ``(seed, case id)`` rather than by shuffling a list, so the split does not depend on
the order in which a file system lists the cases, and adding a case to a dataset moves only that case (plus the few
needed to keep the fractions) instead of reshuffling every split.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path

from monai_pruning.data.errors import DatasetError
from monai_pruning.data.file_checks import write_json_atomic
from monai_pruning.data.file_pairing import natural_key, summarise_names

__all__ = [
    "SPLIT_NAMES",
    "SPLIT_FILE_NAME",
    "check_fractions",
    "check_split_for_processes",
    "split_cases",
    "load_split",
    "save_split",
]

SPLIT_NAMES = ("training", "validation", "test")
SPLIT_FILE_NAME = "split.json"


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Both fractions in [0, 1) and leaving something for training; zero means that split is deliberately empty."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise DatasetError(f"{name} must be a number in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1.0:
        raise DatasetError(
            f"val_fraction + test_fraction must be below 1 to leave training cases, got {val_fraction} + "
            f"{test_fraction}"
        )


def check_split_for_processes(split: dict[str, list[str]], processes: int) -> None:
    """
    Refuse a validation split with fewer cases than the processes of a ``torchrun`` job, before any training: each
    process validates its own share (``DistributedSampler``), and one without a case has nothing to validate.
    """
    cases = len(split.get("validation", []))
    if processes > 1 and 0 < cases < processes:
        raise DatasetError(
            f"the validation split has {cases} case(s) for {processes} processes; every process needs one: raise "
            "val_fraction (or demo_cases) or start fewer processes"
        )


def _count(num_cases: int, fraction: float) -> int:
    """Cases for a split: the rounded share, but at least one whenever the fraction is not zero."""
    return 0 if fraction == 0 else max(1, math.floor(num_cases * fraction + 0.5))


def _rank(seed: int, case: str) -> str:
    return hashlib.sha256(f"{seed}\x00{case}".encode()).hexdigest()


def split_cases(cases: Sequence[str], seed: int, val_fraction: float, test_fraction: float) -> dict[str, list[str]]:
    """
    Split case ids into ``{"training": [...], "validation": [...], "test": [...]}``.

    The same ``seed`` and the same set of case ids always give the same split, in any input order. Validation and test
    hold the rounded fraction of the cases, at least one each when their fraction is above zero; training takes the
    rest. Each list is in natural case order.

    Raises:
        DatasetError: duplicate case ids, bad fractions, or a split left empty (naming it, the number of cases and the
            fractions).
    """
    check_fractions(val_fraction, test_fraction)
    unique = set(cases)
    if len(unique) != len(cases):
        duplicates = sorted({c for c in cases if list(cases).count(c) > 1}, key=natural_key)
        raise DatasetError(f"case ids must be unique to split by case, repeated: {summarise_names(duplicates)}")
    ordered = sorted(unique, key=lambda case: _rank(seed, case))
    n_test, n_val = _count(len(ordered), test_fraction), _count(len(ordered), val_fraction)
    split = {
        "test": ordered[:n_test],
        "validation": ordered[n_test : n_test + n_val],
        "training": ordered[n_test + n_val :],
    }
    wanted = {"training": True, "validation": val_fraction > 0, "test": test_fraction > 0}
    for name in SPLIT_NAMES:
        if wanted[name] and not split[name]:
            raise DatasetError(
                f"the {name} split is empty: {len(ordered)} cases with val_fraction={val_fraction}, "
                f"test_fraction={test_fraction}; add cases or lower the fractions"
            )
    return {name: sorted(split[name], key=natural_key) for name in SPLIT_NAMES}


def load_split(path: Path, available: Sequence[str]) -> dict[str, list[str]]:
    """
    Read a split saved by :func:`save_split` and check it against the cases now ``available``.

    Raises:
        DatasetError: unreadable or malformed file, or one naming cases that are not available (a resumed run must train
            on the same cases, so a silent substitute would be wrong).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read split file {path}: {exc}; delete it to make a new split") from None
    if not isinstance(data, dict) or not all(
        isinstance(data.get(name), list) and all(isinstance(c, str) for c in data[name]) for name in SPLIT_NAMES
    ):
        raise DatasetError(f"split file {path} lacks the lists {', '.join(SPLIT_NAMES)}; delete it to make a new split")
    present = set(available)
    missing = [case for name in SPLIT_NAMES for case in data[name] if case not in present]
    if missing:
        raise DatasetError(
            f"split file {path} names cases that are not in the dataset: {summarise_names(missing)}; point dataset_dir "
            f"at the dataset it was made for, or delete the file (or choose another output_dir) to make a new split"
        )
    return {name: list(data[name]) for name in SPLIT_NAMES}


def save_split(path: Path, split: dict[str, list[str]], details: dict) -> None:
    """Write ``split`` with ``details`` (seed, fractions, layout, dataset folder) for a human reader; atomic."""
    write_json_atomic(path, {**details, **{name: list(split[name]) for name in SPLIT_NAMES}})
