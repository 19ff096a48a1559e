"""
Sauron filter pruning as an Ignite handler (Valverde, Shatillo, Tohka; arXiv 2209.13590, see ``docs/sauron.md``).

During training the clustering regulariser delta_opt, computed on every prunable group's feature maps, is added to the
loss; at every epoch end each group loses the channels whose delta_prune distance to a random reference channel is
below the group's threshold tau, and the thresholds rise on their own when training has converged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.engines import IterationEvents
from monai.utils import CommonKeys, IgniteInfo, min_version, optional_import

from monai_pruning.criteria import (
    CompiledSauronTerms,
    DeltaPruneAccumulator,
    ThresholdSchedule,
    channels_to_cut,
    check_clip_fraction,
    delta_opt_and_pooled,
    mean_layer_distance,
    most_redundant_within_cost,
)
from monai_pruning.distributed import is_distributed, sum_over_ranks
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.pruning_base import (
    PruningHandlerBase,
    PruningHandlerError,
    generator_state,
    optional_fraction,
    set_generator_state,
)
from monai_pruning.report.history import cut_score_summary
from monai_pruning.report.plots import plot_cut_scores

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["SauronPruning", "SEG_LOSS_KEY", "PENALTY_KEY"]

CUT_SCORES_PNG = "cut_scores.png"

#: keys added to ``engine.state.output``: the segmentation loss alone and the (unweighted) delta_opt regulariser
SEG_LOSS_KEY = "seg_loss"
PENALTY_KEY = "sauron_penalty"


class SauronPruning(PruningHandlerBase):
    """
    Single-phase Sauron pruning while a MONAI ``SupervisedTrainer`` trains.

    - ``IterationEvents.LOSS_COMPLETED``: ``engine.state.output["loss"] += lam * R`` with R the mean delta_opt of
      the groups' feature maps (observed where they enter their first consumer, and measured there, during the
      forward pass, while the maps are fresh in the CPU cache); the trainer's backward then trains on it.
      ``output["seg_loss"]`` and ``output["sauron_penalty"]`` keep the two parts (log them with
      ``StatsHandler(output_transform=...)``; the penalty reads 0 once a target has stopped the regulariser). On the
      last ``score_batches`` batches of the epoch, delta_prune against one reference channel per group (drawn once
      per epoch from a generator seeded with ``seed``) is accumulated.
    - ``Events.EPOCH_COMPLETED``: the thresholds are updated (plateau of the epoch's mean segmentation loss,
      stalled validation metric unless ``new_best_blocks=False``, fewer than ``mu`` of the group removed last
      time), then every group loses its channels with delta_prune < tau (never the reference, never below
      ``min_channels``). The optimizer keeps its state. One history row per epoch: widths and tau per group, MACs,
      parameters, epoch time, losses, metric, and for every group cut, ``cut_scores``: delta_prune / tau of the
      channels removed against those kept (:func:`~monai_pruning.report.history.cut_score_summary`, the reference
      left out), drawn in ``cut_scores.png``.
    - With ``target_macs_reduction``: the epoch whose cut would pass the target cuts only its most redundant
      candidates (lowest delta_prune relative to tau), as many as the target needs; once the target is reached,
      pruning stops and so does the regulariser (not computed, weight 0), and the remaining epochs fine-tune the
      pruned network with the segmentation loss alone. The paper has no such stop; without a target (the default)
      the thresholds decide the final size.
    - With ``warmup_epochs``: the first epochs train with the segmentation loss alone (no regulariser, no scoring, no
      cut, thresholds held at ``tau_start``); Sauron starts after them. The paper starts at epoch 1. The clustering
      pull competes with learning a class the network only finds after some epochs, such as a small lesion class
      (what it measured: ``docs/sauron.md``).

    See :class:`~monai_pruning.handlers.pruning_base.PruningHandlerBase` for the records, the best checkpoint, the
    handler order (after ``ValidationHandler``, before ``CheckpointSaver``/``StatsHandler``), resuming, and
    ``DistributedDataParallel`` (the losses and delta_prune windows are summed over the ranks; ``score_batches``
    counts each rank's batches).

    Args:
        lam: weight lambda of the delta_opt regulariser (0: "Sauron (lambda=0)" ablation, the term is only logged).
        tau_start: first threshold (delta_prune units, in [0, 1]).
        tau_max: last threshold.
        kappa: number of threshold steps from ``tau_start`` to ``tau_max``.
        patience: rho, epochs without a rise after each rise; also the loss-plateau window.
        mu: a group that removed at least this fraction of its channels in its last cut does not rise yet.
        plateau_tolerance: relative fall of the epoch's training loss that still counts as a plateau (0: the paper,
            any new minimum blocks a rise); see :class:`~monai_pruning.criteria.ThresholdSchedule`.
        new_best_blocks: a new best validation metric blocks the rise (True: the paper's rule as written); False:
            the metric is not consulted, as in the original code, where that test could never fail.
        clip_fraction: 0 (the paper): delta_opt min-max normalises each map. Above 0 (below 0.5): between that
            quantile and its complement, clipped, so that maps flat apart from a few extreme pixels no longer count
            as close; see :func:`~monai_pruning.criteria.delta_opt`.
        score_batches: number of training batches at the end of each epoch on which delta_prune is measured;
            None: all batches of the epoch.
        seed: seed of the generator drawing the delta_prune reference channels.
        target_macs_reduction: fraction in (0, 1) of the starting MACs (one sample of ``example_shape``, eval mode)
            at which pruning and the regulariser stop; None: prune until training ends.
        warmup_epochs: epochs of plain training (segmentation loss alone, nothing cut) before the regulariser and
            the cuts start; 0: from the first epoch, as in the paper.
        compile: run the regulariser and the scoring through ``torch.compile`` with dynamic shapes (no
            recompilation after a cut; :class:`~monai_pruning.criteria.CompiledSauronTerms`): True for inductor, or
            a backend name. Falls back to eager with one warning where compilation is unavailable. False (default):
            the hand-written eager kernels, which measured faster on the project's CPU.
        kwargs: ``example_shape``, ``min_channels`` (default 2), ``min_width_fraction`` (default 0), ``output_dir``,
            ``plot``, ``summary_writer``, ``tensorboard_dir``, ``validator``, ``metric_name``, ``metric_mode``,
            ``best_checkpoint``, ``name``:
            see :class:`~monai_pruning.handlers.pruning_base.PruningHandlerBase`.

    Example (bundle config; between ``ValidationHandler`` and ``CheckpointSaver`` in the trainer's handlers)::

        {"_target_": "monai_pruning.handlers.SauronPruning", "lam": 0.5, "validator": "@validate#evaluator",
         "output_dir": "$@output_dir + '/pruning'", "best_checkpoint": "$@ckpt_dir + '/model_pruned_best.pt'"}
    """

    method = "sauron"

    def __init__(
        self,
        lam: float = 0.5,
        tau_start: float = 0.001,
        tau_max: float = 0.3,
        kappa: int = 15,
        patience: int = 5,
        mu: float = 0.02,
        plateau_tolerance: float = 0.0,
        new_best_blocks: bool = True,
        clip_fraction: float = 0.0,
        score_batches: int | None = None,
        seed: int = 0,
        target_macs_reduction: float | None = None,
        warmup_epochs: int = 0,
        compile: bool | str = False,
        example_shape: Sequence[int] | None = None,
        min_channels: int = 2,
        min_width_fraction: float = 0.0,
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
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not lam >= 0:
            raise PruningHandlerError(f"SauronPruning: `lam` must be a number >= 0, got {lam!r}.")
        if score_batches is not None and (
            isinstance(score_batches, bool) or not isinstance(score_batches, int) or score_batches < 1
        ):
            raise PruningHandlerError(
                f"SauronPruning: `score_batches` must be an int >= 1 or None, got {score_batches!r}."
            )
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise PruningHandlerError(f"SauronPruning: `seed` must be an int, got {seed!r}.")
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) or warmup_epochs < 0:
            raise PruningHandlerError(f"SauronPruning: `warmup_epochs` must be an int >= 0, got {warmup_epochs!r}.")
        try:
            self.clip_fraction = check_clip_fraction(clip_fraction, "SauronPruning")
        except ValueError as err:
            raise PruningHandlerError(str(err)) from None
        try:
            self.schedule = ThresholdSchedule(
                tau_start, tau_max, kappa, patience, mu, metric_mode=metric_mode, plateau_tolerance=plateau_tolerance,
                new_best_blocks=new_best_blocks,
            )
        except ValueError as err:
            raise PruningHandlerError(f"SauronPruning: {err}") from None
        self.lam = float(lam)
        self.target_macs_reduction = optional_fraction(target_macs_reduction, "target_macs_reduction", "SauronPruning")
        self.target_epoch: int | None = None  # the epoch whose cut reached the target: no pruning after it
        self.warmup_epochs = warmup_epochs
        if not isinstance(compile, (bool, str)):
            raise PruningHandlerError(f"SauronPruning: `compile` must be a bool or a backend name, got {compile!r}.")
        self.compiled_terms: CompiledSauronTerms | None = None
        if compile:
            self.compiled_terms = CompiledSauronTerms("inductor" if compile is True else compile)
        self.score_batches = score_batches
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.taps: FeatureTaps | None = None
        self._layer_terms: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.accumulators: dict[str, DeltaPruneAccumulator] = {}
        self.train_losses: list[float] = []
        self.last_cut: dict[str, list[int]] = {}
        self._ratios: dict[str, tuple[torch.Tensor, int]] = {}  # this epoch's delta_prune / tau and reference
        self._epoch_sums = {"seg_loss": 0.0, "penalty": 0.0, "batches": 0}

    # --- wiring -------------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register on the trainer: taps on at iteration start, regulariser at loss, cut at epoch end."""
        super().attach(engine)
        engine.add_event_handler(Events.ITERATION_STARTED, self._iteration_started)
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self._loss_completed)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _pruner_ready(self, engine: Engine) -> None:
        taps = {g: t for g, t in self.pruner.graph.consumer_taps().items() if g in self.pruner.prunable_groups}
        if self.taps is None:
            self.taps = FeatureTaps(
                self.pruner.network, taps, first_only=True, gradients=False, on_capture=self._layer_captured
            )
        else:
            self.taps.set_taps(taps)
        scorer = self.compiled_terms.delta_prune if self.compiled_terms is not None else None
        self.accumulators = {group: DeltaPruneAccumulator(self.generator, scorer) for group in self.taps.groups}

    def _release_hooks(self) -> None:
        if self.taps is not None:
            self.taps.remove()
            self.taps = None

    # --- per iteration ------------------------------------------------------------------------------------------
    def _active(self, engine: Engine) -> bool:
        """Whether this epoch runs Sauron: past the warm-up and before the target (neither regularises nor scores)."""
        return self.target_epoch is None and engine.state.epoch > self.warmup_epochs

    def _iteration_started(self, engine: Engine) -> None:
        self.taps.clear()
        self._layer_terms = {}
        self.taps.enabled = self._active(engine)

    def _layer_captured(self, group: str, features: torch.Tensor, channels: tuple[int, int]) -> None:
        """
        During the trainer's forward pass: the group's delta_opt distances and pooled maps, while its maps are fresh
        (see :func:`~monai_pruning.criteria.delta_opt_and_pooled`).
        """
        terms = self.compiled_terms.delta_opt_and_pooled if self.compiled_terms is not None else delta_opt_and_pooled
        # in float32 even inside a mixed-precision forward pass (CpuAutocast, amp): the distances are compared with
        # thresholds of 0.001 and up, finer than bfloat16 resolves; a no-op for float32 maps
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            if self.lam > 0 and torch.is_grad_enabled():
                self._layer_terms[group] = terms(features, channels=channels, clip_fraction=self.clip_fraction)
            else:
                with torch.no_grad():
                    self._layer_terms[group] = terms(features.detach(), channels=channels,
                                                     clip_fraction=self.clip_fraction)

    def _scoring_batch(self, engine: Engine) -> bool:
        """Whether this iteration is one of the last ``score_batches`` of the epoch (the closest to the cut)."""
        if self.score_batches is None:
            return True
        length = engine.state.epoch_length
        if length is None:  # an endless data iterator: every batch counts
            return True
        position = (engine.state.iteration - 1) % length
        return position >= length - self.score_batches

    def _loss_completed(self, engine: Engine) -> None:
        output = engine.state.output
        if not isinstance(output, dict) or CommonKeys.LOSS not in output:
            raise PruningHandlerError("SauronPruning: engine.state.output must be a dict with a 'loss' entry.")
        self.taps.enabled = False
        scored = [group for group in self.taps.groups if group in self._layer_terms]
        penalty = mean_layer_distance([self._layer_terms[group][0] for group in scored])
        seg_loss = output[CommonKeys.LOSS]
        if self.lam > 0 and scored:
            output[CommonKeys.LOSS] = seg_loss + self.lam * penalty.to(seg_loss.dtype)
        output[SEG_LOSS_KEY] = seg_loss.detach()
        output[PENALTY_KEY] = penalty.detach()
        self._epoch_sums["seg_loss"] += float(seg_loss.detach())
        self._epoch_sums["penalty"] += float(penalty.detach())
        self._epoch_sums["batches"] += 1
        if self._scoring_batch(engine):  # on the pooled maps the regulariser already computed
            for group in scored:
                self.accumulators[group].update(self._layer_terms[group][1], pooled=True)
        self.taps.clear()
        self._layer_terms = {}

    def _iteration_completed(self, engine: Engine) -> None:
        if self.taps is not None:
            self.taps.enabled = False
            self.taps.clear()
        self._layer_terms = {}

    # --- per epoch ----------------------------------------------------------------------------------------------
    def __call__(self, engine: Engine) -> None:
        """Epoch end: update the thresholds, cut every group's redundant channels, record the epoch."""
        if self.pruner is None:  # an epoch without iterations
            return
        metric = self.fresh_metric(engine)
        if metric is not None:
            self.val_metrics.append(metric)
            self.maybe_save_best(engine, metric)
        self._sum_over_ranks()
        batches = self._epoch_sums["batches"]
        seg_loss = self._epoch_sums["seg_loss"] / batches if batches else None
        active = self._active(engine)
        # in the warm-up and past the target the regulariser is not measured: no value rather than a zero that reads
        # as "converged"
        penalty = self._epoch_sums["penalty"] / batches if batches and active else None
        if seg_loss is not None:
            self.train_losses.append(seg_loss)
        widths = self.pruner.widths()
        if active:
            known = {g: tuple(v) for g, v in self.last_cut.items() if g in self.pruner.prunable_groups}
            thresholds = self.schedule.update(self.train_losses, self.val_metrics, known)
            removals = self._removals()
            if is_distributed():
                removals, thresholds = self._agree_with_rank_zero(removals)
        else:
            thresholds, removals = self.schedule.thresholds, {}
        removed = self.cut(engine, removals) if removals else {}
        if not removals:
            self._reset_accumulators()
        if self._target_reached():
            self.target_epoch = int(engine.state.epoch)
            self.logger.info(
                f"SauronPruning: {100 * self.removed_fraction():.1f}% of MACs removed at epoch {self.target_epoch} "
                f"(target {100 * self.target_macs_reduction:.1f}%): pruning and the regulariser stop; the remaining "
                "epochs fine-tune the pruned network."
            )
        if active:  # the warm-up cut nothing at any threshold: the schedule starts afresh after it
            self.last_cut = {group: [int(removed.get(group, 0)), int(width)] for group, width in widths.items()}
        self._epoch_sums = {"seg_loss": 0.0, "penalty": 0.0, "batches": 0}
        if seg_loss is not None:
            engine.state.metrics[SEG_LOSS_KEY] = seg_loss
        if penalty is not None:
            engine.state.metrics[PENALTY_KEY] = penalty
        self.record(
            engine,
            {
                "seg_loss": seg_loss,
                "penalty": penalty,
                "metric": metric,
                "removed_now": int(sum(removed.values())),
                "thresholds": {group: thresholds.get(group, self.schedule.tau_start) for group in widths},
                "removed": {group: int(removed.get(group, 0)) for group in widths},
                "cut_scores": {
                    group: cut_score_summary(ratios, removals[group], exclude=[reference])
                    for group, (ratios, reference) in self._ratios.items()
                    if removals.get(group)
                },
            },
        )
        self._ratios = {}

    def _removals(self) -> dict[str, list[int]]:
        """This epoch's cut: every group's channels below its threshold, limited to what the target still needs."""
        removals: dict[str, list[int]] = {}
        scores: dict[str, torch.Tensor] = {}
        for group in self.taps.groups:
            accumulator = self.accumulators[group]
            if accumulator.num_samples == 0:
                continue
            scores[group], reference = accumulator.compute()
            if not torch.isfinite(scores[group]).all():  # delta_prune is finite for any finite feature map
                raise PruningHandlerError(
                    f"SauronPruning: delta_prune of group {group!r} is not finite this epoch: the network's features "
                    "hold NaN or inf (training diverged; lower the learning rate or `lam`)."
                )
            tau = self.schedule.threshold(group)
            if tau > 0:
                self._ratios[group] = (scores[group] / tau, reference)
            chosen = channels_to_cut(scores[group], reference, tau, min_channels=self.removal_floor(group))
            unit = self.pruner.prunable_groups[group].unit
            if unit > 1:  # GroupNorm: only whole groups of channels, all of whose members are redundant
                picked = set(chosen)
                chosen = [c for c in chosen if all(b in picked for b in range(c - c % unit, c - c % unit + unit))]
            if chosen:
                removals[group] = chosen
        if self.target_macs_reduction is None or not removals:
            return removals
        # MACs the cut may remove before the target is passed; per-channel costs are those of the current widths
        needed = self.complexity().macs - (1.0 - self.target_macs_reduction) * self.reference["macs"]
        macs = self.channel_macs()
        if sum(len(idx) * macs[group] for group, idx in removals.items()) <= needed:
            return removals
        return most_redundant_within_cost(
            removals,
            scores,
            {group: self.schedule.threshold(group) for group in removals},
            macs,
            needed,
            unit_sizes={group: self.pruner.prunable_groups[group].unit for group in removals},
        )

    def _target_reached(self) -> bool:
        return self.target_epoch is None and self.target_met("macs", self.target_macs_reduction)

    def _sum_over_ranks(self) -> None:
        """Distributed: the epoch's losses and the delta_prune windows over every rank's batches."""
        if not is_distributed():
            return
        self.sum_accumulators({group: self.accumulators[group] for group in self.taps.groups})
        sums = self._epoch_sums
        local = torch.tensor([sums["seg_loss"], sums["penalty"], sums["batches"]], dtype=torch.float64)
        seg_loss, penalty, batches = sum_over_ranks(local).tolist()
        self._epoch_sums = {"seg_loss": seg_loss, "penalty": penalty, "batches": int(round(batches))}

    def _agree_with_rank_zero(self, removals: dict[str, list[int]]) -> tuple[dict[str, list[int]], dict[str, float]]:
        """
        Rank 0's cut and schedule on every rank. The ranks computed them from the same summed statistics, so they
        should agree anyway; taking rank 0's makes sure a difference in the last bit of a sum cannot give the ranks
        different networks (or checkpoints that depend on which rank wrote them).
        """
        agreed = self.agree(
            {
                "removals": removals,
                "schedule": self.schedule.state_dict(),
                "generator": generator_state(self.generator),
                "train_losses": self.train_losses,
            }
        )
        self.schedule.load_state_dict(agreed["schedule"])
        set_generator_state(self.generator, agreed["generator"], "SauronPruning (rank 0's generator)")
        self.train_losses = [float(v) for v in agreed["train_losses"]]
        return {group: [int(c) for c in idx] for group, idx in agreed["removals"].items()}, self.schedule.thresholds

    def _reset_accumulators(self) -> None:
        """New scoring window without a cut: fresh references are drawn next epoch."""
        for accumulator in self.accumulators.values():
            accumulator.reset()

    def _write_files(self) -> None:
        """The base's records, and ``cut_scores.png`` when this epoch cut (delta_prune / tau of removed vs kept)."""
        super()._write_files()
        last = self.history.last()
        if self.output_dir is None or not self.plot or not self.writes_files() or not last.get("cut_scores"):
            return
        plot_cut_scores(self.history, self.output_dir / CUT_SCORES_PNG, threshold=1.0, score_label="delta_prune / tau",
                        title="sauron: delta_prune relative to tau of the channels removed and kept at each cut")

    def plot_marks(self) -> dict[str, float]:
        marks: dict[str, float] = {}
        last = self.history.last()
        if self.warmup_epochs and last is not None and last["epoch"] > self.warmup_epochs:
            marks["warm-up ends"] = self.warmup_epochs
        if self.target_epoch is not None:
            marks["target reached"] = self.target_epoch
        return marks

    def _summary(self, row: Mapping[str, Any]) -> str:
        taus = list(row["thresholds"].values())
        tau_text = f"tau {min(taus):.3g}-{max(taus):.3g}" if taus else "no groups"
        if row["seg_loss"] is None:
            seg = ""
        elif self.target_epoch is not None and row["epoch"] > self.target_epoch:
            seg = f", seg loss {row['seg_loss']:.4f}, fine-tuning since the target at epoch {self.target_epoch}"
        elif row["epoch"] <= self.warmup_epochs:
            seg = f", seg loss {row['seg_loss']:.4f}, warm-up: Sauron starts after epoch {self.warmup_epochs}"
        else:
            seg = f", seg loss {row['seg_loss']:.4f}, delta_opt {row['penalty']:.4f}"
        return f"removed {row['removed_now']} channels ({tau_text}{seg})"

    # --- state --------------------------------------------------------------------------------------------------
    def _method_state(self) -> dict[str, Any]:
        return {
            "lam": self.lam,
            "seed": self.seed,
            "warmup_epochs": self.warmup_epochs,
            "generator": generator_state(self.generator),
            "schedule": self.schedule.state_dict(),
            "train_losses": list(self.train_losses),
            "last_cut": {group: list(entry) for group, entry in self.last_cut.items()},
            "epoch_sums": dict(self._epoch_sums),
            "target_epoch": self.target_epoch,
        }

    def _load_method_state(self, state: Mapping[str, Any]) -> None:
        where = "SauronPruning.load_state_dict"
        try:
            self.schedule.load_state_dict(state["schedule"])
        except (KeyError, ValueError) as err:
            raise PruningHandlerError(f"{where}: {err}") from None
        set_generator_state(self.generator, state["generator"], where)
        self.train_losses = [float(v) for v in state.get("train_losses", [])]
        self.last_cut = {str(g): [int(v) for v in entry] for g, entry in state.get("last_cut", {}).items()}
        self.target_epoch = int(state["target_epoch"]) if state.get("target_epoch") is not None else None
        sums = state.get("epoch_sums", {})
        self._epoch_sums = {
            "seg_loss": float(sums.get("seg_loss", 0.0)),
            "penalty": float(sums.get("penalty", 0.0)),
            "batches": int(sums.get("batches", 0)),
        }
