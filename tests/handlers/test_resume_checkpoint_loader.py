"""ResumeCheckpointLoader: a checkpoint may lack the objects named optional; everything else must be there."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from torch import nn

from monai_pruning.handlers import ResumeCheckpointLoader


class _Record:
    def __init__(self) -> None:
        self.state = {"_saved": []}

    def state_dict(self) -> dict:
        return self.state

    def load_state_dict(self, state: dict) -> None:
        self.state = state


def _trainer(net: nn.Module) -> SupervisedTrainer:
    return SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=net,
                             optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=nn.MSELoss())


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_a_checkpoint_without_an_optional_object_loads_the_rest_and_starts_that_one_afresh(tmp_path):
    torch.manual_seed(0)
    saved = nn.Conv2d(1, 1, 3)
    torch.save({"model": saved.state_dict()}, tmp_path / "checkpoint.pt")  # e.g. written by a pruning overlay run
    net, record = nn.Conv2d(1, 1, 3), _Record()
    trainer = _trainer(net)
    loader = ResumeCheckpointLoader(load_path=str(tmp_path / "checkpoint.pt"),
                                    load_dict={"model": net, "best_saver": record}, optional=["best_saver"],
                                    name="resume_loader_test")
    lines = _Lines()
    logger = logging.getLogger("resume_loader_test")
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    loader.attach(trainer)
    try:
        trainer._fire_event(Events.STARTED)
    finally:
        logger.removeHandler(lines)
    assert torch.equal(net.weight, saved.weight)
    assert record.state == {"_saved": []}
    assert any("holds no best_saver: started afresh" in line for line in lines.lines)
    assert set(loader.load_dict) == {"model", "best_saver"}  # the next load asks for both again


def test_an_optional_object_the_checkpoint_holds_is_loaded_and_a_required_one_must_be_there(tmp_path):
    net, record = nn.Conv2d(1, 1, 3), _Record()
    torch.save({"model": net.state_dict(), "best_saver": {"_saved": [(0.8, "model_best.pt")]}}, tmp_path / "a.pt")
    ResumeCheckpointLoader(load_path=str(tmp_path / "a.pt"), load_dict={"model": net, "best_saver": record},
                           optional=["best_saver"]).attach(trainer := _trainer(net))
    trainer._fire_event(Events.STARTED)
    assert record.state["_saved"] == [(0.8, "model_best.pt")]

    torch.save({"best_saver": {"_saved": []}}, tmp_path / "b.pt")
    ResumeCheckpointLoader(load_path=str(tmp_path / "b.pt"), load_dict={"model": net, "best_saver": record},
                           optional=["best_saver"]).attach(trainer := _trainer(net))
    with pytest.raises(Exception, match="model"):
        trainer._fire_event(Events.STARTED)
