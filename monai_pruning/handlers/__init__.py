"""PyTorch-Ignite event handlers: the pruning methods, atomic checkpoints, per-case evaluation reports, one progress
line per epoch, the training data stream reseeded from (seed, epoch) at every epoch, and a DistributedDataParallel
wrapper kept current after a pruned checkpoint is loaded."""

from monai_pruning.handlers.atomic_checkpoint_saver import AtomicCheckpointSaver
from monai_pruning.handlers.case_metrics_report import CaseMetricsReport
from monai_pruning.handlers.cpu_autocast import CpuAutocast
from monai_pruning.handlers.epoch_progress import EpochProgress
from monai_pruning.handlers.epoch_seeded_data import EpochSeededData
from monai_pruning.handlers.feature_map_comparison import networks_from_checkpoints, write_feature_map_comparison
from monai_pruning.handlers.feature_map_export import FeatureMapExport
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.one_shot_curve import evaluator_metric_fn, one_shot_curve
from monai_pruning.handlers.pruning_base import PruningHandlerBase, PruningHandlerError
from monai_pruning.handlers.reinitialise_network import ReinitialiseNetwork
from monai_pruning.handlers.resume_checkpoint_loader import ResumeCheckpointLoader
from monai_pruning.handlers.rewrap_reshaped_network import RewrapReshapedNetwork
from monai_pruning.handlers.sauron_pruning import SauronPruning
from monai_pruning.handlers.taylorfo_pruning import TaylorFOPruning
from monai_pruning.handlers.taylorfo_scoring import score_channels

__all__ = [
    "AtomicCheckpointSaver",
    "CaseMetricsReport",
    "CpuAutocast",
    "EpochProgress",
    "EpochSeededData",
    "FeatureMapExport",
    "FeatureTaps",
    "PruningHandlerBase",
    "PruningHandlerError",
    "ReinitialiseNetwork",
    "ResumeCheckpointLoader",
    "RewrapReshapedNetwork",
    "SauronPruning",
    "TaylorFOPruning",
    "evaluator_metric_fn",
    "networks_from_checkpoints",
    "one_shot_curve",
    "score_channels",
    "write_feature_map_comparison",
]
