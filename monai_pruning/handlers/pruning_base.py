"""
Machinery shared by the pruning handlers: the lazily built channel pruner, the records written after every epoch,
the validation metric, the best-pruned checkpoint and the checkpointable state.

The Sauron and TaylorFO handlers differ only in their criterion and schedule; everything they do around a cut lives
here, written once:

- the :class:`~monai_pruning.engine.ChannelPruner` is built from ``engine.network`` on the first training iteration,
  i.e. after any ``CheckpointLoader`` (attached at ``Events.STARTED``) has reshaped the network to a pruned record;
- after a cut the optimizer keeps its (sliced) state, the network is re-traced and the feature taps re-registered;
- each record row (epoch, iteration, widths per group, parameters, MACs of one ``example_shape`` sample in eval mode,
  epoch time, method fields, validation metric) goes to ``<output_dir>/pruning_history.json`` / ``.csv``,
  ``<output_dir>/channels.png``, TensorBoard, ``engine.state.metrics["params"]`` / ``["macs"]`` and one log line;
- ``state_dict()`` holds only plain data and tensors, loadable with ``torch.load(weights_only=True)``, so the handler
  sits in the ``CheckpointSaver`` ``save_dict`` and a killed run resumes exactly.

Under ``torchrun`` with the trainer's network in ``DistributedDataParallel`` (``docs/design.md``; the bundles'
``configs/multi_gpu_train.json``): the statistics behind a cut are summed over the ranks, rank 0 decides and its
decision (channels, validation metric, method state) reaches every rank as plain data, every rank applies the same
cut, and the trainer's (and the validator's, when it holds the same wrapper) ``DistributedDataParallel`` is built
again around the pruned network, with the same settings. Files, TensorBoard, the best checkpoint and info logs come
from rank 0 only. Keep the plain network (not the wrapper) in ``CheckpointSaver``/``PruningRecord``: Ignite saves
``.module`` of a wrapper anyway, and the stale wrapper would keep the unpruned network's gradient buckets alive.

Handler order in ``train_handlers``: list the pruning handler AFTER ``ValidationHandler`` (so the metric of epoch k is
known when pruning at epoch k, and the evaluator, which shares the network object, sees the pruned network from
epoch k + 1), and BEFORE ``CheckpointSaver`` and ``StatsHandler`` (so the checkpoint and the printed ``params`` /
``macs`` of epoch k include its cut).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from monai.utils import IgniteInfo, min_version, optional_import
from torch import nn

from monai_pruning.config_values import ConfigValueError, read_flag
from monai_pruning.criteria.channel_cost import macs_per_channel
from monai_pruning.distributed import broadcast_plain, is_distributed, rank, sum_each_over_ranks, unwrap_network
from monai_pruning.engine import ChannelPruner, PruningRecord
from monai_pruning.handlers.epoch_seeded_data import DataStreamState
from monai_pruning.handlers.rewrap_reshaped_network import rewrap_engine_network
from monai_pruning.measure import Complexity, count_parameters, macs_by_layer
from monai_pruning.report import PruningHistory, plot_channel_history, write_scalars
from monai_pruning.report.atomic_file import atomic_write_bytes

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = [
    "PruningHandlerBase",
    "PruningHandlerError",
    "optional_fraction",
    "preserved_rng",
    "generator_state",
    "set_generator_state",
]

STATE_FORMAT = 1
HISTORY_JSON = "pruning_history.json"
HISTORY_CSV = "pruning_history.csv"
CHANNELS_PNG = "channels.png"


class PruningHandlerError(ValueError):
    """A pruning handler is misconfigured or attached to an engine it cannot work with."""


class _WarningsOnly(logging.LoggerAdapter):
    """The handler's logger on ranks other than 0: every rank makes the same cuts, so rank 0 alone reports them."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return level >= logging.WARNING and self.logger.isEnabledFor(level)


