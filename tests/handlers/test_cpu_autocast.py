"""CpuAutocast: bfloat16 forward passes on the CPU for MONAI engines, float32 everywhere after the forward pass."""

from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.losses import DiceCELoss

from monai_pruning.handlers import CpuAutocast


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))


def _batches(n: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    return [{"image": torch.randn(2, 1, 8, 8, generator=generator),
             "label": torch.randint(0, 2, (2, 1, 8, 8), generator=generator).float()} for _ in range(n)]


def _trainer(network, handlers) -> SupervisedTrainer:
    return SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=_batches(), network=network,
                             optimizer=torch.optim.SGD(network.parameters(), lr=0.1),
                             loss_function=DiceCELoss(to_onehot_y=True, softmax=True), train_handlers=handlers)


def _watch_dtypes(engine, seen: dict) -> None:
    def forward_dtype(module, inputs, output):
        seen.setdefault("forward", []).append(output.dtype)

    engine.network[0].register_forward_hook(forward_dtype)
    def after_loss(e) -> None:
        seen.setdefault("pred", []).append(e.state.output["pred"].dtype)
        seen.setdefault("loss", []).append(e.state.output["loss"])

    engine.add_event_handler(IterationEvents.LOSS_COMPLETED, after_loss)


def test_trainer_forward_runs_in_bfloat16_while_prediction_parameters_and_gradients_stay_float32():
    network = _network()
    trainer = _trainer(network, [CpuAutocast()])
    seen: dict = {}
    _watch_dtypes(trainer, seen)
    trainer.run()
    assert seen["forward"] == [torch.bfloat16, torch.bfloat16]
    assert seen["pred"] == [torch.float32, torch.float32]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in network.parameters())
    assert all(loss.dtype == torch.float32 and torch.isfinite(loss) for loss in seen["loss"])
    assert not torch.is_autocast_enabled('cpu')  # nothing left open after the run


def test_disabled_handler_leaves_training_exactly_as_without_it():
    plain, switched_off = _network(), _network()
    _trainer(plain, []).run()
    seen: dict = {}
    trainer = _trainer(switched_off, [CpuAutocast(enabled=False)])
    _watch_dtypes(trainer, seen)
    trainer.run()
    assert seen["forward"] == [torch.float32, torch.float32]
    for a, b in zip(plain.parameters(), switched_off.parameters()):
        assert torch.equal(a, b)


def test_evaluator_forward_runs_in_bfloat16_and_hands_float32_predictions_to_the_metrics():
    network = _network()
    evaluator = SupervisedEvaluator(device=torch.device("cpu"), val_data_loader=_batches(1), network=network)
    seen: dict = {}
    network[0].register_forward_hook(lambda m, i, o: seen.setdefault("forward", []).append(o.dtype))
    evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED,
                                lambda e: seen.setdefault("pred", []).append(e.state.output["pred"].dtype))
    CpuAutocast().attach(evaluator)  # attached after the watcher: the watcher sees the bfloat16 output
    evaluator.add_event_handler(IterationEvents.FORWARD_COMPLETED,
                                lambda e: seen.setdefault("after", []).append(e.state.output["pred"].dtype))
    evaluator.run()
    assert seen == {"forward": [torch.bfloat16], "pred": [torch.bfloat16], "after": [torch.float32]}


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match="dtype must be one of"):
        CpuAutocast(dtype="int8")
    with pytest.raises(ValueError, match="enabled must be true or false"):
        CpuAutocast(enabled="yes")


def test_sauron_regulariser_runs_in_float32_on_the_bfloat16_forward_pass(monkeypatch):
    from monai.networks.nets import UNet

    from monai_pruning.handlers import SauronPruning
    from monai_pruning.handlers import sauron_pruning

    seen: list[tuple[torch.dtype, bool]] = []
    original = sauron_pruning.delta_opt_and_pooled

    def spy(features, **kwargs):
        seen.append((features.dtype, torch.is_autocast_enabled('cpu')))
        return original(features, **kwargs)

    monkeypatch.setattr(sauron_pruning, "delta_opt_and_pooled", spy)
    torch.manual_seed(0)
    network = UNet(2, 1, 2, channels=(4, 8), strides=(2,), num_res_units=0)
    sauron = SauronPruning(example_shape=(2, 1, 8, 8), plot=False, compile=False)
    trainer = _trainer(network, [sauron, CpuAutocast()])
    trainer.run()
    assert seen and all(entry == (torch.float32, False) for entry in seen)
