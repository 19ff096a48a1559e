"""
Records of a pruning run: the history of rows (JSON/CSV, checkpoint-safe), TensorBoard scalars and PNG plots.

Generic on purpose: the Sauron and TaylorFO handlers write the same kind of rows, so both share these writers.
"""

from __future__ import annotations

from .atomic_file import atomic_write_bytes, atomic_write_text
from .history import PruningHistory, flatten_row, to_plain_data
from .plots import plot_channel_history, plot_prediction_overlay, plot_pruning_curve
from .tensorboard import scalar_entries, write_scalars

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "PruningHistory",
    "flatten_row",
    "to_plain_data",
    "plot_channel_history",
    "plot_pruning_curve",
    "plot_prediction_overlay",
    "scalar_entries",
    "write_scalars",
]
