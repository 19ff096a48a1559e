"""
Paired per-case comparison of two models' test scores over several training seeds, with a bootstrap interval.

A pruned model's Dice is compared with a reference trained with the same seed (the baseline trained as long), case
by case, so the variation between test cases, which is much larger than any pruning effect, cancels. Each case's
difference is averaged over seeds; the interval comes from a crossed bootstrap that resamples seeds and cases
together (the same resampled cases in every resampled seed), so both sources of noise widen it: the seed changes what
is learned, and the test set is one draw of cases.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "PairedDifference",
    "read_case_scores",
    "undefined_cells",
    "paired_differences",
    "crossed_bootstrap",
    "paired_interval",
    "group_means",
]


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference (method - reference) and its two-sided bootstrap interval, in the score's units."""

    mean: float
    low: float
    high: float
    confidence: float
    seeds: int
    cases: int

    def excludes_zero(self) -> bool:
        """True when the interval lies entirely above or entirely below 0: a measurable difference."""
        return self.low > 0.0 or self.high < 0.0

    def record(self) -> dict[str, float | int | bool]:
        """Plain data for a benchmark's JSON: the fields and ``excludes_zero`` (one schema for every report)."""
        return {**asdict(self), "excludes_zero": self.excludes_zero()}


def _case_rows(csv_path: str | os.PathLike, columns: Sequence[str] | None) -> tuple[list[str], dict[str, list[float]]]:
    """The score columns read (``columns``, or those whose name holds ``dice``) and each case's values in them."""
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0]) if rows else []
    chosen = list(columns) if columns is not None else [name for name in header if "dice" in name]
    missing = [name for name in chosen if name not in header]
    if not chosen or missing:
        raise ValueError(f"{csv_path}: no column {missing or '*dice*'} among {header}")
    values: dict[str, list[float]] = {}
    for row in rows:
        case = row["case"]
        if case == "mean":
            continue
        if case in values:
            raise ValueError(f"{csv_path}: case {case!r} appears twice")
        try:
            values[case] = [float(row[name]) for name in chosen]
        except ValueError:
            raise ValueError(f"{csv_path}: case {case!r} has a non-numeric score in {chosen}") from None
    return chosen, values


def read_case_scores(
    csv_path: str | os.PathLike, columns: Sequence[str] | None = None, undefined: str = "refuse"
) -> dict[str, float]:
    """
    Per-case scores from a ``CaseMetricsReport`` CSV: the mean of the columns whose name holds ``dice`` (one per
    class, e.g. ``test_mean_dice_polyp``), or of ``columns``, per row; the final ``mean`` row left out.

    ``undefined`` says what a NaN does (a metric undefined for that case: MONAI's ``DiceMetric`` with
    ``ignore_empty=True``, the 3D bundles' setting, gives NaN for a class absent from the case's ground truth, e.g. a
    phantom without a tumour): ``"refuse"`` raises, since a paired comparison must not silently drop cases;
    ``"omit"`` averages the case's defined columns only, as MONAI's own mean leaves NaN out (pair such scores only
    with a reference whose undefined cells are the same, :func:`undefined_cells`).

    Raises:
        ValueError: the file has no such column, a case appears twice, or a value is not a number; a NaN with
            ``undefined="refuse"``, or a case whose every column is NaN.
    """
    if undefined not in ("refuse", "omit"):
        raise ValueError(f"read_case_scores: undefined must be 'refuse' or 'omit', got {undefined!r}")
    chosen, rows = _case_rows(csv_path, columns)
    scores: dict[str, float] = {}
    for case, values in rows.items():
        defined = [v for v in values if not math.isnan(v)]
        if len(defined) < len(values) and (undefined == "refuse" or not defined):
            raise ValueError(f"{csv_path}: case {case!r} has an undefined (NaN) score in {chosen}")
        scores[case] = float(np.mean(defined))
    return scores


def undefined_cells(csv_path: str | os.PathLike, columns: Sequence[str] | None = None) -> set[tuple[str, str]]:
    """The ``(case, column)`` cells of :func:`read_case_scores`'s columns that hold NaN."""
    chosen, rows = _case_rows(csv_path, columns)
    return {(case, name) for case, values in rows.items() for name, v in zip(chosen, values) if math.isnan(v)}


def paired_differences(method: Mapping[str, float], reference: Mapping[str, float]) -> tuple[list[str], np.ndarray]:
    """
    ``method[case] - reference[case]`` for every case, in sorted case order.

    Raises:
        ValueError: the two models were evaluated on different cases (a paired difference needs the same ones).
    """
    if set(method) != set(reference):
        only_method = sorted(set(method) - set(reference))[:3]
        only_reference = sorted(set(reference) - set(method))[:3]
        raise ValueError(
            f"paired comparison on different cases: only in the method {only_method}, only in the reference "
            f"{only_reference}"
        )
    cases = sorted(method)
    return cases, np.array([method[c] - reference[c] for c in cases], dtype=np.float64)


def crossed_bootstrap(
    differences: np.ndarray, resamples: int = 10000, confidence: float = 0.95, seed: int = 0
) -> PairedDifference:
    """
    Mean of a ``(seeds, cases)`` array of paired differences and its percentile bootstrap interval.

    Each resample draws seeds with replacement and, independently, cases with replacement, and averages the
    differences of the drawn cases in the drawn seeds. With one seed only the cases are resampled (the interval then
    says nothing about the training seed).
    """
    values = np.asarray(differences, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1 or values.shape[1] < 2:
        raise ValueError(f"crossed_bootstrap: expected a (seeds, cases >= 2) array, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError("crossed_bootstrap: the differences hold NaN or infinite values")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"crossed_bootstrap: confidence must lie in (0, 1), got {confidence}")
    seeds, cases = values.shape
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, seeds, seeds) if seeds > 1 else np.zeros(1, dtype=int)
        cols = rng.integers(0, cases, cases)
        means[i] = values[np.ix_(rows, cols)].mean()
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return PairedDifference(float(values.mean()), float(low), float(high), confidence, seeds, cases)


def paired_interval(
    pairs: Sequence[tuple[Mapping[str, float], Mapping[str, float]]], resamples: int = 10000
) -> PairedDifference:
    """
    ``method - other`` case by case over several seeds, one ``(method scores, other scores)`` pair per seed (each
    pair on the same cases, every pair on the same cases in the same order), with the crossed bootstrap interval.
    """
    if not pairs:
        raise ValueError("paired_interval: no seed holds both models")
    return crossed_bootstrap(np.stack([paired_differences(mine, other)[1] for mine, other in pairs]), resamples)


def group_means(scores: Mapping[str, float], groups: Mapping[str, str]) -> dict[str, float]:
    """Mean score per group (e.g. per PolypGen centre), groups in sorted order; every case needs a group."""
    missing = sorted(set(scores) - set(groups))[:3]
    if missing:
        raise ValueError(f"group_means: no group for cases {missing}")
    members: dict[str, list[float]] = {}
    for case, value in scores.items():
        members.setdefault(groups[case], []).append(value)
    return {name: float(np.mean(members[name])) for name in sorted(members)}
