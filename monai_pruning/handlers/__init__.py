"""PyTorch-Ignite event handlers: pruning methods, atomic checkpoints and per-case evaluation reports."""

from monai_pruning.handlers.atomic_checkpoint_saver import AtomicCheckpointSaver
from monai_pruning.handlers.case_metrics_report import CaseMetricsReport

__all__ = ["AtomicCheckpointSaver", "CaseMetricsReport"]
