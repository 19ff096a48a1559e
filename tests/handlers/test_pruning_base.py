from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.engine import load_pruned_network
from monai_pruning.handlers.pruning_base import (
    CHANNELS_PNG,
    HISTORY_CSV,
    HISTORY_JSON,
    PruningHandlerBase,
    PruningHandlerError,
)

SHAPE = (2, 1, 16, 16)


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0, norm="batch")


def _trainer(net: nn.Module, handlers=()) -> SupervisedTrainer:
    data = [{"image": torch.randn(SHAPE), "label": torch.zeros(SHAPE)}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9),
        loss_function=nn.MSELoss(),
        train_handlers=list(handlers),
    )
    trainer.state.epoch, trainer.state.iteration, trainer.state.batch = 1, 1, data[0]
    return trainer


class _FakeValidator:
    def __init__(self, epoch: int, metrics: dict) -> None:
        self.state = SimpleNamespace(epoch=epoch, metrics=metrics, key_metric_name="val_mean_dice")


class _Writer:
    def __init__(self) -> None:
        self.scalars: dict[str, tuple[float, int]] = {}

    def add_scalar(self, tag, value, step):
        self.scalars[tag] = (value, step)


def test_pruner_is_built_lazily_from_the_first_batch_shape_and_remembers_the_unpruned_size():
    net = _unet()
    handler = PruningHandlerBase()
    trainer = _trainer(net, [handler])
    assert handler.pruner is None
    handler._ensure_pruner(trainer)
    assert handler.example_shape == (2, 1, 16, 16)
    assert handler.reference["channels"] == sum(handler.pruner.widths().values()) == 4 + 8 + 16 + 4
    assert handler.reference["params"] == sum(p.numel() for p in net.parameters())


def test_a_data_parallel_network_is_refused_with_one_clear_line_naming_the_alternative():
    handler = PruningHandlerBase(example_shape=SHAPE)
    engine = SimpleNamespace(network=nn.DataParallel(_unet()), optimizer=object())
    with pytest.raises(PruningHandlerError, match=r"wrapped in DataParallel.*use DistributedDataParallel"):
        handler._ensure_pruner(engine)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"example_shape": (2, 16, 16, 0)}, "example_shape"),
        ({"example_shape": "2,1,16"}, "example_shape"),
        ({"min_channels": 0}, "min_channels"),
        ({"min_width_fraction": 1.0}, "min_width_fraction"),
        ({"min_width_fraction": -0.1}, "min_width_fraction"),
        ({"min_width_fraction": True}, "min_width_fraction"),
        ({"metric_mode": "best"}, "metric_mode"),
        ({"summary_writer": object()}, "add_scalar"),
    ],
)
def test_bad_constructor_arguments_are_named_in_the_error(kwargs, message):
    with pytest.raises(PruningHandlerError, match=message):
        PruningHandlerBase(**kwargs)


def test_cut_keeps_the_optimizer_on_the_live_parameters_and_leaves_the_global_rng_alone():
    net = _unet()
    handler = PruningHandlerBase(example_shape=SHAPE)
    trainer = _trainer(net, [handler])
    handler._ensure_pruner(trainer)
    before = torch.random.get_rng_state()
    removed = handler.cut(trainer, {"model.1.submodule.0.conv": [1, 2]})
    assert torch.equal(torch.random.get_rng_state(), before)
    assert removed == {"model.1.submodule.0.conv": 2}
    assert handler.pruner.widths()["model.1.submodule.0.conv"] == 6
    live = {id(p) for p in net.parameters()}
    assert {id(p) for group in trainer.optimizer.param_groups for p in group["params"]} == live
    assert handler.cuts == 1


