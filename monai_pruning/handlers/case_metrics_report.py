"""A per-case table of evaluation metrics (one CSV row per image, plus the mean), written after an evaluator run."""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.utils import IgniteInfo
from monai.utils import ImageMetaKey as Key
from monai.utils import ensure_tuple, min_version, optional_import, string_list_all_gather

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
idist, _ = optional_import("ignite", IgniteInfo.OPT_IMPORT_VERSION, min_version, "distributed")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine")

__all__ = [
    "CaseMetricsReport",
    "case_ids_from_filenames",
    "column_means",
    "filenames_from_batch",
    "format_table",
]

MEAN_ROW_ID = "mean"


def _filename_of(item: Any, meta_dict: Mapping | None) -> Any:
    """The ``filename_or_obj`` of one image (or of a collated batch), from its MetaTensor or its ``*_meta_dict``."""
    if isinstance(item, MetaTensor):
        return item.meta.get(Key.FILENAME_OR_OBJ)
    if isinstance(meta_dict, Mapping):
        return meta_dict.get(Key.FILENAME_OR_OBJ)
    return None


def _as_filename(value: Any) -> str | None:
    """One case's source as a string; images assembled from several files (one per modality) use the first."""
    if isinstance(value, (list, tuple)):
        value = value[0] if len(value) > 0 else None
    return value if isinstance(value, str) and value else None


def filenames_from_batch(batch: Any, image_key: str = "image", meta_key_postfix: str = "meta_dict") -> list[str | None]:
    """
    The source filename of every case in an engine's ``state.batch``, in batch order; None where it is unknown.

    Handles both layouts a MONAI engine produces: the collated dict of batch-first tensors (``decollate=False``) and
    the decollated list of per-case dicts (the default, after which ``Invertd`` and other post-transforms run).
    """
    meta_key = f"{image_key}_{meta_key_postfix}"
    if isinstance(batch, Mapping):
        if image_key not in batch:
            raise ValueError(
                f"CaseMetricsReport: the batch has no key '{image_key}' (keys: {list(batch)}); set image_key."
            )
        item = batch[image_key]
        size = len(item) if hasattr(item, "__len__") else 1
        names = _filename_of(item, batch.get(meta_key))
        if isinstance(names, (list, tuple)) and len(names) == size:
            return [_as_filename(n) for n in names]
        return [_as_filename(names)] * size if size == 1 else [None] * size
    if isinstance(batch, Sequence) and not isinstance(batch, str):
        filenames: list[str | None] = []
        for case in batch:
            if not isinstance(case, Mapping) or image_key not in case:
                keys = list(case) if isinstance(case, Mapping) else type(case).__name__
                raise ValueError(f"CaseMetricsReport: a batch item has no key '{image_key}' ({keys}); set image_key.")
            filenames.append(_as_filename(_filename_of(case[image_key], case.get(meta_key))))
        return filenames
    raise ValueError(f"CaseMetricsReport: cannot read filenames from a batch of type {type(batch).__name__}.")


def _strip_extension(name: str) -> str:
    """``BRATS_001.nii.gz`` -> ``BRATS_001``, ``cju0qkwl35piu0993l0dewei2.jpg`` -> ``cju0qkwl35piu0993l0dewei2``."""
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, _ = os.path.splitext(name)
    return stem or name


def case_ids_from_filenames(filenames: Sequence[str | None]) -> list[str]:
    """
    Short, unique case ids from image paths: the file name without extension, lengthened with parent folders only
    where that is needed to tell cases apart.

    Kvasir-SEG and MSD name each file after its case (``images/cju0q....jpg``, ``imagesTr/BRATS_001.nii.gz``), but
    KiTS names every file ``imaging.nii.gz`` inside a ``case_00000/`` folder; those become ``case_00000/imaging``.
    Unknown filenames (None) become ``case_<position>``. The same file listed twice keeps the same id.
    """
    parts_per_case: list[list[str]] = []
    for position, filename in enumerate(filenames):
        if filename is None:
            parts_per_case.append([f"case_{position:04d}"])
            continue
        parts = [p for p in filename.replace("\\", "/").split("/") if p]
        parts = parts or [filename]
        parts[-1] = _strip_extension(parts[-1])
        parts_per_case.append(parts)
    depth = [1] * len(parts_per_case)
    while True:
        ids = ["/".join(parts[-d:]) for parts, d in zip(parts_per_case, depth)]
        groups: dict[str, list[int]] = {}
        for position, case_id in enumerate(ids):
            groups.setdefault(case_id, []).append(position)
        lengthened = False
        for members in groups.values():
            distinct_paths = {tuple(parts_per_case[m]) for m in members}
            if len(distinct_paths) < 2:
                continue
            for m in members:
                if depth[m] < len(parts_per_case[m]):
                    depth[m] += 1
                    lengthened = True
        if not lengthened:
            return ids


