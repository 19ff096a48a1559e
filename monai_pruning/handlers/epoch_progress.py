"""One line per training epoch: the running loss, the latest validation metric, the MACs left and the time to go."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from monai.handlers import from_engine
from monai.utils import IgniteInfo, min_version, optional_import

from monai_pruning.distributed import unwrap_network
from monai_pruning.engine import module_widths
from monai_pruning.measure import measure_complexity

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["EpochProgress", "format_duration", "parse_progress_line", "progress_line", "read_progress"]

LOGGER_NAME = "monai_pruning.progress"


def format_duration(seconds: float) -> str:
    """``75.4`` -> ``"1:15"``, ``3725`` -> ``"1:02:05"``: whole seconds as [h:]mm:ss (m:ss under an hour)."""
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(
    epoch: int,
    max_epochs: int,
    loss: float | None,
    metric_name: str | None,
    metric: float | None,
    metric_epoch: int | None,
    macs_left: float | None,
    elapsed_s: float,
    eta_s: float | None,
) -> str:
    """
    The text of one epoch's line, e.g.
    ``epoch  4/20  loss 0.4213  val_mean_dice 0.6120 (epoch 2)  MACs left 43.1%  elapsed 0:42  ETA 2:10``.

    ``metric_epoch`` is the epoch the metric was measured at; it is shown when it is not ``epoch`` (a validation
    every few epochs), as "before training" when it is 0. ``macs_left`` is a fraction of the unpruned network's MACs.
    Missing values are shown as ``-``.
    """
    width = len(str(max_epochs))
    parts = [f"epoch {epoch:>{width}}/{max_epochs}", f"loss {loss:.4f}" if loss is not None else "loss -"]
    label = metric_name or "validation"
    if metric is None:
        parts.append(f"{label} -")
    else:
        when = ""
        if metric_epoch is not None and metric_epoch != epoch:
            when = " (before training)" if metric_epoch == 0 else f" (epoch {metric_epoch})"
        parts.append(f"{label} {metric:.4f}{when}")
    parts.append(f"MACs left {100 * macs_left:.1f}%" if macs_left is not None else "MACs left -")
    parts.append(f"elapsed {format_duration(elapsed_s)}")
    parts.append(f"ETA {format_duration(eta_s)}" if eta_s is not None else "ETA -")
    return "  ".join(parts)


_LINE = re.compile(
    r"epoch +(?P<epoch>\d+)/(?P<max_epochs>\d+)  loss (?P<loss>-|\S+)  (?P<name>\S+) "
    r"(?:-|(?P<metric>\S+)(?: \((?:(?P<before>before training)|epoch (?P<metric_epoch>\d+))\))?)  "
    r"MACs left (?:-|(?P<macs>\S+)%)  elapsed "
)


def parse_progress_line(text: str) -> dict[str, Any] | None:
    """
    The values of a line :func:`progress_line` wrote, found anywhere in ``text`` (a log line with its time stamp and
    logger name), or None when ``text`` holds no such line: ``{"epoch", "max_epochs", "loss", "metric_name",
    "metric", "metric_epoch", "macs_left"}`` with None for what the line shows as ``-``; ``metric_epoch`` is the epoch
    the metric was measured at (0: before training), ``macs_left`` a fraction. Values are as rounded in the line.
    """
    match = _LINE.search(text)
    if match is None:
        return None
    metric = None if match["metric"] is None else float(match["metric"])
    if metric is None:
        metric_epoch = None
    elif match["before"]:
        metric_epoch = 0
    else:
        metric_epoch = int(match["metric_epoch"]) if match["metric_epoch"] else int(match["epoch"])
    return {
        "epoch": int(match["epoch"]),
        "max_epochs": int(match["max_epochs"]),
        "loss": None if match["loss"] == "-" else float(match["loss"]),
        "metric_name": match["name"],
        "metric": metric,
        "metric_epoch": metric_epoch,
        "macs_left": None if match["macs"] is None else round(float(match["macs"]) / 100, 6),
    }


def read_progress(lines: Iterable[str]) -> list[dict[str, Any]]:
    """
    One row per epoch from a training log (:func:`parse_progress_line`), in epoch order. A resumed run logs again
    the epochs after its checkpoint, and a TaylorFO rollback trains an epoch again: the last line of an epoch wins.
    """
    rows: dict[int, dict[str, Any]] = {}
    for line in lines:
        row = parse_progress_line(line)
        if row is not None:
            rows[row["epoch"]] = row
    return [rows[epoch] for epoch in sorted(rows)]


class EpochProgress:
    """
    Logs one line at the end of every training epoch: the epoch's mean training loss, the validator's latest key
    metric (and the epoch it was taken at), the network's MACs as a fraction of the network as the config built it
    (unpruned), the time since the run started (or was resumed) and an estimate of the time left (the mean time of
    the epochs run since then times the epochs to go; a resumed run counts from the epoch its checkpoint restored,
    which a loader sets after ``Events.STARTED``, so the count starts at the first epoch that runs).

    It reads what the trainer and validator already have, so a line costs nothing while the network keeps its
    widths; when they change (a cut), one forward pass at batch 1 (``example_shape`` with its batch set to 1, in
    evaluation mode, leaving the random state and the module modes as they were) measures the new MACs. The
    reference is measured when the handler is built, from ``network`` as the config built it (before any checkpoint
    reshapes it when the run starts). Attach it after the pruning
    handlers, so it sees each epoch's cut. Lines go to the logger ``name`` at INFO level: a logging configuration
    can show them alone (the demo's ``bundles/logging_brief.conf``) or with everything else.

    Example (bundle config, in ``train#output_handlers``)::

        "progress": {"_target_": "monai_pruning.handlers.EpochProgress", "network": "@network",
                     "example_shape": "@example_shape", "validator": "@validate#evaluator"}

    Args:
        network: the trainer's network, unpruned as built; None: no MACs in the line.
        example_shape: input shape of the network, batch first (the pruning handlers' ``example_shape``); needed
            with ``network``.
        validator: the evaluator whose key metric is shown; None: no metric.
        output_transform: trainer output -> the iteration's loss (a number or a one-element tensor).
        name: logger name.
    """

    def __init__(
        self,
        network: torch.nn.Module | None = None,
        example_shape: Sequence[int] | None = None,
        validator: Any = None,
        output_transform: Callable[[Any], Any] = from_engine(["loss"], first=True),
        name: str = LOGGER_NAME,
    ) -> None:
        if example_shape is not None:
            shape = list(example_shape)
            if len(shape) < 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shape):
                raise ValueError(
                    f"EpochProgress: `example_shape` must be positive ints (batch, channels, *spatial), got "
                    f"{example_shape!r}."
                )
            self.shape: tuple[int, ...] | None = (1, *shape[1:])
        else:
            self.shape = None
        if network is not None and not isinstance(network, torch.nn.Module):
            raise ValueError(f"EpochProgress: `network` must be a torch.nn.Module, got {type(network).__name__}.")
        if network is not None and self.shape is None:
            raise ValueError("EpochProgress: `network` needs `example_shape` to measure its MACs.")
        if validator is not None and not hasattr(validator, "state"):
            raise ValueError(f"EpochProgress: `validator` must be an evaluator engine, got {type(validator)}.")
        self.validator = validator
        self.output_transform = output_transform
        self.logger = logging.getLogger(name)
        self.network = network
        self._widths_measured: str | None = None
        self._macs: int | None = None
        self.reference_macs = self._measure(unwrap_network(network)) if network is not None else None
        self._loss_sum = 0.0
        self._loss_count = 0
        self._started_at: float | None = None
        self._start_epoch: int | None = None

    def attach(self, engine: Engine) -> None:
        """Register the callbacks on the trainer (the line at ``Events.EPOCH_COMPLETED``)."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration_completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def _measure(self, network: torch.nn.Module) -> int:
        """MACs of ``network`` at batch 1, in evaluation mode (deep-supervision heads left out), modes restored."""
        widths = repr(module_widths(network))
        if widths != self._widths_measured:
            modes = {module: module.training for module in network.modules()}
            try:
                network.eval()
                self._macs = measure_complexity(network, self.shape).macs
            finally:
                for module, training in modes.items():
                    module.training = training
            self._widths_measured = widths
        return int(self._macs)

    def _started(self, engine: Engine) -> None:
        self._started_at = time.perf_counter()
        self._start_epoch = None

    def _epoch_started(self, engine: Engine) -> None:
        if self._start_epoch is None:
            self._start_epoch = int(engine.state.epoch) - 1
        self._loss_sum, self._loss_count = 0.0, 0

    def _iteration_completed(self, engine: Engine) -> None:
        value = self.output_transform(engine.state.output)
        loss = float(value.detach().float().mean()) if isinstance(value, torch.Tensor) else float(value)
        if math.isfinite(loss):
            self._loss_sum += loss
            self._loss_count += 1

    def _validation(self) -> tuple[str | None, float | None, int | None]:
        state = getattr(self.validator, "state", None)
        name = getattr(state, "key_metric_name", None)
        metrics = getattr(state, "metrics", None) or {}
        value = metrics.get(name) if name else None
        if isinstance(value, torch.Tensor):
            value = float(value.mean())
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return name, None, None
        return name, float(value), int(getattr(state, "epoch", 0))

    def __call__(self, engine: Engine) -> None:
        """Epoch end: log the line."""
        epoch, max_epochs = int(engine.state.epoch), int(engine.state.max_epochs)
        now = time.perf_counter()
        elapsed = now - self._started_at if self._started_at is not None else 0.0
        done = epoch - (self._start_epoch if self._start_epoch is not None else 0)
        eta = elapsed / done * (max_epochs - epoch) if done > 0 else None
        loss = self._loss_sum / self._loss_count if self._loss_count else None
        macs_left = None
        if self.network is not None and self.reference_macs:
            macs_left = self._measure(unwrap_network(self.network)) / self.reference_macs
        name, metric, metric_epoch = self._validation() if self.validator is not None else (None, None, None)
        self.logger.info(progress_line(epoch, max_epochs, loss, name, metric, metric_epoch, macs_left, elapsed, eta))