def config_flag(value: Any, name: str, where: str) -> bool:
    """:func:`~monai_pruning.config_values.read_flag` for a handler setting (``'false'`` from the command line is
    false), raising :class:`PruningHandlerError` with the handler's name."""
    try:
        return read_flag(value, name)
    except ConfigValueError as err:
        raise PruningHandlerError(f"{where}: {err}") from None


def optional_fraction(value: Any, name: str, where: str) -> float | None:
    """``value`` as a float in (0, 1), or None; anything else is refused with a message naming ``where``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise PruningHandlerError(f"{where}: `{name}` must be a fraction in (0, 1) or None, got {value!r}.")
    return float(value)


def _copy_reference(reference: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A copy of the starting size (numbers and the ``widths`` dict) that shares nothing with ``reference``."""
    if reference is None:
        return None
    return {key: dict(value) if isinstance(value, Mapping) else value for key, value in reference.items()}


@contextlib.contextmanager
def preserved_rng(network: nn.Module, data: Any = None) -> Iterator[None]:
    """
    Run tracing, cuts and scoring without consuming the caller's random streams.

    Tracing draws an example input and scoring shuffles a data loader, augments its samples and may apply dropout;
    without this the data order, augmentations and dropout masks of the following iterations would depend on how
    often the pruner ran: a pruned run and its unpruned control would train on different data, and a resumed run
    (which traces once more, when it starts) would diverge from an uninterrupted one.

    Args:
        network: its CUDA devices' generators are forked with torch's global (CPU) generator.
        data: a data loader read inside the block: its generators and the states of its dataset's random transforms
            (:class:`~monai_pruning.handlers.epoch_seeded_data.DataStreamState`) are put back afterwards. Numpy's
            and Python's global generators are always put back.
    """
    devices = sorted({p.device.index or 0 for p in network.parameters() if p.device.type == "cuda"})
    stream = DataStreamState(data)
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        stream.restore()


def generator_state(generator: torch.Generator) -> list[int]:
    """A generator's state as a list of ints: plain data for JSON and ``torch.load(weights_only=True)``."""
    return [int(v) for v in generator.get_state().tolist()]


def set_generator_state(generator: torch.Generator, state: Sequence[int], where: str) -> None:
    """Restore a state saved by :func:`generator_state`."""
    try:
        generator.set_state(torch.tensor(list(state), dtype=torch.uint8))
    except (RuntimeError, TypeError, ValueError) as err:
        raise PruningHandlerError(f"{where}: saved random generator state is invalid ({err}).") from None


def _plain_number(value: Any) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().float().mean().item() if value.numel() != 1 else value.item()
    return value if isinstance(value, int) and not isinstance(value, bool) else float(value)