def column_means(values: np.ndarray) -> np.ndarray:
    """
    Mean of each column over cases, skipping NaN.

    MONAI reports NaN where a metric is undefined for a case (e.g. Dice with an empty ground truth and
    ``ignore_empty=True``), and the aggregated ``MeanDice`` skips those too; an infinite Hausdorff distance (a class
    missing from the prediction) is a real failure and keeps the mean infinite. A column with no finite-or-infinite
    value at all gives NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"column_means: expected a 2D (cases, columns) array, got shape {values.shape}.")
    means = np.full(values.shape[1], np.nan)
    for column in range(values.shape[1]):
        defined = values[:, column][~np.isnan(values[:, column])]
        if defined.size > 0:
            means[column] = defined.mean()
    return means


def _format_number(value: float, decimals: int) -> str:
    return f"{value:.{decimals}f}" if math.isfinite(value) else str(value)


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]], decimals: int = 4) -> str:
    """A fixed-width text table for the log: first column left-aligned (case ids), numbers right-aligned."""
    cells = [[str(h) for h in header]]
    for row in rows:
        cells.append([str(row[0])] + [_format_number(float(v), decimals) for v in row[1:]])
    widths = [max(len(line[c]) for line in cells) for c in range(len(header))]
    lines = []
    for line in cells:
        first = line[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        lines.append("  ".join([first] + rest))
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _details_as_array(metric_name: str, details: Any) -> np.ndarray:
    """A metric's per-case details as a float64 (cases, classes) array."""
    if isinstance(details, (list, tuple)):
        details = torch.stack([torch.as_tensor(d) for d in details]) if details else torch.zeros(0, 0)
    array = details.detach().cpu().numpy() if isinstance(details, torch.Tensor) else np.asarray(details)
    array = array.astype(np.float64)
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2:
        raise ValueError(
            f"CaseMetricsReport: details of metric '{metric_name}' have shape {array.shape}; expected (cases, classes)."
        )
    return array


