"""
Pure maths of the pruning methods: no engines, no hooks, no networks.

``sauron`` holds the Sauron distances (delta_opt, delta_prune) and its threshold schedule; ``taylor`` holds the
TaylorFO importance scores and the global selection of channels to remove; ``channel_cost`` holds what one channel of
each group costs in MACs, to rank by importance per MAC; ``weight_gradient`` holds the |weight x gradient| importance
of Torch-Pruning's GroupTaylor on our channel graph (the benchmark's fallback peer criterion).
"""

from __future__ import annotations

from .channel_cost import cost_normalize, macs_per_channel
from .sauron import (
    DeltaPruneAccumulator,
    ThresholdSchedule,
    channels_to_cut,
    check_clip_fraction,
    delta_opt,
    delta_opt_and_pooled,
    delta_opt_penalty,
    delta_prune,
    mean_layer_distance,
    most_redundant_within_cost,
)
from .sauron_compiled import CompiledSauronTerms
from .taylor import (
    REDUCTION_MODES,
    PerSampleLoss,
    TaylorAccumulator,
    fraction_to_count,
    layerwise_l2_normalize,
    normalize_output_gradient,
    normalize_output_gradients,
    reduce_contributions,
    select_global_lowest,
    taylor_channel_contributions,
)
from .weight_gradient import weight_gradient_importance

__all__ = [
    "cost_normalize",
    "macs_per_channel",
    "CompiledSauronTerms",
    "DeltaPruneAccumulator",
    "ThresholdSchedule",
    "channels_to_cut",
    "check_clip_fraction",
    "delta_opt",
    "delta_opt_and_pooled",
    "delta_opt_penalty",
    "delta_prune",
    "mean_layer_distance",
    "most_redundant_within_cost",
    "REDUCTION_MODES",
    "PerSampleLoss",
    "TaylorAccumulator",
    "fraction_to_count",
    "layerwise_l2_normalize",
    "normalize_output_gradient",
    "normalize_output_gradients",
    "reduce_contributions",
    "select_global_lowest",
    "weight_gradient_importance",
    "taylor_channel_contributions",
]