class PruningHandlerBase:
    """
    Base of the pruning handlers (not used on its own).

    Args:
        example_shape: ``(batch, channels, *spatial)`` of a training input, used to trace the channel flow; the
            MACs are reported for one sample of this shape. None: taken from the first training batch (batch 2).
        min_channels: every group keeps at least this many channels (rounded up to whole GroupNorm groups).
        min_width_fraction: every group also keeps at least this fraction of the channels it had when pruning
            started (rounded up), in [0, 1); 0: only ``min_channels``. Deep groups work at low resolution, so their
            channels cost few MACs each: a relative floor keeps a path through the bottleneck for little cost.
        output_dir: folder for ``pruning_history.json`` / ``.csv`` and ``channels.png``; None writes no files.
        plot: redraw ``channels.png`` after every record row (about 0.2 s each).
        summary_writer: TensorBoard writer (anything with ``add_scalar``) for the record rows.
        tensorboard_dir: alternatively, a folder where a ``SummaryWriter`` is created (closed when training ends).
        validator: the evaluator run by ``ValidationHandler`` (list this handler after it); None: no metric.
        metric_name: metric of ``validator.state.metrics`` to follow; default: the validator's key metric.
        metric_mode: ``"max"`` when a higher metric is better (Dice), ``"min"`` otherwise.
        best_checkpoint: file written (atomically) with ``{"pruning": record, "model": state_dict}`` whenever the
            validation metric is the best since the last cut, i.e. the best for the current architecture.
        name: logger name; None uses ``engine.logger``.
    """

    method = "base"

    def __init__(
        self,
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
        where = type(self).__name__
        if example_shape is not None:
            if isinstance(example_shape, (str, bytes)) or not isinstance(example_shape, Sequence):
                raise PruningHandlerError(f"{where}: `example_shape` must be a list of ints, got {example_shape!r}.")
            bad = [s for s in example_shape if isinstance(s, bool) or not isinstance(s, int) or s < 1]
            if len(example_shape) < 3 or bad:
                raise PruningHandlerError(
                    f"{where}: `example_shape` must be positive ints (batch, channels, *spatial): {example_shape!r}."
                )
        if isinstance(min_channels, bool) or not isinstance(min_channels, int) or min_channels < 1:
            raise PruningHandlerError(f"{where}: `min_channels` must be an int >= 1, got {min_channels!r}.")
        if (
            isinstance(min_width_fraction, bool)
            or not isinstance(min_width_fraction, (int, float))
            or not 0.0 <= float(min_width_fraction) < 1.0
        ):
            raise PruningHandlerError(
                f"{where}: `min_width_fraction` must be a fraction in [0, 1), got {min_width_fraction!r}."
            )
        if metric_mode not in ("max", "min"):
            raise PruningHandlerError(f"{where}: `metric_mode` must be 'max' or 'min', got {metric_mode!r}.")
        if summary_writer is not None and not callable(getattr(summary_writer, "add_scalar", None)):
            raise PruningHandlerError(f"{where}: `summary_writer` has no add_scalar method ({type(summary_writer)}).")
        if summary_writer is not None and tensorboard_dir is not None:
            raise PruningHandlerError(f"{where}: give `summary_writer` or `tensorboard_dir`, not both.")
        if validator is not None and not hasattr(validator, "state"):
            raise PruningHandlerError(f"{where}: `validator` must be an evaluator engine, got {type(validator)}.")
        self.example_shape = tuple(example_shape) if example_shape is not None else None
        self.min_channels = min_channels
        self.min_width_fraction = float(min_width_fraction)
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.plot = config_flag(plot, "plot", where)
        self.summary_writer = summary_writer
        self.tensorboard_dir = tensorboard_dir
        self._own_writer = False
        self.validator = validator
        self.metric_name = metric_name
        self.metric_mode = metric_mode
        self.best_checkpoint = Path(best_checkpoint) if best_checkpoint is not None else None
        self.logger = logging.getLogger(name)
        self._name = name

        self.pruner: ChannelPruner | None = None
        self._cost: Complexity | None = None
        self._layer_macs: dict[str, int] | None = None
        self.history = PruningHistory()
        # params, macs, channels and per-group widths of the network when pruning started
        self.reference: dict[str, Any] | None = None
        self.val_metrics: list[float] = []
        self.best_since_cut: float | None = None
        self.cuts = 0

    # --- engine wiring ------------------------------------------------------------------------------------------
    def attach(self, engine: Engine) -> None:
        """Register the handler's callbacks on the trainer; subclasses add their own events."""
        if self._name is None:
            self.logger = engine.logger
        if rank() != 0 and not isinstance(self.logger, _WarningsOnly):
            self.logger = _WarningsOnly(self.logger, {})
        engine.add_event_handler(Events.ITERATION_STARTED, self._ensure_pruner)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _ensure_pruner(self, engine: Engine) -> None:
        """Build the pruner, once, from the network as it is now (after any checkpoint has reshaped it)."""
        if self.pruner is not None:
            return
        for attribute in ("network", "optimizer"):  # set after the handlers are attached, so checked here
            if getattr(engine, attribute, None) is None:
                raise PruningHandlerError(
                    f"{type(self).__name__} must be attached to a MONAI SupervisedTrainer "
                    f"(the engine has no `{attribute}`)."
                )
        if isinstance(engine.network, nn.DataParallel):
            raise PruningHandlerError(
                f"{type(self).__name__}: the trainer's network is wrapped in DataParallel, whose per-forward replicas "
                "the pruner cannot follow; use DistributedDataParallel under torchrun (multi_gpu_train.json)."
            )
        if self.example_shape is None:
            self.example_shape = self._shape_from_batch(engine)
        # a CheckpointLoader (resume, or a pruned checkpoint to start from) may have reshaped the network inside a
        # wrapper built for the unpruned widths: _trace wraps it again
        self._trace(engine)
        if not self.pruner.prunable_groups:
            name = type(self.pruner.network).__name__
            self.logger.warning(f"{type(self).__name__}: {name} has no prunable channel group.")
        if self.reference is None:
            cost = self.complexity()
            widths = self.pruner.widths()
            self.reference = {
                "params": cost.params, "macs": cost.macs, "channels": sum(widths.values()), "widths": widths
            }
        if self.min_width_fraction > 0 and "widths" not in self.reference:
            raise PruningHandlerError(
                f"{type(self).__name__}: the resumed pruning state predates `min_width_fraction` (no starting widths "
                "recorded); resume with min_width_fraction=0 or start a new run."
            )
        self._pruner_ready(engine)

    def _shape_from_batch(self, engine: Engine) -> tuple[int, ...]:
        try:
            state = engine.state
            batch = engine.prepare_batch(state.batch, state.device, engine.non_blocking, **engine.to_kwargs)
            shape = tuple(int(s) for s in batch[0].shape)
        except Exception as err:  # noqa: BLE001 - any failure means: ask the user for the shape
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise PruningHandlerError(
                f"{type(self).__name__}: cannot read the input shape from the first training batch ({reason}); "
                "give `example_shape`."
            ) from None
        return (2, *shape[1:])

    def _trace(self, engine: Engine) -> None:
        """
        Build the pruner from the network as it is now (tracing its channel flow), forget the measurements of the
        previous shape, and give a DistributedDataParallel trainer a wrapper that knows the current parameters.
        """
        network = unwrap_network(engine.network)
        with preserved_rng(network):
            self.pruner = ChannelPruner(network, self.example_shape, min_channels=self.min_channels)
        self._cost = self._layer_macs = None
        rewrap_engine_network(engine, self.validator)

    def _pruner_ready(self, engine: Engine) -> None:
        """Hook for subclasses: the pruner was (re)built; register feature taps, accumulators."""

    def agree(self, decision: Any) -> Any:
        """Rank 0's ``decision`` (plain JSON data) on every rank; ``decision`` itself in a single process."""
        return broadcast_plain(decision)

    def sum_accumulators(self, accumulators: Mapping[str, Any]) -> None:
        """
        Make every group's score accumulator hold the samples of all ranks (one collective for all groups; a no-op
        in a single process). Every rank must call it with the same groups; a group a rank has not scored counts as
        zero samples there. Accumulators with a ``reference`` (delta_prune) must have drawn the same one on every
        rank; otherwise every rank raises the same error.
        """
        if not is_distributed() or not accumulators:
            return
        widths = self.pruner.widths()
        parts = {}
        for group, accumulator in accumulators.items():
            total, count = accumulator.totals()
            reference = getattr(accumulator, "reference", None)
            if total is None:
                local = torch.zeros(widths[group], dtype=torch.float64)
            else:
                local = total.detach().as_subclass(torch.Tensor).to("cpu", torch.float64)  # no MetaTensor meta
            ref = -1.0 if reference is None else float(reference)
            parts[group] = torch.cat([local, torch.tensor([float(count), ref, ref * ref, 1.0], dtype=torch.float64)])
        summed = sum_each_over_ranks(parts)
        for group, accumulator in accumulators.items():
            values = summed[group]
            total, (count, ref_sum, ref_sq_sum, ranks) = values[:-4], values[-4:].tolist()
            if hasattr(accumulator, "reference") and abs(ref_sq_sum * ranks - ref_sum * ref_sum) > 0.5:
                raise PruningHandlerError(
                    f"{type(self).__name__}: the ranks scored group {group!r} against different reference channels "
                    "(or some ranks scored no batch); give every rank's handler the same `seed` and as many batches "
                    "(DistributedSampler with even_divisible=True)."
                )
            if count > 0:
                old, _ = accumulator.totals()
                like = old if old is not None else torch.zeros(0)
                accumulator.load_totals(total.to(like.device, like.dtype), int(round(count)))

    @staticmethod
    def writes_files() -> bool:
        """Whether this process writes records, plots and checkpoints: rank 0 (or the only process)."""
        return rank() == 0

    def _completed(self, engine: Engine) -> None:
        """Training ended: remove hooks, close a writer we opened; a further run rebuilds the pruner."""
        self._release_hooks()
        self.pruner = None
        if self._own_writer and self.summary_writer is not None:
            self.summary_writer.close()
            self.summary_writer, self._own_writer = None, False

    def _release_hooks(self) -> None:
        """Hook for subclasses: remove their feature taps."""

    # --- measurements -------------------------------------------------------------------------------------------
    def complexity(self) -> Complexity:
        """
        Parameters and MACs of the network now, for one sample of ``example_shape``, in eval mode (what inference
        costs, without deep-supervision heads). Measured by a forward pass, so cached until the next cut.
        """
        if self._cost is None:
            self._measure()
        return self._cost

    def removed_fraction(self, quantity: str = "macs") -> float:
        """Fraction of the starting ``"macs"`` or ``"params"`` removed so far (0 when the start had none)."""
        start = self.reference[quantity]
        current = getattr(self.complexity(), quantity)
        return 1.0 - current / start if start else 0.0

    def target_met(self, quantity: str, target: float | None) -> bool:
        """Whether ``target`` (a fraction, None: no target) of the starting ``"macs"``/``"params"`` is removed."""
        return target is not None and self.removed_fraction(quantity) >= target - 1e-12

    def channel_macs(self) -> dict[str, float]:
        """MACs (one sample, eval mode) that removing one channel of each group saves, cached until the next cut."""
        if self._layer_macs is None:
            self._measure()
        return macs_per_channel(self.pruner.graph, self._layer_macs)

    def _measure(self) -> None:
        network = self.pruner.network
        modes = {module: module.training for module in network.modules()}
        network.eval()
        try:
            with preserved_rng(network):
                self._layer_macs = macs_by_layer(network, (1, *self.example_shape[1:]))
        finally:
            for module, training in modes.items():
                module.training = training
        self._cost = Complexity(params=count_parameters(network), macs=sum(self._layer_macs.values()))

    def fresh_metric(self, engine: Engine) -> float | None:
        """The validator's metric if the validator ran during this epoch of the trainer, else None."""
        if self.validator is None:
            return None
        if getattr(self.validator.state, "epoch", None) != engine.state.epoch:
            return None
        return self.validator_metric()

    def validator_metric(self) -> float:
        """
        The key (or ``metric_name``) metric of the validator's last run, rank 0's value on every rank.

        Raises:
            PruningHandlerError: the validator ran without metrics, without the metric asked for, or its value is
                missing or not finite (NaN, inf): a cut judged on it, or a best checkpoint chosen by it, would be
                unjudged, so training stops instead.
        """
        where = type(self).__name__
        state = self.validator.state
        epoch = getattr(state, "epoch", None)
        if not getattr(state, "metrics", None):
            raise PruningHandlerError(
                f"{where}: the validator ran (epoch {epoch}) but computed no metrics; give it a key metric."
            )
        name = self.metric_name or getattr(state, "key_metric_name", None)
        if name is None:
            raise PruningHandlerError(f"{where}: the validator has no key metric; set `metric_name`.")
        if name not in state.metrics:
            raise PruningHandlerError(f"{where}: validator metric {name!r} not found; it has {sorted(state.metrics)}.")
        value = _plain_number(state.metrics[name])
        # MONAI's metrics are gathered over the ranks already; rank 0's value is taken so that every rank follows
        # the same branch (accept, pause, roll back, stop) whatever the last bits of a float
        value = self.agree(float(value) if value is not None else None)
        if value is None or not math.isfinite(value):
            raise PruningHandlerError(
                f"{where}: validation {name} is {value} at epoch {epoch}; no pruning decision can be judged on it "
                "(check the validation cases, e.g. labels with no foreground, and the loss for divergence)."
            )
        return value

    def _better(self, value: float, than: float | None) -> bool:
        if than is None:
            return True
        return value > than if self.metric_mode == "max" else value < than

    # --- cutting ------------------------------------------------------------------------------------------------
    def cut(self, engine: Engine, removals: Mapping[str, Sequence[int]]) -> dict[str, int]:
        """Remove channels (``{group: indices}``), keep the optimizer attached, re-trace and re-register taps."""
        removals = {group: list(idx) for group, idx in removals.items() if len(idx) > 0}
        if not removals:
            return {}
        with preserved_rng(engine.network), torch.no_grad():
            removed = self.pruner.cut(removals, optimizer=engine.optimizer)
        self.cuts += 1
        self._cost = self._layer_macs = None
        self.best_since_cut = None
        rewrap_engine_network(engine, self.validator)
        self._pruner_ready(engine)
        return removed

    def rebuild(self, engine: Engine) -> None:
        """Re-trace the network after it was reshaped by other means (a restored snapshot)."""
        self._release_hooks()
        self._trace(engine)
        self.best_since_cut = None
        self._pruner_ready(engine)

    def removal_floor(self, group: str) -> int:
        """
        The fewest channels ``group`` may keep: ``min_channels``, or ``min_width_fraction`` of its starting width
        when that is more, rounded up to whole units (GroupNorm groups); never more than it has now.
        """
        size = self.pruner.prunable_groups[group].size
        floor = size - self.pruner.removable(group)
        if self.min_width_fraction > 0:
            unit = self.pruner.prunable_groups[group].unit
            relative = math.ceil(self.min_width_fraction * self.reference["widths"][group] - 1e-9)
            floor = max(floor, -(-relative // unit) * unit)
        return min(floor, size)

    # --- records ------------------------------------------------------------------------------------------------
    def maybe_save_best(self, engine: Engine, metric: float | None) -> None:
        """Write the best checkpoint when ``metric`` (of the current architecture) beats every one since the cut."""
        if metric is None or not self._better(metric, self.best_since_cut):
            return
        self.best_since_cut = metric
        if self.best_checkpoint is None or not self.writes_files():
            return
        network = self.pruner.network
        content = {"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}
        buffer = io.BytesIO()
        torch.save(content, buffer)
        destination = atomic_write_bytes(self.best_checkpoint, buffer.getvalue(), where=type(self).__name__)
        self.logger.info(f"{type(self).__name__}: best {self._metric_label()} {metric:.4f} so far for this "
                         f"architecture, saved {destination}")

    def _metric_label(self) -> str:
        if self.metric_name:
            return self.metric_name
        return getattr(getattr(self.validator, "state", None), "key_metric_name", None) or "metric"

    def record(self, engine: Engine, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Append one history row and publish it (files, TensorBoard, engine metrics, log); returns the row."""
        cost = self.complexity()
        widths = self.pruner.widths()
        epoch_time = engine.state.times.get(Events.EPOCH_COMPLETED.name) if hasattr(engine.state, "times") else None
        row: dict[str, Any] = {
            "epoch": int(engine.state.epoch),
            "iteration": int(engine.state.iteration),
            "time_s": float(epoch_time) if epoch_time is not None else None,
            "params": cost.params,
            "macs": cost.macs,
            "params_ratio": cost.params / self.reference["params"] if self.reference["params"] else None,
            "macs_ratio": cost.macs / self.reference["macs"] if self.reference["macs"] else None,
            "channels": sum(widths.values()),
            **fields,
            "widths": widths,
        }
        self.history.append(row)
        row = self.history.last()
        self._write_files()
        self._write_tensorboard(row)
        engine.state.metrics["params"] = cost.params
        engine.state.metrics["macs"] = cost.macs
        macs_ratio = f"{100 * row['macs_ratio']:.1f}%" if row["macs_ratio"] is not None else "n/a"
        params_ratio = f"{100 * row['params_ratio']:.1f}%" if row["params_ratio"] is not None else "n/a"
        self.logger.info(
            f"{type(self).__name__} epoch {row['epoch']}: {self._summary(row)}; {row['channels']} channels, "
            f"params {cost.params} ({params_ratio} of start), MACs {cost.macs} ({macs_ratio} of start)"
        )
        return row

    def _summary(self, row: Mapping[str, Any]) -> str:
        """Method-specific start of the log line."""
        return "recorded"

    def _write_files(self) -> None:
        if self.output_dir is None or not self.writes_files():
            return
        self.history.write_json(self.output_dir / HISTORY_JSON)
        self.history.write_csv(self.output_dir / HISTORY_CSV)
        if self.plot:
            title = f"{self.method}: channels per group"
            plot_channel_history(self.history, self.output_dir / CHANNELS_PNG, title=title, marks=self.plot_marks())

    def plot_marks(self) -> dict[str, float]:
        """Epochs worth a labelled line on the channel plot (where pruning stopped); none by default."""
        return {}

    def _write_tensorboard(self, row: Mapping[str, Any]) -> None:
        if not self.writes_files():
            return
        if self.summary_writer is None and self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.summary_writer, self._own_writer = SummaryWriter(log_dir=str(self.tensorboard_dir)), True
        if self.summary_writer is not None:
            write_scalars(self.summary_writer, row, step=int(row["epoch"]), prefix=f"pruning_{self.method}")

    # --- checkpointing ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Plain data (plus tensors in method state), safe for ``torch.load(weights_only=True)``."""
        return {
            "format_version": STATE_FORMAT,
            "method": self.method,
            "history": self.history.state_dict(),
            "reference": _copy_reference(self.reference),
            "example_shape": list(self.example_shape) if self.example_shape is not None else None,
            "val_metrics": list(self.val_metrics),
            "best_since_cut": self.best_since_cut,
            "cuts": self.cuts,
            "method_state": self._method_state(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore a saved state; the pruner is rebuilt lazily from the (already reshaped) network."""
        where = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, Mapping) or "method_state" not in state_dict:
            raise PruningHandlerError(f"{where}: not a pruning handler state (expected a dict with 'method_state').")
        if state_dict.get("format_version") != STATE_FORMAT:
            raise PruningHandlerError(f"{where}: state format {state_dict.get('format_version')} is not supported.")
        if state_dict.get("method") != self.method:
            raise PruningHandlerError(
                f"{where}: the checkpoint holds a {state_dict.get('method')!r} pruning state, this is {self.method!r}."
            )
        self.history.load_state_dict(state_dict["history"])
        self.reference = _copy_reference(state_dict.get("reference"))
        if state_dict.get("example_shape") is not None and self.example_shape is None:
            self.example_shape = tuple(int(s) for s in state_dict["example_shape"])
        self.val_metrics = [float(v) for v in state_dict.get("val_metrics", [])]
        best = state_dict.get("best_since_cut")
        self.best_since_cut = float(best) if best is not None else None
        self.cuts = int(state_dict.get("cuts", 0))
        self._load_method_state(state_dict["method_state"])
        self._release_hooks()
        self.pruner = None

    def _method_state(self) -> dict[str, Any]:
        return {}

    def _load_method_state(self, state: Mapping[str, Any]) -> None:
        """Hook for subclasses."""
