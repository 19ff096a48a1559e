from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver, MeanSquaredError, from_engine
from monai.networks.nets import DynUNet, UNet
from monai.utils import CommonKeys
from torch import nn

from monai_pruning.engine import ChannelPruner, PruningRecord
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.one_shot_curve import CURVE_CSV, CURVE_PNG, evaluator_metric_fn, one_shot_curve
from monai_pruning.handlers.pruning_base import PruningHandlerError
from monai_pruning.handlers.taylorfo_pruning import TaylorFOPruning
from monai_pruning.handlers.taylorfo_scoring import score_channels

SHAPE = (2, 1, 16, 16)


def _unet(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=0, norm="batch").to(dtype)


def _data(batches: int = 2, dtype=torch.float32) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn((2 * batches, *SHAPE[1:]), generator=generator, dtype=dtype)
    labels = (images > 0.3).to(dtype)
    return [{"image": images[i : i + 2], "label": labels[i : i + 2]} for i in range(0, len(images), 2)]


def _trainer(net, handlers, epochs, data=None, loss=None) -> SupervisedTrainer:
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=data if data is not None else _data(),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9),
        loss_function=loss if loss is not None else nn.BCEWithLogitsLoss(),
        train_handlers=list(handlers),
    )


class _ScriptedValidator:
    """Stands in for an evaluator run by ValidationHandler: a fixed metric per trainer epoch."""

    def __init__(self, metrics_by_epoch: dict[int, float]) -> None:
        self.metrics_by_epoch = metrics_by_epoch
        self.state = SimpleNamespace(epoch=0, metrics={}, key_metric_name="val_dice")

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        if engine.state.epoch in self.metrics_by_epoch:  # epochs without a value: no validation ran
            self.state.epoch = engine.state.epoch
            self.state.metrics = {"val_dice": self.metrics_by_epoch[engine.state.epoch]}