def test_fresh_metric_is_read_only_when_the_validator_ran_in_this_epoch():
    handler = PruningHandlerBase(validator=_FakeValidator(epoch=1, metrics={"val_mean_dice": torch.tensor(0.75)}))
    engine = SimpleNamespace(state=SimpleNamespace(epoch=1))
    assert handler.fresh_metric(engine) == pytest.approx(0.75)
    engine.state.epoch = 2
    assert handler.fresh_metric(engine) is None
    missing = PruningHandlerBase(validator=_FakeValidator(1, {"acc": 1.0}), metric_name="dice")
    with pytest.raises(PruningHandlerError, match=r"validator metric 'dice' not found; it has \['acc'\]"):
        missing.fresh_metric(SimpleNamespace(state=SimpleNamespace(epoch=1)))


@pytest.mark.parametrize("value", [float("nan"), torch.tensor(float("inf")), None])
def test_a_validation_metric_that_is_not_a_finite_number_stops_with_one_line_naming_it_and_the_epoch(value):
    # it used to become None: the cut of that epoch was never judged and pruning went on
    handler = PruningHandlerBase(validator=_FakeValidator(epoch=7, metrics={"val_mean_dice": value}))
    with pytest.raises(PruningHandlerError, match=r"validation val_mean_dice is (nan|inf|None) at epoch 7"):
        handler.fresh_metric(SimpleNamespace(state=SimpleNamespace(epoch=7)))


def test_a_validator_that_ran_without_metrics_is_refused_instead_of_read_as_no_validation():
    handler = PruningHandlerBase(validator=_FakeValidator(epoch=3, metrics={}))
    with pytest.raises(PruningHandlerError, match=r"the validator ran \(epoch 3\) but computed no metrics"):
        handler.fresh_metric(SimpleNamespace(state=SimpleNamespace(epoch=3)))


def test_record_writes_history_files_plot_tensorboard_metrics_and_a_log_line(tmp_path, caplog):
    net = _unet()
    writer = _Writer()
    handler = PruningHandlerBase(example_shape=SHAPE, output_dir=tmp_path / "out", summary_writer=writer, name="prune")
    trainer = _trainer(net, [handler])
    handler._ensure_pruner(trainer)
    handler.cut(trainer, {"model.1.submodule.1.submodule.conv": list(range(8))})
    with caplog.at_level(logging.INFO, logger="prune"):
        row = handler.record(trainer, {"metric": 0.5, "thresholds": {"a": 0.1}})
    assert row["widths"]["model.1.submodule.1.submodule.conv"] == 8
    assert 0 < row["macs_ratio"] < 1 and 0 < row["params_ratio"] < 1
    assert trainer.state.metrics["params"] == sum(p.numel() for p in net.parameters()) == row["params"]
    assert trainer.state.metrics["macs"] == row["macs"]
    saved = json.loads((tmp_path / "out" / HISTORY_JSON).read_text())
    assert saved == handler.history.rows
    header = (tmp_path / "out" / HISTORY_CSV).read_text().splitlines()[0]
    assert "widths/model.1.submodule.1.submodule.conv" in header and "thresholds/a" in header
    assert (tmp_path / "out" / CHANNELS_PNG).read_bytes()[:4] == b"\x89PNG"
    assert writer.scalars["pruning_base/macs"] == (row["macs"], 1)
    assert "pruning_base/widths/model.0.conv" in writer.scalars
    assert any("of start" in message and "MACs" in message for message in caplog.messages)