class CaseMetricsReport:
    """
    Write a CSV with one row per evaluated case (Dice, Hausdorff distance, ... per class) and a final mean row, and
    log the same table as text.

    The aggregate metrics an evaluator logs hide which cases fail; after pruning, a model whose mean Dice barely
    moved may have lost one small tumour entirely. This table is what a clinical collaborator checks case by case.

    The values come from ``engine.state.metric_details``, which MONAI's metric handlers (``MeanDice``,
    ``HausdorffDistance``, ``SurfaceDistance``, ...) fill when ``save_details=True`` (their default); the case ids
    come from the ``filename_or_obj`` metadata of each batch's image, collected at every ``ITERATION_COMPLETED``
    (see :py:func:`case_ids_from_filenames`). Columns are named ``<metric name>_<class name>``.

    In multi-GPU evaluation the filenames are gathered from all ranks (the details already are) and rank 0 writes.

    Args:
        output_dir: folder for the CSV file; created if needed.
        filename: name of the CSV file inside ``output_dir``.
        metric_names: names of the attached metrics to report, in column order; None reports every metric that saved
            details, in the order the evaluator registered them (key metric first).
        class_names: names of the class channels of the details, e.g. ``["kidney", "tumor"]``; None names them
            ``class1``, ``class2``, ... which matches metrics computed with ``include_background=False``.
        image_key: key of the image in the batch, whose metadata holds the filename.
        decimals: decimal places in the logged table (the CSV keeps full precision).
        name: identifier of the ``logging.Logger`` to use; None uses ``engine.logger``.

    Example (``evaluate.json``, next to ``MeanDice`` and ``HausdorffDistance(percentile=95)`` metrics)::

        "validate#handlers": [
            ...,
            {
                "_target_": "monai_pruning.handlers.case_metrics_report.CaseMetricsReport",
                "output_dir": "@output_dir",
                "filename": "case_metrics.csv",
                "metric_names": ["val_mean_dice", "val_hd95"],
                "class_names": ["kidney", "tumor"]
            }
        ]

    """

    def __init__(
        self,
        output_dir: str = "./eval",
        filename: str = "case_metrics.csv",
        metric_names: str | Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        image_key: str = "image",
        decimals: int = 4,
        name: str | None = None,
    ) -> None:
        if not isinstance(filename, str) or not filename.strip():
            raise ValueError(f"CaseMetricsReport: filename must be a non-empty string, got {filename!r}.")
        if isinstance(class_names, str):
            raise ValueError(f"CaseMetricsReport: class_names must be a list of names, got the string {class_names!r}.")
        if class_names is not None and len(set(class_names)) != len(class_names):
            raise ValueError(f"CaseMetricsReport: class_names must be unique, got {list(class_names)}.")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
            raise ValueError(f"CaseMetricsReport: decimals must be a non-negative int, got {decimals!r}.")
        self.output_dir = str(output_dir)
        self.filename = filename
        self.metric_names = list(ensure_tuple(metric_names)) if metric_names is not None else None
        self.class_names = [str(c) for c in class_names] if class_names is not None else None
        self.image_key = image_key
        self.decimals = decimals
        self.logger = logging.getLogger(name)
        self._name = name
        self._filenames: list[str | None] = []

    @property
    def output_path(self) -> str:
        """Full path of the CSV file."""
        return os.path.join(self.output_dir, self.filename)

    def attach(self, engine: Engine) -> None:
        """
        Args:
            engine: Ignite Engine, normally a ``SupervisedEvaluator``.
        """
        if self._name is None:
            self.logger = engine.logger
        if not engine.has_event_handler(self._reset, Events.EPOCH_STARTED):
            engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        if not engine.has_event_handler(self._collect_filenames, Events.ITERATION_COMPLETED):
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect_filenames)
        if not engine.has_event_handler(self, Events.EPOCH_COMPLETED):
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _reset(self, _engine: Engine) -> None:
        self._filenames = []

    def _collect_filenames(self, engine: Engine) -> None:
        self._filenames.extend(filenames_from_batch(engine.state.batch, self.image_key))

    def _selected_details(self, engine: Engine) -> dict[str, np.ndarray]:
        available = dict(getattr(engine.state, "metric_details", None) or {})
        if not available:
            raise ValueError(
                "CaseMetricsReport: the engine has no per-case metric details; attach metrics such as MeanDice or "
                "HausdorffDistance with save_details=True."
            )
        names = self.metric_names if self.metric_names is not None else list(available)
        missing = [n for n in names if n not in available]
        if missing:
            raise ValueError(
                f"CaseMetricsReport: metric_names {missing} have no per-case details; available: {list(available)}."
            )
        return {n: _details_as_array(n, available[n]) for n in names}

    def _class_labels(self, metric_name: str, num_classes: int) -> list[str]:
        if self.class_names is None:
            return [f"class{c + 1}" for c in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(
                f"CaseMetricsReport: class_names {self.class_names} has {len(self.class_names)} names but metric "
                f"'{metric_name}' has {num_classes} class channels."
            )
        return self.class_names

    def build_table(self, engine: Engine, filenames: Sequence[str | None]) -> tuple[list[str], list[list[Any]]]:
        """
        The report as ``(header, rows)``: one row per case, ``[case id, values...]``, then the mean row.

        Args:
            engine: the engine whose ``state.metric_details`` holds the per-case values.
            filenames: the source filename of every case, in the order the metrics saw them.
        """
        details = self._selected_details(engine)
        header = ["case"]
        columns = []
        for metric_name, values in details.items():
            if values.shape[0] != len(filenames):
                raise ValueError(
                    f"CaseMetricsReport: metric '{metric_name}' has {values.shape[0]} cases but {len(filenames)} "
                    f"image filenames were collected from key '{self.image_key}'."
                )
            header.extend(f"{metric_name}_{label}" for label in self._class_labels(metric_name, values.shape[1]))
            columns.append(values)
        table = np.concatenate(columns, axis=1) if columns else np.zeros((len(filenames), 0))
        rows: list[list[Any]] = [
            [case_id] + [float(v) for v in values] for case_id, values in zip(case_ids_from_filenames(filenames), table)
        ]
        rows.append([MEAN_ROW_ID] + [float(v) for v in column_means(table)])
        return header, rows

    def __call__(self, engine: Engine) -> None:
        """
        Args:
            engine: Ignite Engine, normally a ``SupervisedEvaluator``, at the end of its epoch.
        """
        world_size = idist.get_world_size()
        filenames = self._filenames
        if world_size > 1:
            gathered = string_list_all_gather(strings=[f or "" for f in self._filenames])
            filenames = [f or None for f in gathered]
        header, rows = self.build_table(engine, filenames)
        if idist.get_rank() != 0:
            return
        os.makedirs(self.output_dir, exist_ok=True)
        with open(self.output_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(rows)
        self.logger.info(
            f"per-case metrics of {len(rows) - 1} cases written to {self.output_path}:\n"
            + format_table(header, rows, self.decimals)
        )