class _EpochProbe:
    """A handler running ``fn(engine)`` at epoch end, at its place in the handler list."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.fn)


def _gate_derivatives(net, taps_map, group, batch, loss_fn):
    """dL_b/d(gate_bc) for a per-sample gate on group channel c at every consumer input; also dL/dy per sample."""
    modules = dict(net.named_modules())
    gate = torch.ones(batch["image"].shape[0], len(taps_map[group][0][1]), dtype=batch["image"].dtype,
                      requires_grad=True)

    def hook(module, args, positions):
        x = args[0]
        scale = torch.ones(x.shape[:2], dtype=x.dtype).index_copy(1, torch.tensor(positions), gate)
        return (x * scale[..., None, None],)

    handles = [
        modules[name].register_forward_pre_hook(lambda m, a, p=pos: hook(m, a, p)) for name, pos in taps_map[group]
    ]
    pred = net(batch["image"])
    loss = loss_fn(pred, batch["label"])
    grad_gate, grad_out = torch.autograd.grad(loss, [gate, pred])
    for handle in handles:
        handle.remove()
    return grad_gate, grad_out


def test_handler_score_is_activation_times_gradient_summed_over_consumers_with_unit_output_gradient():
    net = _unet(torch.float64)
    data = _data(batches=1, dtype=torch.float64)
    handler = TaylorFOPruning(example_shape=SHAPE, score_batches=1, plot=False)
    trainer = _trainer(net, [handler], epochs=1, data=data)
    trainer.state.batch, trainer.state.dataloader = data[0], data
    handler._ensure_pruner(trainer)
    scores = handler.score(trainer)

    net.eval()  # what scoring does to this UNet: BatchNorm on running statistics (no dropout, no DS heads)
    taps_map = handler.pruner.graph.consumer_taps()
    loss_fn = nn.BCEWithLogitsLoss()
    for group in handler.pruner.prunable_groups:
        z, grad_out = _gate_derivatives(net, taps_map, group, data[0], loss_fn)
        norms = grad_out.flatten(1).norm(dim=1)
        expected = (z / norms[:, None]).abs().sum(dim=0)
        torch.testing.assert_close(scores[group], expected)


def test_signed_unnormalised_score_matches_the_first_order_loss_change_of_zeroing_a_channel():
    net = _unet(torch.float64).eval()
    batch = _data(batches=1, dtype=torch.float64)[0]
    pruner = ChannelPruner(net, SHAPE)
    taps_map = {g: t for g, t in pruner.graph.consumer_taps().items() if g in pruner.prunable_groups}
    taps = FeatureTaps(net, taps_map, gradients=True)
    loss_fn = nn.BCEWithLogitsLoss(reduction="sum")
    scores = score_channels(net, taps, [(batch["image"], batch["label"])], loss_fn, reduction="signed",
                            normalize_gradient=False)
    taps.remove()
    group, channel, eps = "model.1.submodule.0.conv", 3, 1e-6
    modules = dict(net.named_modules())

    def loss_with_gate(value: float) -> float:
        def scale(module, args, positions):
            x = args[0].clone()
            x[:, positions[channel]] *= value
            return (x,)

        handles = [
            modules[n].register_forward_pre_hook(lambda m, a, p=pos: scale(m, a, p)) for n, pos in taps_map[group]
        ]
        with torch.no_grad():
            value = loss_fn(net(batch["image"]), batch["label"]).item()
        for handle in handles:
            handle.remove()
        return value

    # removing the channel changes the loss by -z to first order: (L(1) - L(1 - eps)) / eps = dL/dgate = z
    finite_difference = (loss_with_gate(1.0) - loss_with_gate(1.0 - eps)) / eps
    assert scores[group][channel].item() == pytest.approx(abs(finite_difference), rel=1e-4)


def test_scoring_leaves_batchnorm_statistics_modes_parameter_grads_and_optimizer_alone():
    net = _unet()
    handler = TaylorFOPruning(example_shape=SHAPE, plot=False)
    data = _data()
    trainer = _trainer(net, [handler], epochs=1, data=data)
    trainer.state.batch, trainer.state.dataloader = data[0], data
    handler._ensure_pruner(trainer)
    net.train()
    net.model[0].adn.N.eval()
    modes = {name: m.training for name, m in net.named_modules()}
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    for p in net.parameters():
        p.grad = torch.full_like(p, 0.5)
    handler.score(trainer)
    assert {name: m.training for name, m in net.named_modules()} == modes
    for key, value in net.named_buffers():
        torch.testing.assert_close(value, buffers[key])
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in net.parameters())
    assert trainer.optimizer.state_dict()["state"] == {}


def test_random_gradient_scores_need_no_labels_and_are_reproducible_by_seed():
    net = _unet()
    pruner = ChannelPruner(net, SHAPE)
    taps = FeatureTaps(net, {g: t for g, t in pruner.graph.consumer_taps().items() if g in pruner.prunable_groups},
                       gradients=True)
    batches = [(d["image"], None) for d in _data()]

    def run(seed):
        return score_channels(net, taps, batches, gradient="random", generator=torch.Generator().manual_seed(seed))

    first, again, other = run(3), run(3), run(4)
    assert set(first) == set(pruner.prunable_groups)
    for group in first:
        torch.testing.assert_close(first[group], again[group])
    assert any(not torch.allclose(first[g], other[g]) for g in first)


def test_handler_cuts_globally_keeps_the_optimizer_stepping_and_stops_at_the_macs_target(tmp_path):
    net = _unet()
    evaluated = []
    handler = TaylorFOPruning(
        prune_count=6, target_macs_reduction=0.3, example_shape=SHAPE, score_batches=1, output_dir=tmp_path, plot=False,
        one_shot_steps=[4, 0.5], one_shot_evaluate=lambda n: evaluated.append(n) or 0.5,
    )
    trainer = _trainer(net, [handler], epochs=4)
    before = {}

    @trainer.on(Events.EPOCH_STARTED)
    def keep(engine):
        before[engine.state.epoch] = {k: v.clone() for k, v in engine.network.state_dict().items()}

    trainer.run()
    rows = handler.history.rows
    assert rows[0]["removed_now"] == 6 and rows[0]["channels"] == 8 + 16 + 32 + 8 - 6
    assert rows[-1]["phase"] == "finetune" and handler.stop_reason == "target"
    stopped_at = next(row["epoch"] for row in rows if "stop:target" in row["events"])
    assert handler.plot_marks() == {"pruning stopped (target)": stopped_at}
    assert rows[-1]["macs_ratio"] <= 0.7
    assert rows[-1]["removed_now"] == 0  # pruning has stopped, training goes on
    # parameters of the pruned network keep changing: the optimizer follows the cut
    last = before[4]
    assert any(not torch.equal(v, last[k]) for k, v in net.state_dict().items() if k.endswith("weight"))
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    # one-shot curve at the first step: 0, 4 and half of the channels, on copies
    assert len(evaluated) == 3 and all(n is not net for n in evaluated)
    assert (tmp_path / CURVE_CSV).read_text().count("\n") == 4 and (tmp_path / CURVE_PNG).exists()


def test_global_cuts_leave_every_group_its_min_width_fraction():
    net = _unet()  # groups of 8, 16, 32 and 8 channels: 64 in all
    handler = TaylorFOPruning(prune_count=40, example_shape=SHAPE, score_batches=1, plot=False, min_width_fraction=0.25)
    _trainer(net, [handler], epochs=2).run()
    widths = handler.history.rows[-1]["widths"]
    start = {"model.0.conv": 8, "model.1.submodule.0.conv": 16, "model.1.submodule.1.submodule.conv": 32,
             "model.1.submodule.2.conv": 8}
    # 64 - 40 channels left after the first step, then only what the floors allow: a quarter of every group
    assert handler.history.rows[0]["channels"] == 24
    assert widths == {group: width // 4 for group, width in start.items()}



@pytest.mark.parametrize("criterion", ["taylor", "random", "weight_gradient"])
def test_a_width_multiple_keeps_every_cut_group_at_a_multiple_and_the_physical_network_equal_to_its_record(criterion):
    net = _unet()  # groups of 8, 16, 32 and 8 channels
    handler = TaylorFOPruning(criterion=criterion, prune_count=12, width_multiple=4, example_shape=SHAPE,
                              score_batches=1, plot=False)
    _trainer(net, [handler], epochs=3).run()
    rows = handler.history.rows
    assert sum(row["removed_now"] for row in rows) > 0
    for row in rows:
        assert all(width % 4 == 0 for width in row["widths"].values()), row["widths"]
    convs = {name: module.out_channels for name, module in net.named_modules() if hasattr(module, "out_channels")}
    assert {group: convs[group] for group in rows[-1]["widths"]} == rows[-1]["widths"]


def _random_criterion_widths(seed: int, data_seed: int) -> list[dict[str, int]]:
    net = _unet()
    handler = TaylorFOPruning(criterion="random", seed=seed, prune_count=20, min_channels=3, example_shape=SHAPE,
                              plot=False)

    def no_scoring(engine):
        raise AssertionError("the random criterion ran a scoring pass")

    handler.score = no_scoring
    images = torch.randn((4, *SHAPE[1:]), generator=torch.Generator().manual_seed(data_seed))
    data = [{"image": images[i : i + 2], "label": (images[i : i + 2] > 0).float()} for i in (0, 2)]
    _trainer(net, [handler], epochs=3, data=data).run()
    assert [row["removed_now"] for row in handler.history.rows] == [20, 20, 12]  # 64 channels, 4 groups floored at 3
    return [row["widths"] for row in handler.history.rows]


def test_random_criterion_cuts_by_seed_alone_without_scoring_and_respects_min_channels():
    widths = _random_criterion_widths(seed=5, data_seed=0)
    assert widths == _random_criterion_widths(seed=5, data_seed=1)  # other data, same seed: the same cuts
    assert widths[0] != _random_criterion_widths(seed=6, data_seed=0)[0]
    assert set(widths[-1].values()) == {3}  # every group down to its floor after 52 of 64 channels


def test_a_metric_drop_undoes_the_last_cut_and_stops_pruning():
    net = _unet()
    validator = _ScriptedValidator({1: 0.80, 2: 0.79, 3: 0.50, 4: 0.60, 5: 0.60})
    handler = TaylorFOPruning(prune_count=5, tolerance=0.05, validator=validator, example_shape=SHAPE, plot=False,
                              score_batches=1)
    saved = {}

    def before_pruning(engine):
        saved[("before", engine.state.epoch)] = copy.deepcopy(net.state_dict())

    def after_pruning(engine):
        saved[("after", engine.state.epoch)] = copy.deepcopy(net.state_dict())

    trainer = _trainer(net, [validator, _EpochProbe(before_pruning), handler, _EpochProbe(after_pruning)], epochs=5)
    lr = trainer.optimizer.param_groups[0]["lr"] = 0.04  # changed after the snapshot: must survive the rollback
    trainer.run()
    rows = handler.history.rows
    assert handler.baseline == pytest.approx(0.80)
    assert [row["removed_now"] for row in rows] == [5, 5, 0, 0, 0]
    assert "rollback" in rows[2]["events"] and rows[2]["phase"] == "finetune"
    assert handler.stop_reason == "tolerance" and handler.snapshot is None
    assert rows[2]["widths"] == rows[0]["widths"]  # the second cut is undone, the first (accepted) one stays
    restored, before_second_cut = saved[("after", 3)], saved[("before", 2)]
    assert restored.keys() == before_second_cut.keys()
    for key, value in before_second_cut.items():
        torch.testing.assert_close(restored[key], value)
    assert {id(p) for g in trainer.optimizer.param_groups for p in g["params"]} == {id(p) for p in net.parameters()}
    assert all(p in trainer.optimizer.state for p in net.parameters())  # momentum restored with the weights
    assert trainer.optimizer.param_groups[0]["lr"] == lr


def test_a_metric_drop_undoes_every_cut_since_the_last_validated_network():
    net = _unet()
    # validation at epochs 1 (baseline) and 4 only: the cuts of epochs 1, 2 and 3 are judged together at epoch 4
    validator = _ScriptedValidator({1: 0.80, 4: 0.50})
    handler = TaylorFOPruning(prune_count=5, tolerance=0.05, validator=validator, example_shape=SHAPE, plot=False,
                              score_batches=1)
    saved = {}

    def before_pruning(engine):
        saved[engine.state.epoch] = copy.deepcopy(net.state_dict())

    trainer = _trainer(net, [validator, _EpochProbe(before_pruning), handler], epochs=4)
    trainer.run()
    rows = handler.history.rows
    assert [row["removed_now"] for row in rows] == [5, 5, 5, 0]
    assert "rollback" in rows[3]["events"] and handler.stop_reason == "tolerance"
    assert sum(rows[3]["widths"].values()) == sum(rows[0]["widths"].values()) + 5  # the unpruned network is back
    for key, value in saved[1].items():  # the weights just before the first unjudged cut
        torch.testing.assert_close(net.state_dict()[key], value)


def test_a_failed_validation_pauses_pruning_and_a_recovered_one_accepts_the_cuts(tmp_path):
    net = _unet()
    # 0.70 fails (tolerance 0.05 below 0.80), 0.78 is back within tolerance one validation later
    validator = _ScriptedValidator({1: 0.80, 2: 0.70, 3: 0.78, 4: 0.79})
    handler = TaylorFOPruning(prune_count=5, tolerance=0.05, recovery_validations=2, validator=validator,
                              example_shape=SHAPE, plot=False, score_batches=1, best_checkpoint=tmp_path / "best.pt")
    best_files = {}

    def read_best(engine):
        best_files[engine.state.epoch] = (tmp_path / "best.pt").read_bytes()

    _trainer(net, [validator, handler, _EpochProbe(read_best)], epochs=4).run()
    rows = handler.history.rows
    assert [row["removed_now"] for row in rows] == [5, 0, 5, 5]
    assert "recovering" in rows[1]["events"] and "paused" in rows[1]["events"]
    assert "recovered" in rows[2]["events"] and "rollback" not in ",".join(r["events"] for r in rows)
    assert handler.phase == "pruning" and handler.failed_validations == 0
    assert best_files[2] == best_files[1]  # the failed validation never becomes the best checkpoint
    assert best_files[3] != best_files[2]


def test_a_metric_that_does_not_recover_in_time_undoes_the_cuts_and_stops_pruning():
    net = _unet()
    validator = _ScriptedValidator({1: 0.80, 2: 0.70, 3: 0.74, 4: 0.72, 5: 0.80})
    handler = TaylorFOPruning(prune_count=5, tolerance=0.05, recovery_validations=2, validator=validator,
                              example_shape=SHAPE, plot=False, score_batches=1)
    saved = {}

    def before_pruning(engine):
        saved[engine.state.epoch] = copy.deepcopy(net.state_dict())

    _trainer(net, [validator, _EpochProbe(before_pruning), handler], epochs=5).run()
    rows = handler.history.rows
    assert [row["removed_now"] for row in rows] == [5, 0, 0, 0, 0]
    assert ["recovering" in row["events"] for row in rows] == [False, True, True, False, False]
    assert "rollback" in rows[3]["events"] and handler.stop_reason == "tolerance" and rows[3]["phase"] == "finetune"
    assert sum(rows[3]["widths"].values()) == sum(rows[0]["widths"].values()) + 5  # unpruned again
    assert handler.failed_validations == 0 and handler.snapshot is None


def test_a_nan_validation_metric_stops_training_instead_of_pruning_on_unjudged():
    net = _unet()
    validator = _ScriptedValidator({1: 0.80, 2: float("nan"), 3: 0.80})
    handler = TaylorFOPruning(prune_count=5, tolerance=0.05, validator=validator, example_shape=SHAPE, plot=False,
                              score_batches=1)
    with pytest.raises(PruningHandlerError, match=r"TaylorFOPruning: validation val_dice is nan at epoch 2"):
        _trainer(net, [validator, handler], epochs=3).run()
    assert [row["removed_now"] for row in handler.history.rows] == [5]  # nothing cut after the unjudged epoch


def test_every_history_row_names_the_checkpoint_the_run_started_from():
    start = {"path": "/bundle/models/model_baseline.pt", "epoch": 20, "sha256": "0f" * 32, "pruned_modules": 0}
    handler = TaylorFOPruning(prune_count=3, example_shape=SHAPE, plot=False, score_batches=1, start_checkpoint=start)
    _trainer(_unet(), [handler], epochs=2).run()
    assert [row["start_checkpoint"] for row in handler.history.rows] == [start, start]


def test_first_cut_waits_for_a_validation_baseline():
    net = _unet()
    validator = _ScriptedValidator({2: 0.7})
    handler = TaylorFOPruning(prune_count=3, validator=validator, example_shape=SHAPE, plot=False, score_batches=1)
    _trainer(net, [validator, handler], epochs=2).run()
    assert [row["removed_now"] for row in handler.history.rows] == [0, 3]
    assert "waiting" in handler.history.rows[0]["events"]
    assert handler.baseline == pytest.approx(0.7)


def _mse_evaluator(net: nn.Module) -> SupervisedEvaluator:
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=_data(batches=1),
        network=net,
        key_val_metric={"val_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))},
        decollate=False,
    )


def _run_validated_before_training(tmp_path, epochs: int, resume_from=None):
    net = _unet()
    evaluator = _mse_evaluator(net)
    runs: list[int] = []
    evaluator.add_event_handler(Events.COMPLETED, lambda engine: runs.append(engine.state.epoch))
    handler = TaylorFOPruning(prune_count=3, validator=evaluator, metric_mode="min", baseline_before_training=True,
                              example_shape=SHAPE, plot=False, score_batches=1)
    trainer = _trainer(net, [handler], epochs=epochs)
    save_dict = {"pruning": PruningRecord(net, trainer.optimizer), "model": net, "optimizer": trainer.optimizer,
                 "trainer": trainer, "pruner": handler}
    CheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=None).attach(trainer)
    if resume_from is not None:
        CheckpointLoader(str(resume_from), dict(save_dict)).attach(trainer)
    expected = evaluator_metric_fn(_mse_evaluator(_unet()))(copy.deepcopy(net))
    trainer.run()
    return handler, runs, expected, evaluator


def test_baseline_before_training_validates_the_network_as_loaded_once_and_the_first_epoch_cuts(tmp_path):
    handler, runs, expected, evaluator = _run_validated_before_training(tmp_path, epochs=2)
    assert runs == [0]  # one validation, as epoch 0, before the first iteration
    assert handler.baseline == pytest.approx(expected)
    assert [row["removed_now"] for row in handler.history.rows] == [3, 3]  # no epoch spent waiting for a baseline
    assert all(row["baseline"] == pytest.approx(expected) for row in handler.history.rows)
    assert evaluator_metric_fn(evaluator)(evaluator.network) != pytest.approx(expected)  # it did train


def test_a_resumed_run_keeps_its_baseline_and_does_not_validate_before_training_again(tmp_path):
    full, _, _, _ = _run_validated_before_training(tmp_path / "full", epochs=2)
    checkpoint = next((tmp_path / "full").glob("*epoch=1.pt"))
    resumed, runs, _, _ = _run_validated_before_training(tmp_path / "resumed", epochs=2, resume_from=checkpoint)
    assert runs == []
    assert resumed.baseline == full.baseline
    assert [row["removed_now"] for row in resumed.history.rows] == [3, 3]


def test_iteration_level_schedule_cuts_every_interval_iterations():
    net = _unet()
    handler = TaylorFOPruning(prune_count=2, epoch_level=False, interval=1, example_shape=SHAPE, plot=False,
                              score_batches=1, tolerance=None)
    _trainer(net, [handler], epochs=2).run()
    assert [row["removed_now"] for row in handler.history.rows] == [4, 4]
    assert handler.steps == 4


def test_deep_supervision_network_with_stacked_outputs_is_scored_and_pruned():
    torch.manual_seed(0)
    net = DynUNet(2, 1, 1, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2], filters=[8, 16, 32],
                  deep_supervision=True, deep_supr_num=1, norm_name="batch")

    def loss(pred, label):  # training-mode DynUNet returns (B, heads, C, H, W)
        return sum(nn.functional.binary_cross_entropy_with_logits(pred[:, i], label) for i in range(pred.shape[1]))

    handler = TaylorFOPruning(prune_fraction=0.05, example_shape=SHAPE, plot=False, score_batches=1)
    _trainer(net, [handler], epochs=1, loss=loss).run()
    assert handler.reference["channels"] == 2 * (8 + 16 + 32) + 3 * (16 + 8)  # up-convolutions included
    assert handler.history.rows[-1]["removed_now"] == round(0.05 * 184)
    head = net.deep_supervision_heads[0].conv.conv
    assert head.in_channels == handler.history.rows[-1]["widths"]["upsamples.0.conv_block.conv2.conv"]
    net.train()
    assert net(torch.randn(SHAPE)).shape == (2, 2, 1, 16, 16)


def _resumable_run(tmp_path, epochs: int, resume_from=None, recovery_validations=0):
    net = _unet()
    validator = _ScriptedValidator({1: 0.8, 2: 0.8, 3: 0.4, 4: 0.6, 5: 0.75, 6: 0.8})
    handler = TaylorFOPruning(prune_count=4, validator=validator, tolerance=0.1, example_shape=SHAPE, plot=False,
                              score_batches=1, reduction="sq", recovery_validations=recovery_validations)
    trainer = _trainer(net, [validator, handler], epochs=epochs)
    optimizer = trainer.optimizer
    save_dict = {"pruning": PruningRecord(net, optimizer), "model": net, "optimizer": optimizer, "trainer": trainer,
                 "pruner": handler}
    CheckpointSaver(str(tmp_path / "ckpt"), save_dict, save_interval=1, n_saved=None).attach(trainer)
    if resume_from is not None:
        CheckpointLoader(str(resume_from), dict(save_dict)).attach(trainer)
    trainer.run()
    return net, handler


def test_a_run_resumed_between_a_cut_and_its_rollback_ends_like_an_uninterrupted_one(tmp_path):
    full_net, full = _resumable_run(tmp_path / "full", epochs=4)
    assert "rollback" in full.history.rows[2]["events"]
    checkpoint = next((tmp_path / "full" / "ckpt").glob("*epoch=2.pt"))
    assert torch.load(checkpoint, weights_only=True)["pruner"]["method_state"]["snapshot"] is not None
    resumed_net, resumed = _resumable_run(tmp_path / "resumed", epochs=4, resume_from=checkpoint)
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    for state in (full_state, resumed_state):
        state["history"]["rows"] = [{k: v for k, v in r.items() if k != "time_s"} for r in state["history"]["rows"]]
    assert resumed_state == full_state  # rows, phase, steps, baseline, generator; the snapshot was used and dropped
    for key, value in full_net.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[key], value)


def test_a_run_resumed_while_waiting_for_recovery_ends_like_an_uninterrupted_one(tmp_path):
    full_net, full = _resumable_run(tmp_path / "full", epochs=6, recovery_validations=2)
    assert ["recovering" in row["events"] for row in full.history.rows] == [False] * 2 + [True] * 2 + [False] * 2
    assert "recovered" in full.history.rows[4]["events"]
    checkpoint = next((tmp_path / "full" / "ckpt").glob("*epoch=3.pt"))
    assert torch.load(checkpoint, weights_only=True)["pruner"]["method_state"]["failed_validations"] == 1
    resumed_net, resumed = _resumable_run(tmp_path / "resumed", epochs=6, resume_from=checkpoint,
                                          recovery_validations=2)
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    for state in (full_state, resumed_state):
        state["history"]["rows"] = [{k: v for k, v in r.items() if k != "time_s"} for r in state["history"]["rows"]]
    full_snapshot = full_state["method_state"].pop("snapshot")  # the cut of epoch 6 is not judged yet
    resumed_snapshot = resumed_state["method_state"].pop("snapshot")
    assert resumed_state == full_state
    assert resumed_snapshot["record"] == full_snapshot["record"]
    torch.testing.assert_close(resumed_snapshot["model"], full_snapshot["model"])
    for key, value in full_net.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[key], value)


def test_one_shot_curve_measures_copies_and_leaves_the_network_untouched(tmp_path):
    net = _unet()
    state = copy.deepcopy(net.state_dict())
    x = _data(batches=1)[0]["image"]
    rows = one_shot_curve(net, _data(), lambda n: n.eval()(x).mean().item(), SHAPE, [0.25, 10, 0.5],
                          loss_function=nn.BCEWithLogitsLoss(), output_dir=tmp_path, metric_name="score")
    assert [row["requested"] for row in rows] == [0, 10, 16, 32]
    assert [row["removed"] for row in rows] == [0, 10, 16, 32]
    macs = [row["macs"] for row in rows]
    assert macs == sorted(macs, reverse=True) and macs[0] > macs[-1]
    assert all(isinstance(row["score"], float) for row in rows)
    assert net.state_dict().keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(net.state_dict()[key], value)
    assert not any(m._forward_pre_hooks for m in net.modules())
    assert (tmp_path / CURVE_CSV).exists() and (tmp_path / CURVE_PNG).read_bytes()[:4] == b"\x89PNG"


def test_evaluator_metric_fn_runs_a_monai_evaluator_on_a_copy_and_puts_its_network_back():
    net = _unet()
    copy_net = copy.deepcopy(net)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=_data(batches=1),
        network=net,
        key_val_metric={"val_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))},
        decollate=False,
    )
    seen = []
    evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda engine: seen.append(engine.network))
    value = evaluator_metric_fn(evaluator)(copy_net)
    assert isinstance(value, float) and value > 0
    assert seen == [copy_net] and evaluator.network is net
    with pytest.raises(ValueError, match=r"metric 'dice' not found; it has \['val_mse'\]"):
        evaluator_metric_fn(evaluator, metric_name="dice")(copy_net)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"prune_fraction": 0.0}, "`prune_fraction` must be in \\(0, 1\\]"),
        ({"prune_count": 0}, "`prune_count` must be an int >= 1"),
        ({"width_multiple": 0}, "`width_multiple` must be an int >= 1"),
        ({"reduction": "mean"}, "`reduction` must be one of"),
        ({"gradient": "label"}, "`gradient` must be one of"),
        ({"criterion": "l1"}, "`criterion` must be one of"),
        ({"criterion": "random", "macs_normalize": True}, "`criterion='random'` draws scores per channel"),
        ({"target_macs_reduction": 1.5}, "`target_macs_reduction` must be a fraction"),
        ({"max_step_macs_reduction": 0.0}, "`max_step_macs_reduction` must be a fraction"),
        ({"baseline_metric": 0.8}, "`baseline_metric` needs a `validator`"),
        ({"baseline_before_training": True}, "`baseline_before_training` needs a `validator`"),
        ({"baseline_before_training": "TRUE"}, "`baseline_before_training` needs a `validator`"),
        ({"macs_normalize": "no"}, "`macs_normalize` must be true or false, got 'no'"),
        ({"plot": 1}, "`plot` must be true or false, got 1"),
        ({"one_shot_steps": [0.1]}, "`one_shot_steps` needs a callable `one_shot_evaluate`"),
        ({"recovery_validations": -1}, "`recovery_validations` must be an int >= 0"),
        ({"start_checkpoint": "models/model_baseline.pt"}, "`start_checkpoint` must be None or a dict with 'path'"),
    ],
)
def test_bad_arguments_fail_early_with_a_message_naming_them(kwargs, message):
    with pytest.raises(PruningHandlerError, match=message):
        TaylorFOPruning(**kwargs)


def test_true_and_false_from_the_command_line_are_read_as_what_they_say():
    # `python -m monai.bundle run ... --taylorfo#macs_normalize false` passes the string "false"
    handler = TaylorFOPruning(macs_normalize="false", normalize_gradient="True", baseline_before_training=" False ")
    assert handler.macs_normalize is False and handler.normalize_gradient is True
    assert handler.baseline_before_training is False


def test_loss_output_must_be_a_tensor_or_list_of_tensors():
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 1))
    pruner = ChannelPruner(net, SHAPE)
    taps = FeatureTaps(net, pruner.graph.consumer_taps(), gradients=True)
    with pytest.raises(TypeError, match="network output must be a tensor or a list of tensors"):
        score_channels(net, taps, [(torch.randn(SHAPE), None)], forward=lambda x: {CommonKeys.PRED: net(x)},
                       gradient="random", generator=torch.Generator())


def test_macs_normalize_spends_the_cut_on_the_channels_that_cost_the_most_macs():
    removed_macs = {}
    for normalize in (False, True):
        net = _unet()
        handler = TaylorFOPruning(prune_count=4, example_shape=SHAPE, tolerance=None, macs_normalize=normalize)
        trainer = _trainer(net, [handler], epochs=1)
        seen = {}

        def equal_scores(engine, handler=handler, seen=seen):
            seen["cost"], seen["widths"] = handler.channel_macs(), handler.pruner.widths()
            return {g: torch.ones(s.size) for g, s in handler.pruner.prunable_groups.items()}

        handler.score = equal_scores
        trainer.run()
        removed_macs[normalize] = handler.reference["macs"] - handler.history.rows[0]["macs"]
        if normalize:  # equal importance per channel: the group with the dearest channels loses them
            dearest = max(seen["widths"], key=seen["cost"].get)
            assert handler.history.rows[0]["widths"][dearest] == seen["widths"][dearest] - 4
    assert removed_macs[True] > 2 * removed_macs[False]


def test_a_step_never_removes_more_than_its_share_of_the_starting_macs():
    removed = {}
    for budget in (None, 0.05):
        net = _unet()
        handler = TaylorFOPruning(
            prune_count=30, example_shape=SHAPE, tolerance=None, macs_normalize=True, max_step_macs_reduction=budget
        )
        trainer = _trainer(net, [handler], epochs=2)
        trainer.run()
        reference = handler.reference["macs"]
        macs = [reference] + [row["macs"] for row in handler.history.rows]
        removed[budget] = [(before - after) / reference for before, after in zip(macs, macs[1:])]
    assert min(removed[None]) > 0.1  # 30 channels at once: far more than the budget would allow
    assert all(0 < share <= 0.05 for share in removed[0.05]), removed[0.05]
