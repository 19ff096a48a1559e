from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader
from torch import nn

from monai_pruning.handlers.atomic_checkpoint_saver import AtomicCheckpointSaver


def _trainer(epochs: int) -> tuple[SupervisedTrainer, dict]:
    torch.manual_seed(0)
    net = nn.Conv2d(1, 1, 3, padding=1)
    data = [{"image": torch.randn(2, 1, 8, 8), "label": torch.rand(2, 1, 8, 8)}]
    trainer = SupervisedTrainer(
        device=torch.device("cpu"), max_epochs=epochs, train_data_loader=data, network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1), loss_function=nn.MSELoss(),
    )
    return trainer, {"model": net, "trainer": trainer}


def _run(save_dir, epochs: int, n_saved: int = 1, resume_from: str | None = None) -> None:
    trainer, objects = _trainer(epochs)
    if resume_from is not None:
        CheckpointLoader(load_path=str(save_dir / resume_from), load_dict=objects).attach(trainer)
    AtomicCheckpointSaver(save_dir=str(save_dir), save_dict=objects, save_interval=1, n_saved=n_saved).attach(trainer)
    trainer.run()


def _files(save_dir) -> list[str]:
    return sorted(path.name for path in save_dir.iterdir())


def test_a_resumed_run_keeps_n_saved_interval_checkpoints_instead_of_leaving_the_earlier_runs_files(tmp_path):
    _run(tmp_path, epochs=3)
    assert _files(tmp_path) == ["checkpoint_epoch=3.pt"]
    _run(tmp_path, epochs=5, resume_from="checkpoint_epoch=3.pt")
    assert _files(tmp_path) == ["checkpoint_epoch=5.pt"]
    resumed = torch.load(tmp_path / "checkpoint_epoch=5.pt", weights_only=True)
    assert resumed["trainer"]["iteration"] == 5  # one iteration per epoch: the run went on from epoch 3


def test_adoption_trims_to_n_saved_and_leaves_checkpoints_past_the_resumed_epoch_alone(tmp_path):
    _run(tmp_path, epochs=3, n_saved=2)
    assert _files(tmp_path) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=3.pt"]
    later_run = tmp_path / "checkpoint_epoch=9.pt"  # e.g. a longer run's file, not this run's past
    later_run.write_bytes((tmp_path / "checkpoint_epoch=3.pt").read_bytes())
    (tmp_path / "notes_epoch=1.pt").write_bytes(b"")  # another saver's name pattern
    _run(tmp_path, epochs=4, n_saved=1, resume_from="checkpoint_epoch=3.pt")
    assert _files(tmp_path) == ["checkpoint_epoch=4.pt", "checkpoint_epoch=9.pt", "notes_epoch=1.pt"]


def test_a_fresh_run_adopts_nothing(tmp_path):
    (tmp_path / "checkpoint_epoch=7.pt").write_bytes(b"")
    _run(tmp_path, epochs=2)
    assert _files(tmp_path) == ["checkpoint_epoch=2.pt", "checkpoint_epoch=7.pt"]


def _validate_once(save_dir, score: float, state: dict | None = None) -> AtomicCheckpointSaver:
    """One evaluation reporting ``score`` as its key metric, with a best-model saver (restored from ``state``)."""
    net = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        net.weight.fill_(score)
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=[], network=net,
                                    key_val_metric=None)
    saver = AtomicCheckpointSaver(save_dir=str(save_dir), save_dict={"model": net}, save_key_metric=True,
                                  key_metric_name="dice", key_metric_filename="model_best.pt")
    saver.attach(evaluator)
    if state is not None:
        saver.load_state_dict(torch.load(state, weights_only=True))
    evaluator.state.metrics = {"dice": score}
    evaluator.state.key_metric_name = "dice"
    evaluator._fire_event(Events.EPOCH_COMPLETED)
    return saver


def _best_weight(save_dir) -> float:
    return torch.load(save_dir / "model_best.pt", weights_only=True)["weight"].flatten()[0].item()


def test_a_resumed_run_replaces_the_best_model_only_with_a_better_score(tmp_path):
    saver = _validate_once(tmp_path, 0.8)
    torch.save(saver.state_dict(), tmp_path / "resume_state.pt")  # what the resume checkpoint holds
    _validate_once(tmp_path, 0.5, state=tmp_path / "resume_state.pt")
    assert _best_weight(tmp_path) == pytest.approx(0.8)
    _validate_once(tmp_path, 0.9, state=tmp_path / "resume_state.pt")
    assert _best_weight(tmp_path) == pytest.approx(0.9)


def test_only_a_key_metric_saver_has_state_to_resume(tmp_path):
    trainer, objects = _trainer(1)
    with pytest.raises(ValueError, match="only a key-metric saver"):
        AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict=objects, save_interval=1).state_dict()
