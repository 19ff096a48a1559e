"""
TaylorFO filter pruning as an Ignite handler (Molchanov et al. 2017/2019; Sapkota et al. 2023; see
``docs/taylorfo.md``).

Every ``interval`` epochs (or iterations) from ``start_epoch``, the channels of all prunable groups are scored by their
first-order Taylor importance on a few training batches, and the globally least important ones are removed; training
then simply continues (fine-tuning) until the next step. Pruning stops at a MACs/parameter target, when nothing more
can be removed, or when the validation metric falls more than ``tolerance`` below its unpruned value and does not
come back within ``recovery_validations`` further validations of fine-tuning, in which case the network goes back to
the last state validation accepted (undoing every cut made since).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import

from monai_pruning.criteria import (
    REDUCTION_MODES,
    PerSampleLoss,
    cost_normalize,
    fraction_to_count,
    select_global_lowest,
    weight_gradient_importance,
)
from monai_pruning.criteria.taylor import random_channel_scores
from monai_pruning.criteria.weight_gradient import WEIGHTED_MODULES
from monai_pruning.distributed import is_distributed, sum_each_over_ranks, unwrap_network
from monai_pruning.engine import PruningRecord
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.one_shot_curve import curve_from_scores
from monai_pruning.handlers.pruning_base import (
    PruningHandlerBase,
    PruningHandlerError,
    config_flag,
    generator_state,
    optional_fraction,
    preserved_rng,
    set_generator_state,
)
from monai_pruning.handlers.taylorfo_scoring import GRADIENT_SOURCES, score_channels, summed_weight_gradients
from monai_pruning.report.history import cut_score_summary
from monai_pruning.report.plots import plot_cut_scores

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["CRITERIA", "TaylorFOPruning"]

CRITERIA = ("taylor", "random", "weight_gradient")
PRUNING, FINETUNE = "pruning", "finetune"
CUT_SCORES_PNG = "cut_scores.png"


def _positive_int(value: Any, name: str, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        extra = " or None" if allow_none else ""
        raise PruningHandlerError(f"TaylorFOPruning: `{name}` must be an int >= 1{extra}, got {value!r}.")
    return value


class TaylorFOPruning(PruningHandlerBase):
    """
    Iterative TaylorFO pruning with fine-tuning in between, on a MONAI ``SupervisedTrainer``.

    At each pruning step the handler runs its own forward/backward passes over ``score_batches`` batches of the
    trainer's data loader (BatchNorm in eval mode, no optimizer step, no grad scaler, parameter gradients untouched),
    scores each channel as ``sum over samples`` of ``|z|`` (``reduction="abs"``), ``z**2`` (``"sq"``) or
    ``|sum z|`` (``"signed"``), where ``z`` is activation x gradient summed over space and over the group's consumers,
    with each sample's output gradient scaled to unit norm; then removes the ``prune_count`` (or ``prune_fraction``
    of the ORIGINAL prunable channel count) globally lowest channels, respecting ``min_channels`` and GroupNorm units.

    Stopping: ``target_macs_reduction`` / ``target_params_reduction`` (fractions removed, vs. the network when the
    handler started) reached, nothing left to remove, or the validation metric more than ``tolerance`` below the
    baseline (the validator's value before the first cut; with ``baseline_before_training``, its value on the network
    as it was when training started; or ``baseline_metric``). A failed validation first pauses
    pruning for up to ``recovery_validations`` more validations of fine-tuning (a network just cut often needs a few
    epochs to recover, and a single validation on few images is noisy); the first of them back within tolerance
    accepts the cuts and pruning resumes. If none is (or with ``recovery_validations=0``, the paper's rule), the last
    state a validation accepted (pruning record, weights, optimizer state, saved before the first cut after that
    validation, kept in memory and in ``state_dict()``) is restored and pruning stops: with validation less often than
    pruning steps, all the cuts no metric has judged are undone together. With a validator, the first cut waits for a
    validation result to use as baseline. The best checkpoint is never written from a validation that failed.

    One history row per epoch (phase, steps, channels removed, metric, widths, MACs, parameters, epoch time, and
    for every group cut, ``cut_scores``: the scores it was ranked by, of the channels removed against those kept,
    at its last cut of the epoch, :func:`~monai_pruning.report.history.cut_score_summary`, drawn in
    ``cut_scores.png``); see
    :class:`~monai_pruning.handlers.pruning_base.PruningHandlerBase` for the records, the best checkpoint, the
    handler order (after ``ValidationHandler``, before ``CheckpointSaver``/``StatsHandler``) and
    ``DistributedDataParallel`` (scores summed over the ranks before ranking; ``score_batches`` counts each rank's
    batches; the scoring passes use the network inside the wrapper, so they never synchronise gradients).

    Args:
        prune_count: channels removed per step; when given it takes precedence over ``prune_fraction``.
        prune_fraction: fraction of the original prunable channel count removed per step (at least one channel).
        interval: pruning step every ``interval`` epochs (or iterations with ``epoch_level=False``).
        epoch_level: steps on epochs (``Events.EPOCH_COMPLETED``) or on iterations (``Events.ITERATION_COMPLETED``).
        start_epoch: first epoch at whose end (or during which) a step may happen; train the dense model before.
        score_batches: training batches scored per step; None: the whole training data loader.
        criterion: ``"taylor"`` ranks by the TaylorFO importance; ``"random"`` by uniform random scores drawn from
            the handler's ``seed`` (:func:`~monai_pruning.criteria.taylor.random_channel_scores`), with no scoring
            passes: the random-pruning control, with everything else (schedule, floors, targets, validation checks)
            as for TaylorFO. It ranks channels, not channels per MAC, so it refuses ``macs_normalize``.
            ``"weight_gradient"`` ranks by ``|weight x gradient|`` of the training loss summed over the scoring batches
            (Torch-Pruning's GroupTaylor with its defaults, on our engine:
            :func:`~monai_pruning.criteria.weight_gradient_importance`), the benchmark's stand-in for that peer;
            ``reduction``, ``gradient``, ``normalize_gradient`` and ``layerwise_normalize`` do not apply to it.
        reduction: ``"abs"``, ``"sq"`` or ``"signed"``.
        gradient: ``"loss"`` or ``"random"`` (label-free).
        scoring_loss: ``loss(pred, target)`` whose gradient the scoring passes backpropagate (``gradient="loss"``);
            None: the trainer's loss applied to each sample on its own and summed
            (:class:`~monai_pruning.criteria.PerSampleLoss`). The per-sample normalisation weighs the samples equally
            only when no sample's gradient depends on the others; a loss that pools the batch (``DiceCELoss`` with
            ``batch=True``) would make the scores depend on how the scoring batches are cut. For
            ``criterion="weight_gradient"``, None is the trainer's loss as it is (the gradient of a training step's
            loss, as Torch-Pruning reads it).
        normalize_gradient: per-sample unit-norm output gradient ("gradient-normalised backpropagation").
        layerwise_normalize: divide each group's scores by their L2 norm before the global ranking (ablation).
        weight_gradient_normalize: ``criterion="weight_gradient"`` only: divide each group's scores by their mean
            before the global ranking, as Torch-Pruning's GroupTaylor does by default (``normalizer="mean"``); false
            ranks the unnormalised sums (its ``normalizer=None``). The division hides how much a group's channels
            cost to remove (``docs/taylorfo.md``, "Why |weight x gradient| collapses here").
        macs_normalize: rank by importance per MAC: divide each channel's score by the MACs its removal saves
            (:func:`~monai_pruning.criteria.macs_per_channel`, one sample of ``example_shape``). Without it the
            global ranking removes mostly cheap deep channels: parameters fall much faster than MACs.
        target_macs_reduction: stop once this fraction of the starting MACs is removed.
        target_params_reduction: stop once this fraction of the starting parameters is removed.
        max_step_macs_reduction: the largest fraction of the starting MACs one step may remove: the step ends at the
            first channel (in rank order) that would take it past this budget, costed by
            :func:`~monai_pruning.criteria.macs_per_channel` (a first-order estimate that the real saving never
            exceeds). A fixed channel count costs few MACs while the ranking takes cheap deep channels, then a large
            share at once when it reaches the expensive full-resolution ones; the budget keeps the late steps small
            enough for fine-tuning to recover. None: no budget.
        tolerance: largest accepted metric drop below the baseline (metric units, e.g. 0.01 Dice); None: no check.
        recovery_validations: validations to wait, pruning paused, for a failed metric to come back within
            ``tolerance`` before the cuts are undone; 0 undoes them at the first failure.
        baseline_metric: the unpruned metric, when known in advance (otherwise measured by the validator).
        baseline_before_training: measure the baseline by running the validator once before the first training
            epoch (logged and recorded as epoch 0), on the network as loaded, instead of at the first validation
            before the first cut. For fine-tuning a trained network: a new learning rate moves the metric in the
            first epochs before any cut, and a baseline taken then lets pruning go that much further below the
            network it started from (measured: ``docs/taylorfo.md``). Leave it off
            when the handler trains a network from scratch (``start_epoch`` > 1).
        start_checkpoint: where the network came from, written into every history row so that a result says what
            it started from: ``{"path": ..., "epoch": ... or None, "sha256": ...}`` as
            :func:`monai_pruning.baseline_checkpoint.check_start_checkpoint` returns it (the bundles' overlay passes
            ``@start_checkpoint``); None: not recorded.
        seed: seed of the random output gradients (``gradient="random"``).
        one_shot_steps: also produce a one-shot curve (no fine-tuning) at the first step: removed channel counts
            (ints) or fractions (floats) of the prunable channels; written to ``output_dir``.
        one_shot_evaluate: ``evaluate_fn(network) -> float`` for the one-shot curve (needed with
            ``one_shot_steps``), e.g. :func:`~monai_pruning.handlers.one_shot_curve.evaluator_metric_fn`.
        width_multiple: every group keeps a multiple of this many channels (a group narrower than that is never
            cut): each step removes a group's lowest-ranked channels ``width_multiple`` at a time
            (:func:`~monai_pruning.criteria.select_global_lowest`). CPU runtimes compute channels in blocks of 8 or
            16 (a layer of 27 channels costs about what 32 do), though a polyp network trained with 8 was no faster
            at equal MACs than one without (``docs/taylorfo.md``); 1: any width, as in the paper.
        kwargs: ``example_shape``, ``min_channels`` (default 2), ``min_width_fraction`` (default 0), ``output_dir``,
            ``plot``, ``summary_writer``, ``tensorboard_dir``, ``validator``, ``metric_name``, ``metric_mode``,
            ``best_checkpoint``, ``name``.

    Example (bundle config; between ``ValidationHandler`` and ``CheckpointSaver`` in the trainer's handlers)::

        {"_target_": "monai_pruning.handlers.TaylorFOPruning", "validator": "@validate#evaluator",
         "prune_fraction": 0.02, "start_epoch": 10, "interval": 2, "score_batches": 32,
         "target_macs_reduction": 0.7, "max_step_macs_reduction": 0.05, "tolerance": 0.01,
         "output_dir": "$@output_dir + '/pruning'"}
    """

    method = "taylorfo"

    def __init__(
        self,
        prune_count: int | None = None,
        prune_fraction: float = 0.01,
        interval: int = 1,
        epoch_level: bool = True,
        start_epoch: int = 1,
        score_batches: int | None = None,
        criterion: str = "taylor",
        reduction: str = "abs",
        gradient: str = "loss",
        scoring_loss: Callable[..., torch.Tensor] | None = None,
        normalize_gradient: bool = True,
        layerwise_normalize: bool = False,
        weight_gradient_normalize: bool = True,
        macs_normalize: bool = False,
        target_macs_reduction: float | None = None,
        target_params_reduction: float | None = None,
        max_step_macs_reduction: float | None = None,
        tolerance: float | None = 0.01,
        recovery_validations: int = 0,
        baseline_metric: float | None = None,
        baseline_before_training: bool = False,
        start_checkpoint: Mapping[str, Any] | None = None,
        seed: int = 0,
        one_shot_steps: Sequence[int | float] | None = None,
        one_shot_evaluate: Callable[[torch.nn.Module], float] | None = None,
        example_shape: Sequence[int] | None = None,
        min_channels: int = 2,
        min_width_fraction: float = 0.0,
        width_multiple: int = 1,
        output_dir: str | os.PathLike | None = None,
        plot: bool = True,
        summary_writer: Any = None,
        tensorboard_dir: str | os.PathLike | None = None,
        validator: Any = None,
        metric_name: str | None = None,
        metric_mode: str = "max",
        best_checkpoint: str | os.PathLike | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(
            example_shape=example_shape,
            min_channels=min_channels,
            min_width_fraction=min_width_fraction,
            output_dir=output_dir,
            plot=plot,
            summary_writer=summary_writer,
            tensorboard_dir=tensorboard_dir,
            validator=validator,
            metric_name=metric_name,
            metric_mode=metric_mode,
            best_checkpoint=best_checkpoint,
            name=name,
        )
        self.prune_count = _positive_int(prune_count, "prune_count", allow_none=True)
        if prune_count is None:
            if isinstance(prune_fraction, bool) or not isinstance(prune_fraction, (int, float)):
                raise PruningHandlerError(
                    f"TaylorFOPruning: `prune_fraction` must be a number, got {prune_fraction!r}."
                )
            if not 0.0 < float(prune_fraction) <= 1.0:
                raise PruningHandlerError(f"TaylorFOPruning: `prune_fraction` must be in (0, 1], got {prune_fraction}.")
        self.prune_fraction = float(prune_fraction)
        self.interval = _positive_int(interval, "interval")
        self.epoch_level = config_flag(epoch_level, "epoch_level", "TaylorFOPruning")
        self.start_epoch = _positive_int(start_epoch, "start_epoch")
        self.score_batches = _positive_int(score_batches, "score_batches", allow_none=True)
        if criterion not in CRITERIA:
            raise PruningHandlerError(f"TaylorFOPruning: `criterion` must be one of {CRITERIA}, got {criterion!r}.")
        self.criterion = criterion
        if reduction not in REDUCTION_MODES:
            raise PruningHandlerError(
                f"TaylorFOPruning: `reduction` must be one of {REDUCTION_MODES}, got {reduction!r}."
            )
        if gradient not in GRADIENT_SOURCES:
            raise PruningHandlerError(
                f"TaylorFOPruning: `gradient` must be one of {GRADIENT_SOURCES}, got {gradient!r}."
            )
        if scoring_loss is not None and not callable(scoring_loss):
            raise PruningHandlerError(
                f"TaylorFOPruning: `scoring_loss` must be a loss function or None, got {type(scoring_loss).__name__}."
            )
        self.reduction = reduction
        self.gradient = gradient
        self.scoring_loss = scoring_loss
        self.normalize_gradient = config_flag(normalize_gradient, "normalize_gradient", "TaylorFOPruning")
        self.layerwise_normalize = config_flag(layerwise_normalize, "layerwise_normalize", "TaylorFOPruning")
        self.weight_gradient_normalize = config_flag(
            weight_gradient_normalize, "weight_gradient_normalize", "TaylorFOPruning"
        )
        self.macs_normalize = config_flag(macs_normalize, "macs_normalize", "TaylorFOPruning")
        if self.criterion == "random" and self.macs_normalize:
            raise PruningHandlerError(
                "TaylorFOPruning: `criterion='random'` draws scores per channel; set `macs_normalize` to false."
            )
        where = "TaylorFOPruning"
        self.target_macs_reduction = optional_fraction(target_macs_reduction, "target_macs_reduction", where)
        self.target_params_reduction = optional_fraction(target_params_reduction, "target_params_reduction", where)
        self.max_step_macs_reduction = optional_fraction(max_step_macs_reduction, "max_step_macs_reduction", where)
        if tolerance is not None and (
            isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0
        ):
            raise PruningHandlerError(f"TaylorFOPruning: `tolerance` must be a number >= 0 or None, got {tolerance!r}.")
        if baseline_metric is not None and validator is None:
            raise PruningHandlerError("TaylorFOPruning: `baseline_metric` needs a `validator` to compare with.")
        self.baseline_before_training = config_flag(
            baseline_before_training, "baseline_before_training", "TaylorFOPruning"
        )
        if self.baseline_before_training and validator is None:
            raise PruningHandlerError("TaylorFOPruning: `baseline_before_training` needs a `validator` to run.")
        self.tolerance = float(tolerance) if tolerance is not None else None
        if isinstance(recovery_validations, bool) or not isinstance(recovery_validations, int) or (
            recovery_validations < 0
        ):
            raise PruningHandlerError(
                f"TaylorFOPruning: `recovery_validations` must be an int >= 0, got {recovery_validations!r}."
            )
        self.recovery_validations = recovery_validations
        self.baseline = float(baseline_metric) if baseline_metric is not None else None
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise PruningHandlerError(f"TaylorFOPruning: `seed` must be an int, got {seed!r}.")
        if start_checkpoint is not None and (
            not isinstance(start_checkpoint, Mapping) or not {"path", "sha256"} <= set(start_checkpoint)
        ):
            raise PruningHandlerError(
                "TaylorFOPruning: `start_checkpoint` must be None or a dict with 'path' and 'sha256' (as "
                f"check_start_checkpoint returns), got {start_checkpoint!r}."
            )
        self.start_checkpoint = dict(start_checkpoint) if start_checkpoint is not None else None
        if one_shot_steps is not None and not callable(one_shot_evaluate):
            raise PruningHandlerError("TaylorFOPruning: `one_shot_steps` needs a callable `one_shot_evaluate`.")
        self.width_multiple = _positive_int(width_multiple, "width_multiple")
        self.one_shot_steps = list(one_shot_steps) if one_shot_steps is not None else None
        self.one_shot_evaluate = one_shot_evaluate
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.taps: FeatureTaps | None = None

        self.phase = PRUNING
        self.stop_reason: str | None = None
        self.steps = 0
        self.one_shot_done = False
        # the last state a metric accepted (or the start), kept from the first cut after it until a metric judges
        self.snapshot: dict[str, Any] | None = None
        self.failed_validations = 0  # failed validations since the last accepted one; pruning pauses while > 0
        self._epoch_removed = 0
        self._epoch_events: list[str] = []
        self._epoch_cut_scores: dict[str, dict[str, Any]] = {}

    # --- wiring -------------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register on the trainer: pruning steps on epochs or iterations, checks and records at every epoch end."""
        super().attach(engine)
        if self.baseline_before_training:
            engine.add_event_handler(Events.EPOCH_STARTED, self._validate_before_training)
        if self.epoch_level:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)
        else:
            engine.add_event_handler(Events.ITERATION_COMPLETED(every=self.interval), self._iteration_step)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _validate_before_training(self, engine: Engine) -> None:
        """
        With ``baseline_before_training``: the baseline from one validation before the first iteration of a run that
        is not a resumed one (a resumed run restores the baseline with the handler's state).
        """
        if self.baseline is not None or self.cuts or engine.state.iteration:
            return
        # as epoch 0, so that the first epoch's own validation is not taken for this one; without drawing from the
        # global random streams, which the unpruned control's first epoch does not do either
        with preserved_rng(unwrap_network(engine.network)):
            self.validator.run(0)
        self.baseline = self.validator_metric()
        self.logger.info(f"TaylorFOPruning: baseline {self.baseline:.4f}, validated before training.")

    def _pruner_ready(self, engine: Engine) -> None:
        taps = {g: t for g, t in self.pruner.graph.consumer_taps().items() if g in self.pruner.prunable_groups}
        if self.taps is None:
            self.taps = FeatureTaps(self.pruner.network, taps, first_only=False, gradients=True)
        else:
            self.taps.set_taps(taps)

    def _release_hooks(self) -> None:
        if self.taps is not None:
            self.taps.remove()
            self.taps = None

    # --- scheduling ---------------------------------------------------------------------------------------------
    def _epoch_scheduled(self, epoch: int) -> bool:
        return epoch >= self.start_epoch and (epoch - self.start_epoch) % self.interval == 0

    def _iteration_step(self, engine: Engine) -> None:
        if self.pruner is not None and engine.state.epoch >= self.start_epoch and self.phase == PRUNING:
            self.step(engine)

    def __call__(self, engine: Engine) -> None:
        """Epoch end: judge the last cut by the validation metric, prune if scheduled, record the epoch."""
        if self.pruner is None:
            return
        metric = self.fresh_metric(engine)
        if metric is not None:
            self.val_metrics.append(metric)
            if self.baseline is None and self.cuts == 0:
                self.baseline = metric
        if self._judge_last_cut(engine, metric):
            self.maybe_save_best(engine, metric)
        if self.epoch_level and self.phase == PRUNING and self._epoch_scheduled(engine.state.epoch):
            self.step(engine)
        self.record(
            engine,
            {
                "phase": self.phase,
                "steps": self.steps,
                "removed_now": self._epoch_removed,
                "events": ",".join(self._epoch_events),
                "stop_reason": self.stop_reason,
                "metric": metric,
                "baseline": self.baseline,
                "cut_scores": self._epoch_cut_scores,
                **({"start_checkpoint": self.start_checkpoint} if self.start_checkpoint is not None else {}),
            },
        )
        self._epoch_removed, self._epoch_events, self._epoch_cut_scores = 0, [], {}

    def _write_files(self) -> None:
        """The base's records, and ``cut_scores.png`` when this epoch cut (ranked scores of removed vs kept)."""
        super()._write_files()
        last = self.history.last()
        if self.output_dir is None or not self.plot or not self.writes_files() or not last.get("cut_scores"):
            return
        plot_cut_scores(self.history, self.output_dir / CUT_SCORES_PNG, log_y=True, score_label="importance",
                        title="taylorfo: importance of the channels removed and kept at each cut")

    def plot_marks(self) -> dict[str, float]:
        # the first row recorded after pruning stopped; a later rollback rewrites stop_reason only in later rows
        stopped = self.history.first(lambda row: bool(row.get("stop_reason")))
        return {f"pruning stopped ({stopped['stop_reason']})": stopped["epoch"]} if stopped else {}

    def _summary(self, row: Mapping[str, Any]) -> str:
        events = f" [{row['events']}]" if row["events"] else ""
        return f"{row['phase']}, step {row['steps']}, removed {row['removed_now']} channels{events}"

    def _metric_failed(self, metric: float) -> bool:
        if self.tolerance is None or self.baseline is None:
            return False
        if self.metric_mode == "max":
            return metric < self.baseline - self.tolerance
        return metric > self.baseline + self.tolerance

    def _judge_last_cut(self, engine: Engine, metric: float | None) -> bool:
        """
        With a fresh metric, accept the cuts made since the last accepted validation, wait for recovery, or undo them
        (and stop pruning). Returns whether ``metric`` describes the network now in place and was not rejected, i.e.
        whether it may become the best checkpoint.
        """
        if self.snapshot is None or metric is None:
            return metric is not None
        if not self._metric_failed(metric):
            if self.failed_validations:
                self._epoch_events.append("recovered")
                self.logger.info(f"TaylorFOPruning: metric {metric:.4f} is back within tolerance; cuts accepted.")
            self.snapshot, self.failed_validations = None, 0
            return True
        self.failed_validations += 1
        if self.failed_validations <= self.recovery_validations:
            self._epoch_events.append("recovering")
            self.logger.info(
                f"TaylorFOPruning: metric {metric:.4f} fell more than {self.tolerance} below the baseline "
                f"{self.baseline:.4f}; pruning paused, fine-tuning for recovery "
                f"({self.failed_validations}/{self.recovery_validations} validations)."
            )
            return False
        self._restore(engine, self.snapshot)
        self.snapshot, self.failed_validations = None, 0
        self._stop("tolerance")
        self.stop_reason = "tolerance"  # also when a target had already ended pruning: the target is undone too
        self._epoch_events.append("rollback")
        self.logger.info(
            f"TaylorFOPruning: metric {metric:.4f} fell more than {self.tolerance} below the baseline "
            f"{self.baseline:.4f}; back to the last validated network, pruning stopped."
        )
        return False

    def _stop(self, reason: str) -> None:
        if self.phase == PRUNING:
            self.phase, self.stop_reason = FINETUNE, reason
            self._epoch_events.append(f"stop:{reason}")

    def _checks_metric(self) -> bool:
        return self.validator is not None and self.tolerance is not None

    def _target_reached(self) -> bool:
        return self.target_met("macs", self.target_macs_reduction) or self.target_met(
            "params", self.target_params_reduction
        )

    # --- one pruning step ---------------------------------------------------------------------------------------
    def step(self, engine: Engine) -> dict[str, int]:
        """Score, then cut the globally least important channels; returns the channels removed per group."""
        if self._checks_metric() and self.baseline is None:
            if "waiting" not in self._epoch_events:
                self._epoch_events.append("waiting")
                self.logger.info("TaylorFOPruning: waiting for a validation result (the baseline) before cutting.")
            return {}
        if self.failed_validations:
            if "paused" not in self._epoch_events:
                self._epoch_events.append("paused")
            return {}
        if self._target_reached():
            self._stop("target")
            return {}
        groups = self.pruner.prunable_groups
        if self.criterion == "random":
            scores = random_channel_scores({group: groups[group].size for group in groups}, self.generator)
        else:
            scores = {group: values for group, values in self.score(engine).items() if group in groups}
        macs = self.channel_macs() if self.macs_normalize or self.max_step_macs_reduction is not None else None
        if self.macs_normalize:
            scores = cost_normalize(scores, macs)
        if self.one_shot_steps is not None and not self.one_shot_done:
            self._one_shot(scores)
        count = self.prune_count or fraction_to_count(self.prune_fraction, int(self.reference["channels"]))
        budget = {}
        if self.max_step_macs_reduction is not None:
            budget = {
                "channel_costs": macs,
                "max_cost": self.max_step_macs_reduction * self.reference["macs"],
            }
        selection = select_global_lowest(
            scores,
            count,
            min_channels={group: self.removal_floor(group) for group in scores},
            unit_sizes={group: groups[group].unit for group in scores},
            width_multiples=self.width_multiple,
            **budget,
        )
        removals = {group: idx for group, idx in selection.items() if idx}
        if is_distributed():  # the ranks ranked the same summed scores; rank 0's choice is the one applied
            removals = {group: [int(c) for c in idx] for group, idx in self.agree(removals).items()}
        if not removals:
            self._stop("exhausted")
            return {}
        if self._checks_metric() and self.snapshot is None:  # cuts not yet judged keep the last validated state
            self.snapshot = self._take_snapshot(engine)
        self._epoch_cut_scores.update({group: cut_score_summary(scores[group], idx) for group, idx in removals.items()})
        removed = self.cut(engine, removals)
        self.steps += 1
        self._epoch_removed += int(sum(removed.values()))
        if "cut" not in self._epoch_events:
            self._epoch_events.append("cut")
        if self._target_reached():
            self._stop("target")
        return removed

    @contextlib.contextmanager
    def _scoring_batches(self, engine: Engine) -> Iterator[Iterator[Any]]:
        """
        ``score_batches`` prepared batches of the trainer's data loader; the training data stream (shuffle order,
        augmentations) and the random streams continue after the block as if it had not run.
        """
        loader = engine.state.dataloader
        if loader is None:
            raise PruningHandlerError("TaylorFOPruning: the trainer has no data loader to score on.")
        if not self.epoch_level and getattr(loader, "persistent_workers", False):
            raise PruningHandlerError(
                "TaylorFOPruning: iteration-level scoring cannot open a second pass over a DataLoader with "
                "persistent_workers=True; use epoch_level=True or persistent_workers=False."
            )
        with preserved_rng(self.pruner.network, data=loader):
            batches = itertools.islice(loader, self.score_batches) if self.score_batches else loader
            yield (
                engine.prepare_batch(batch, engine.state.device, engine.non_blocking, **engine.to_kwargs)
                for batch in batches
            )

    def _forward(self, engine: Engine) -> Callable[..., Any]:
        """The trainer's inferer on the network inside any DDP wrapper: scoring passes never sync gradients."""
        network = self.pruner.network
        return lambda inputs, *args, **kwargs: engine.inferer(inputs, network, *args, **kwargs)

    @staticmethod
    def _autocast(engine: Engine) -> dict[str, Any] | None:
        return (getattr(engine, "amp_kwargs", None) or {}) if getattr(engine, "amp", False) else None

    def score(self, engine: Engine) -> dict[str, torch.Tensor]:
        """
        Importance of every channel of the current network on ``score_batches`` batches of the trainer's data loader,
        by ``criterion`` (``"taylor"`` or ``"weight_gradient"``), leaving its random streams as they were.
        """
        if self.criterion == "weight_gradient":
            return self._weight_gradient_scores(engine)
        loss = None
        if self.gradient == "loss":
            loss = self.scoring_loss if self.scoring_loss is not None else PerSampleLoss(engine.loss_function)
        with self._scoring_batches(engine) as prepared:
            return score_channels(
                self.pruner.network,
                self.taps,
                prepared,
                loss_function=loss,
                forward=self._forward(engine),
                reduction=self.reduction,
                gradient=self.gradient,
                normalize_gradient=self.normalize_gradient,
                layerwise_normalize=self.layerwise_normalize,
                generator=self.generator,
                autocast=self._autocast(engine),
                merge=self.sum_accumulators,
            )

    def _weight_gradient_scores(self, engine: Engine) -> dict[str, torch.Tensor]:
        """
        |weight x gradient| importance (Torch-Pruning's GroupTaylor defaults): gradients of the training loss as it
        is (or ``scoring_loss``) summed over the scoring batches and over the ranks, then ranked per group channel.
        """
        network = self.pruner.network
        graph = self.pruner.graph
        modules = dict(network.named_modules())
        weighted = sorted(
            {slot.module for slot in graph.slots if isinstance(modules[slot.module], WEIGHTED_MODULES)}
        )
        loss = self.scoring_loss if self.scoring_loss is not None else engine.loss_function
        with self._scoring_batches(engine) as prepared:
            gradients = summed_weight_gradients(
                network, weighted, prepared, loss, forward=self._forward(engine), autocast=self._autocast(engine)
            )
        if is_distributed():  # the sums over every rank's batches
            gradients = sum_each_over_ranks(gradients)
        return weight_gradient_importance(
            graph, modules, gradients, groups=self.pruner.prunable_groups, normalize=self.weight_gradient_normalize
        )

    def _one_shot(self, scores: Mapping[str, torch.Tensor]) -> None:
        self.one_shot_done = True
        rows = curve_from_scores(
            self.pruner.network,
            scores,
            self.one_shot_evaluate,
            self.example_shape,
            self.one_shot_steps,
            output_dir=self.output_dir if self.writes_files() else None,
            min_channels=self.min_channels,
            metric_name=self._metric_label(),
        )
        self.logger.info(f"TaylorFOPruning: one-shot curve with {len(rows)} points written to {self.output_dir}.")

    # --- snapshot and rollback ----------------------------------------------------------------------------------
    def _take_snapshot(self, engine: Engine) -> dict[str, Any]:
        """Everything a rollback needs, as plain data and CPU tensors (they also go into ``state_dict()``)."""
        network = self.pruner.network
        return {
            "record": PruningRecord(network).state_dict(),
            "model": {k: v.detach().to("cpu", copy=True) for k, v in network.state_dict().items()},
            "optimizer": copy.deepcopy(engine.optimizer.state_dict()),
            "cuts": self.cuts,
            "steps": self.steps,
        }

    def _restore(self, engine: Engine, snapshot: Mapping[str, Any]) -> None:
        """Reshape the network back, load its weights and optimizer state; keep the current learning rates."""
        optimizer = engine.optimizer
        hyper = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        network = self.pruner.network
        PruningRecord(network, optimizer).load_state_dict(snapshot["record"])
        network.load_state_dict(snapshot["model"])
        optimizer.load_state_dict(snapshot["optimizer"])
        for group, values in zip(optimizer.param_groups, hyper):
            group.update(values)
        self.rebuild(engine)
        self.steps = int(snapshot["steps"])

    # --- state --------------------------------------------------------------------------------------------------
    def _method_state(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "stop_reason": self.stop_reason,
            "steps": self.steps,
            "baseline": self.baseline,
            "one_shot_done": self.one_shot_done,
            "generator": generator_state(self.generator),
            "snapshot": self.snapshot,
            "failed_validations": self.failed_validations,
            "epoch_removed": self._epoch_removed,
            "epoch_events": list(self._epoch_events),
            "epoch_cut_scores": {group: dict(summary) for group, summary in self._epoch_cut_scores.items()},
        }

    def _load_method_state(self, state: Mapping[str, Any]) -> None:
        where = "TaylorFOPruning.load_state_dict"
        phase = state.get("phase")
        if phase not in (PRUNING, FINETUNE):
            raise PruningHandlerError(f"{where}: unknown phase {phase!r}.")
        self.phase = phase
        self.stop_reason = state.get("stop_reason")
        self.steps = int(state.get("steps", 0))
        baseline = state.get("baseline")
        self.baseline = float(baseline) if baseline is not None else self.baseline
        self.one_shot_done = bool(state.get("one_shot_done", False))
        set_generator_state(self.generator, state["generator"], where)
        self.snapshot = state.get("snapshot")
        self.failed_validations = int(state.get("failed_validations", 0))
        self._epoch_removed = int(state.get("epoch_removed", 0))
        self._epoch_events = [str(e) for e in state.get("epoch_events", [])]
        self._epoch_cut_scores = {str(g): dict(summary) for g, summary in state.get("epoch_cut_scores", {}).items()}
