"""
The record of a pruning run: one plain-data row per pruning step (or per epoch), in the order they happened.

The record is generic so that the Sauron and TaylorFO handlers share it: a row is any JSON-able mapping, typically
``{"epoch": 3, "iteration": 120, "params": 1_190_000, "macs": 2.1e9, "time_s": 41.0,
"widths": {"encoder.0": 12, ...}, "thresholds": {...}, "dice": 0.83}``. Rows are converted to plain Python data on
entry (NumPy scalars and one-element tensors become numbers, tuples become lists), so :meth:`PruningHistory.state_dict`
can sit in a checkpoint that is loaded with ``torch.load(weights_only=True)``.

Files are written atomically: a run killed while writing leaves the previous file intact.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_pruning.report.atomic_file import atomic_write_text

__all__ = ["PruningHistory", "to_plain_data", "flatten_row", "cut_score_summary"]

#: separator between a nested dict's key and its entries in flattened column names, e.g. ``widths/encoder.0``
KEY_SEPARATOR = "/"


def to_plain_data(value: Any, where: str = "row") -> Any:
    """
    ``value`` converted to JSON-able plain Python data (dict with str keys, list, str, int, float, bool, None).

    NumPy scalars, 0-d arrays and one-element tensors become Python numbers; tuples become lists; mappings become
    dicts. Anything else is refused, because it could not be written to JSON or loaded with ``weights_only=True``.

    Args:
        value: the data to convert.
        where: how to name ``value`` in an error message, e.g. ``"row"``; nested keys are appended to it.

    Raises:
        ValueError: naming the offending entry, e.g. ``row['widths'][3]``.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        count = value.size if isinstance(value, np.ndarray) else value.numel()
        if count == 1:
            return to_plain_data(value.item(), where)
        raise ValueError(f"{where} is an array of shape {tuple(value.shape)}; only single numbers can be recorded.")
    if isinstance(value, Mapping):
        plain = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-string key {key!r}; JSON keys must be strings.")
            plain[key] = to_plain_data(item, f"{where}[{key!r}]")
        return plain
    if isinstance(value, (list, tuple)):
        return [to_plain_data(item, f"{where}[{index}]") for index, item in enumerate(value)]
    raise ValueError(f"{where} is a {type(value).__name__}, which is not plain JSON-able data.")


def flatten_row(row: Mapping[str, Any], separator: str = KEY_SEPARATOR) -> dict[str, Any]:
    """
    One level of keys for a (nested) row: ``{"widths": {"enc.0": 12}}`` becomes ``{"widths/enc.0": 12}``.

    Lists are kept as values. Used for CSV columns and TensorBoard tags.

    Raises:
        ValueError: two entries flatten to the same name, e.g. ``{"widths/a": 1, "widths": {"a": 2}}``.
    """
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, item in value.items():
                visit(f"{prefix}{separator}{key}" if prefix else str(key), item)
            return
        if prefix in flat:
            raise ValueError(f"flatten_row: two entries of the row both flatten to the column {prefix!r}.")
        flat[prefix] = value

    for key, value in row.items():
        visit(str(key), value)
    return flat


def cut_score_summary(scores: Any, removed: Sequence[int], exclude: Sequence[int] = ()) -> dict[str, Any]:
    """
    What a criterion thought of the channels one cut removed, against those it kept: a history row entry for a
    group, plain data, flattened by the CSV and TensorBoard writers into ``<key>/<group>/<field>`` columns.

    Args:
        scores: ``(C,)`` scores of the group's channels before the cut, low meaning removable (Sauron: delta_prune
            relative to tau; TaylorFO: the importance it ranked by).
        removed: indices of the channels the cut removed.
        exclude: channels to leave out of the kept ones (Sauron's reference channel, which scores 0 by definition).

    Returns:
        ``{"removed": count, "removed_median", "removed_max", "kept_min", "kept_median"}``; a statistic over no
        finite score is None (non-finite scores, e.g. TaylorFO's ``inf`` for a group whose channels cost nothing,
        are left out of the statistics).
    """
    where = "cut_score_summary"
    if isinstance(scores, torch.Tensor):
        scores = scores.detach().double().cpu().numpy()
    values = np.asarray(scores, dtype=np.float64).reshape(-1)
    taken = sorted({int(c) for c in removed})
    if any(not 0 <= c < values.size for c in taken):
        raise ValueError(f"{where}: removed channels {taken} out of range for {values.size} scores.")
    skipped = set(taken) | {int(c) for c in exclude}
    gone = values[taken]
    stayed = values[[c for c in range(values.size) if c not in skipped]]
    gone, stayed = gone[np.isfinite(gone)], stayed[np.isfinite(stayed)]

    def statistic(selected: np.ndarray, reduce: Callable[[np.ndarray], Any]) -> float | None:
        return float(reduce(selected)) if selected.size else None

    return {
        "removed": len(taken),
        "removed_median": statistic(gone, np.median),
        "removed_max": statistic(gone, np.max),
        "kept_min": statistic(stayed, np.min),
        "kept_median": statistic(stayed, np.median),
    }