def test_tensorboard_dir_gets_an_event_file(tmp_path):
    handler = PruningHandlerBase(example_shape=SHAPE, tensorboard_dir=tmp_path / "tb")
    trainer = _trainer(_unet(), [handler])
    handler._ensure_pruner(trainer)
    handler.record(trainer, {})
    handler._completed(trainer)
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_best_checkpoint_holds_the_best_model_of_the_current_architecture_only(tmp_path):
    net = _unet()
    best = tmp_path / "best" / "model.pt"
    handler = PruningHandlerBase(example_shape=SHAPE, best_checkpoint=best)
    trainer = _trainer(net, [handler])
    handler._ensure_pruner(trainer)
    handler.maybe_save_best(trainer, 0.9)
    first = best.read_bytes()
    handler.maybe_save_best(trainer, 0.8)  # worse, same architecture: kept
    assert best.read_bytes() == first
    handler.cut(trainer, {"model.1.submodule.0.conv": [0, 1, 2]})
    handler.maybe_save_best(trainer, 0.7)  # worse than the unpruned 0.9, but the first of the pruned architecture
    content = torch.load(best, weights_only=True)
    assert set(content) == {"pruning", "model"}
    fresh = load_pruned_network(_unet(), best)
    assert fresh.model[1].submodule[0].conv.out_channels == 5
    for key, value in net.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[key], value)
    assert not list(best.parent.glob(".*.tmp"))


def test_state_dict_loads_with_weights_only_and_restores_into_a_fresh_handler():
    net = _unet()
    handler = PruningHandlerBase(example_shape=SHAPE)
    trainer = _trainer(net, [handler])
    handler._ensure_pruner(trainer)
    handler.cut(trainer, {"model.0.conv": [0]})
    handler.val_metrics = [0.5, 0.6]
    handler.record(trainer, {"metric": 0.6})
    buffer = io.BytesIO()
    torch.save(handler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    fresh = PruningHandlerBase()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == handler.state_dict()
    assert fresh.pruner is None and fresh.example_shape == SHAPE


def test_min_width_fraction_floors_each_group_at_a_share_of_its_starting_width_across_cuts_and_resume():
    net = _unet()  # groups of 4, 8, 16 and 4 channels
    handler = PruningHandlerBase(example_shape=SHAPE, min_channels=2, min_width_fraction=0.3)
    trainer = _trainer(net, [handler])
    handler._ensure_pruner(trainer)
    widths = handler.pruner.widths()
    assert handler.reference["widths"] == widths
    # ceil(0.3 * width), never below min_channels: 4 -> 2, 8 -> 3, 16 -> 5
    assert {g: handler.removal_floor(g) for g in widths} == {
        g: max(2, -(-3 * w // 10)) for g, w in widths.items()
    }
    deep = "model.1.submodule.1.submodule.conv"
    assert widths[deep] == 16
    handler.cut(trainer, {deep: list(range(10))})
    assert handler.removal_floor(deep) == 5  # measured on the starting 16 channels, not on the 6 left
    # the starting widths travel with the state (plain data), so a resumed run keeps the same floors
    buffer = io.BytesIO()
    torch.save(handler.state_dict(), buffer)
    buffer.seek(0)
    resumed = PruningHandlerBase(example_shape=SHAPE, min_width_fraction=0.3)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    resumed._ensure_pruner(_trainer(net, [resumed]))
    assert resumed.reference["widths"] == widths and resumed.removal_floor(deep) == 5


def test_a_state_without_starting_widths_cannot_resume_with_a_width_floor():
    handler = PruningHandlerBase(example_shape=SHAPE)
    net = _unet()
    handler._ensure_pruner(_trainer(net, [handler]))
    state = handler.state_dict()
    del state["reference"]["widths"]  # a state written before min_width_fraction existed
    resumed = PruningHandlerBase(example_shape=SHAPE, min_width_fraction=0.25)
    resumed.load_state_dict(state)
    with pytest.raises(PruningHandlerError, match=r"predates `min_width_fraction`.*min_width_fraction=0"):
        resumed._ensure_pruner(_trainer(net, [resumed]))
    plain = PruningHandlerBase(example_shape=SHAPE)  # without the floor it resumes as before
    plain.load_state_dict(state)
    plain._ensure_pruner(_trainer(net, [plain]))


def test_loading_another_methods_state_is_refused():
    state = PruningHandlerBase().state_dict()
    state["method"] = "sauron"
    with pytest.raises(PruningHandlerError, match=r"holds a 'sauron' pruning state, this is 'base'"):
        PruningHandlerBase().load_state_dict(state)
