"""EpochProgress: one line per epoch with the running loss, the latest validation metric, the MACs left and an ETA."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanSquaredError, ValidationHandler, from_engine
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers import EpochProgress
from monai_pruning.handlers.epoch_progress import (
    LOGGER_NAME,
    format_duration,
    parse_progress_line,
    progress_line,
    read_progress,
)
from monai_pruning.measure import measure_complexity

SHAPE = (2, 1, 16, 16)


def _batches(count: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(SHAPE, generator=generator),
             "label": torch.randn((2, 2, 16, 16), generator=generator)} for _ in range(count)]


def _run(epochs: int, cut_at_epoch: int, val_interval: int, caplog) -> tuple[list[str], list[list[float]], UNet]:
    """Train a tiny UNet, validated every ``val_interval`` epochs, with a cut at the end of ``cut_at_epoch``."""
    torch.manual_seed(0)
    network = UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1)
    metric = MeanSquaredError(output_transform=from_engine(["pred", "label"]))
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=_batches(1), network=network,
                                    key_val_metric={"val_mse": metric})
    losses: list[list[float]] = []
    pruner = ChannelPruner(network, SHAPE)

    class Cut:
        def attach(self, engine):
            engine.add_event_handler(Events.EPOCH_STARTED, lambda e: losses.append([]))
            engine.add_event_handler(Events.ITERATION_COMPLETED,
                                     lambda e: losses[-1].append(float(e.state.output[0]["loss"])))
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

        def __call__(self, engine):
            if engine.state.epoch == cut_at_epoch:
                pruner.cut({group: [0, 1] for group in list(pruner.prunable_groups)[:2]})

    progress = EpochProgress(network=network, example_shape=SHAPE, validator=evaluator)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=_batches(3), network=network,
        optimizer=torch.optim.SGD(network.parameters(), lr=0.01), loss_function=torch.nn.MSELoss(),
        train_handlers=[ValidationHandler(validator=evaluator, interval=val_interval, epoch_level=True), Cut(),
                        progress],
    )
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        trainer.run()
    lines = [record.getMessage() for record in caplog.records if record.name == LOGGER_NAME]
    return lines, losses, network


def test_one_line_per_epoch_with_the_mean_loss_the_latest_metric_and_the_macs_left_after_a_cut(caplog):
    full = measure_complexity(UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1).eval(), (1, 1, 16, 16)).macs
    lines, losses, network = _run(epochs=4, cut_at_epoch=2, val_interval=2, caplog=caplog)
    assert len(lines) == 4
    pruned = measure_complexity(network.eval(), (1, 1, 16, 16)).macs
    assert pruned < full
    for epoch, line in enumerate(lines, start=1):
        assert line.startswith(f"epoch {epoch}/4  loss {sum(losses[epoch - 1]) / 3:.4f}  ")
        assert f"MACs left {100 * (1.0 if epoch < 2 else pruned / full):.1f}%" in line
    assert "val_mse -" in lines[0]  # nothing validated yet
    assert re.search(r"val_mse \d\.\d{4}  ", lines[1])  # validated this epoch: no epoch mark
    assert re.search(r"val_mse \d\.\d{4} \(epoch 2\)  ", lines[2])  # the last validation was at epoch 2
    assert all(re.search(r"elapsed \d+:\d\d  ETA \d+:\d\d$", line) for line in lines)
    assert lines[-1].endswith("ETA 0:00")


def test_a_resumed_run_estimates_the_time_left_from_the_epochs_it_ran_not_from_epoch_zero(caplog, monkeypatch):
    from ignite.engine import Engine

    from monai_pruning.handlers import epoch_progress

    clock = [1000.0]
    monkeypatch.setattr(epoch_progress.time, "perf_counter", lambda: clock[0])
    trainer = Engine(lambda engine, batch: 0.5)
    EpochProgress(output_transform=lambda output: output).attach(trainer)

    def restore_checkpoint(engine):  # as MONAI's CheckpointLoader, attached after the progress handler
        engine.state.epoch = 6
        engine.state.iteration = 6 * 2

    def one_minute_per_epoch(engine):
        clock[0] += 60.0

    trainer.add_event_handler(Events.STARTED, restore_checkpoint)
    trainer.add_event_handler(Events.EPOCH_STARTED, one_minute_per_epoch)
    with caplog.at_level(logging.INFO, logger=LOGGER_NAME):
        trainer.run([0, 1], max_epochs=10)
    lines = [record.getMessage() for record in caplog.records if record.name == LOGGER_NAME]
    assert [line.split("/")[0] for line in lines] == [f"epoch {e:2d}" for e in range(7, 11)]
    assert lines[0].endswith("elapsed 1:00  ETA 3:00")  # 3 epochs to go at 1 minute each
    assert lines[2].endswith("elapsed 3:00  ETA 1:00")


def test_progress_line_and_durations_read_as_documented():
    line = progress_line(4, 20, 0.42131, "val_mean_dice", 0.612, 2, 0.4312, 42.4, 130.0)
    assert line == "epoch  4/20  loss 0.4213  val_mean_dice 0.6120 (epoch 2)  MACs left 43.1%  elapsed 0:42  ETA 2:10"
    empty = progress_line(1, 5, None, None, None, None, None, 0.0, None)
    assert empty == "epoch 1/5  loss -  validation -  MACs left -  elapsed 0:00  ETA -"
    assert "(before training)" in progress_line(1, 5, 0.1, "m", 0.5, 0, 1.0, 1.0, 4.0)
    assert format_duration(75.4) == "1:15" and format_duration(3725) == "1:02:05" and format_duration(-3) == "0:00"


@pytest.mark.parametrize("shape", [(2, 16), (2, 1, 0, 16), [2, 1, 16.0, 16]])
def test_a_bad_example_shape_is_one_line_naming_the_argument(shape):
    with pytest.raises(ValueError, match=r"^EpochProgress: `example_shape` must be positive ints"):
        EpochProgress(example_shape=shape)


def test_a_network_without_a_shape_is_refused_before_training():
    with pytest.raises(ValueError, match=r"^EpochProgress: `network` needs `example_shape`"):
        EpochProgress(network=UNet(2, 1, 2, (4, 8), (2,)))


@pytest.mark.parametrize(
    "values",
    [
        (4, 20, 0.4213, "val_mean_dice", 0.612, 2, 0.431, 42.0, 130.0),  # an older validation
        (12, 100, 0.2, "val_mean_dice", 0.5826, 12, 0.9259, 75.0, 3600.0),  # validated this epoch
        (1, 10, 0.1, "val_mse", 0.25, 0, 1.0, 1.0, 9.0),  # the validation before training
        (6, 100, None, None, None, None, None, 3.0, None),  # nothing known
    ],
)
def test_a_logged_progress_line_reads_back_as_the_values_it_shows(values):
    epoch, max_epochs, loss, name, metric, metric_epoch, macs_left = values[:7]
    line = f"2026-12-06 12:43:47,905 - {LOGGER_NAME} - INFO - " + progress_line(*values)
    assert parse_progress_line(line) == {
        "epoch": epoch, "max_epochs": max_epochs, "loss": loss, "metric_name": name or "validation",
        "metric": metric, "metric_epoch": metric_epoch,
        "macs_left": None if macs_left is None else round(macs_left, 3),
    }


def test_progress_read_from_a_resumed_runs_log_keeps_each_epochs_last_line_in_epoch_order(caplog):
    lines, _, _ = _run(epochs=4, cut_at_epoch=2, val_interval=2, caplog=caplog)
    # killed after epoch 3 and resumed from its epoch-2 checkpoint: epoch 3 is logged twice, the second time last
    resumed_epoch_3 = lines[2].replace("loss ", "loss 9", 1)
    log = ["$ python -m monai.bundle run ...", *lines[:3], "Engine run resuming from iteration 6, epoch 2",
           resumed_epoch_3, lines[3]]
    rows = read_progress(log)
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[2] == parse_progress_line(resumed_epoch_3)
    assert rows[0]["metric"] is None and rows[1]["metric_epoch"] == 2 and rows[3]["metric_epoch"] == 4
    assert rows[0]["macs_left"] == 1.0 > rows[3]["macs_left"]