def _csv_cell(value: Any) -> Any:
    """A flattened value as a CSV cell: lists as JSON text, None as an empty cell, NaN as ``nan``."""
    if value is None:
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return value


class PruningHistory:
    """
    Append-only list of plain-data rows describing a pruning run.

    Args:
        rows: initial rows (e.g. from a previous run that is being resumed).

    Example::

        history = PruningHistory()
        history.append({"epoch": 1, "macs": 2.0e9, "widths": {"encoder.0": 16}})
        history.write_json("runs/history.json")
        history.write_csv("runs/history.csv")   # columns: epoch, macs, widths/encoder.0
    """

    def __init__(self, rows: Iterable[Mapping[str, Any]] = ()) -> None:
        self._rows: list[dict[str, Any]] = []
        for row in rows:
            self.append(row)

    def append(self, row: Mapping[str, Any]) -> None:
        """
        Add a row at the end; it is copied and converted to plain data (see :func:`to_plain_data`).

        Raises:
            ValueError: ``row`` is not a mapping, or holds something that is not plain JSON-able data.
        """
        if not isinstance(row, Mapping):
            raise ValueError(f"PruningHistory.append: a row must be a mapping (dict), got {type(row).__name__}.")
        self._rows.append(to_plain_data(row, f"row {len(self._rows)}"))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """A copy of the rows, oldest first (changing it does not change the history)."""
        return copy.deepcopy(self._rows)

    def last(self) -> dict[str, Any] | None:
        """A copy of the newest row, None when there is none: what per-epoch code needs, without copying them all."""
        return copy.deepcopy(self._rows[-1]) if self._rows else None

    def first(self, predicate: Callable[[Mapping[str, Any]], bool]) -> dict[str, Any] | None:
        """
        A copy of the oldest row for which ``predicate`` is true, None when there is none; ``predicate`` sees the
        stored rows (it must not change them) so that a search over a long history copies only what it returns.
        """
        found = next((row for row in self._rows if predicate(row)), None)
        return copy.deepcopy(found) if found is not None else None

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows)

    def state_dict(self) -> dict[str, Any]:
        """Plain data (safe for ``torch.load(weights_only=True)``) from which :meth:`load_state_dict` restores."""
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """
        Replace the rows with those of ``state_dict`` (from :meth:`state_dict`), e.g. when resuming a run.

        Raises:
            ValueError: ``state_dict`` has no ``"rows"`` list of mappings.
        """
        rows = state_dict.get("rows") if isinstance(state_dict, Mapping) else None
        if not isinstance(rows, (list, tuple)):
            raise ValueError("PruningHistory.load_state_dict: expected a mapping with a 'rows' list.")
        restored = PruningHistory(rows)
        self._rows = restored._rows

    def write_json(self, path: str | os.PathLike) -> Path:
        """
        Write the rows as a JSON list of objects, atomically; returns the path.

        Non-finite floats are written as ``NaN``/``Infinity`` (as Python's json module does), which Python and
        pandas read back but strict JSON parsers refuse.
        """
        return atomic_write_text(path, json.dumps(self._rows, indent=2) + "\n", where="PruningHistory.write_json")

    def write_csv(self, path: str | os.PathLike) -> Path:
        """
        Write the rows as CSV, atomically; returns the path.

        Nested dicts become columns named ``<key>/<entry>`` (e.g. ``widths/encoder.0``). Columns are the union over
        all rows, in the order they first appear; a row without an entry has an empty cell (so does ``None``).
        Lists are written as JSON text in one cell.
        """
        flat_rows = [flatten_row(row) for row in self._rows]
        columns: dict[str, None] = {}
        for flat in flat_rows:
            columns.update(dict.fromkeys(flat))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
        writer.writeheader()
        for flat in flat_rows:
            writer.writerow({key: _csv_cell(value) for key, value in flat.items()})
        return atomic_write_text(path, buffer.getvalue(), where="PruningHistory.write_csv")

    @classmethod
    def read_json(cls, path: str | os.PathLike) -> PruningHistory:
        """
        A history read from a file written by :meth:`write_json`.

        Raises:
            ValueError: the file is missing, is not valid JSON, or is not a list of objects.
        """
        source = Path(path)
        if not source.is_file():
            raise ValueError(f"PruningHistory.read_json: file not found: {str(source)!r}.")
        try:
            rows = json.loads(source.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"PruningHistory.read_json: {str(source)!r} is not valid JSON ({err}).") from None
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise ValueError(f"PruningHistory.read_json: {str(source)!r} does not hold a JSON list of objects.")
        return cls(rows)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self._rows)} rows)"
