"""
TensorBoard scalars from a history row, so a pruning run's widths, MACs and thresholds appear next to the loss.

Only ``add_scalar(tag, value, step)`` is used, so any writer with that method works: torch's ``SummaryWriter``,
tensorboardX's, or a test double.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from monai_pruning.report.history import KEY_SEPARATOR, flatten_row

__all__ = ["scalar_entries", "write_scalars"]


def _scalar(value: Any) -> float | None:
    """``value`` as a float when it is a single number (bools excluded: they are flags, not curves), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        count = value.size if isinstance(value, np.ndarray) else value.numel()
        if count == 1:
            return _scalar(value.item())
    return None


def scalar_entries(row: Mapping[str, Any], prefix: str = "pruning") -> dict[str, float]:
    """
    The numeric entries of ``row`` as ``{tag: value}``, nested dicts flattened: ``{"widths": {"enc.0": 12}}`` gives
    ``{"pruning/widths/enc.0": 12.0}``.

    Strings, lists, None and bools are left out. NaN and infinite values are kept (TensorBoard shows them as gaps).
    """
    if not isinstance(row, Mapping):
        raise ValueError(f"write_scalars: a row must be a mapping (dict), got {type(row).__name__}.")
    entries = {}
    for name, value in flatten_row(row).items():
        number = _scalar(value)
        if number is not None:
            entries[f"{prefix}{KEY_SEPARATOR}{name}" if prefix else name] = number
    return entries


def write_scalars(writer: Any, row: Mapping[str, Any], step: int, prefix: str = "pruning") -> list[str]:
    """
    Write every numeric entry of a history row to ``writer`` at ``step``.

    Args:
        writer: object with ``add_scalar(tag, value, global_step)``, e.g. ``torch.utils.tensorboard.SummaryWriter``.
        row: a history row; nested dicts become tags ``<prefix>/<key>/<entry>``, e.g. ``pruning/widths/enc.0``.
        step: global step (e.g. the epoch or the iteration), an int >= 0.
        prefix: tag prefix grouping the scalars in TensorBoard ("" for none).

    Returns:
        The tags written, in row order.

    Raises:
        TypeError: ``writer`` has no ``add_scalar`` method.
        ValueError: ``row`` is not a mapping or ``step`` is not an int >= 0.
    """
    if not callable(getattr(writer, "add_scalar", None)):
        raise TypeError(f"write_scalars: writer must have an add_scalar method, got {type(writer).__name__}.")
    if isinstance(step, bool) or not isinstance(step, numbers.Integral) or step < 0:
        raise ValueError(f"write_scalars: step must be an int >= 0, got {step!r}.")
    entries = scalar_entries(row, prefix)
    for tag, value in entries.items():
        writer.add_scalar(tag, value, int(step))
    return list(entries)
