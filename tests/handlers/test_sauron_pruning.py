from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import torch
from monai.engines import IterationEvents, SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver, MeanDice, ValidationHandler, from_engine
from monai.networks.nets import UNet
from monai.transforms import Activations, AsDiscrete, Compose
from torch import nn

from monai_pruning.criteria import delta_opt_penalty
from monai_pruning.engine import ChannelPruner, PruningRecord, load_pruned_network
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.pruning_base import HISTORY_JSON, PruningHandlerError
from monai_pruning.handlers.sauron_pruning import PENALTY_KEY, SEG_LOSS_KEY, SauronPruning

SHAPE_2D = (2, 1, 16, 16)


def _unet(spatial_dims: int = 2, norm="batch") -> nn.Module:
    torch.manual_seed(0)
    return UNet(spatial_dims, 1, 1, channels=(8, 16, 32), strides=(2, 2), num_res_units=0, norm=norm)


def _data(shape=SHAPE_2D, batches: int = 2) -> list[dict]:
    generator = torch.Generator().manual_seed(1)
    images = torch.randn((batches * shape[0], *shape[1:]), generator=generator)
    labels = (images > 0.3).float()
    size = shape[0]
    return [{"image": images[i : i + size], "label": labels[i : i + size]} for i in range(0, len(images), size)]


def _trainer(net, handler, epochs, data=None, loss=None, lr=0.01):
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=data if data is not None else _data(),
        network=net,
        optimizer=optimizer,
        loss_function=loss if loss is not None else nn.BCEWithLogitsLoss(),
        train_handlers=[handler],
    )


def _one_training_step(net: nn.Module, lam: float, clip_fraction: float = 0.0) -> tuple[list[dict], dict]:
    """One Sauron iteration on one batch: the batch and, after backward, the gradients, output and samples scored."""
    handler = SauronPruning(lam=lam, example_shape=SHAPE_2D, plot=False, clip_fraction=clip_fraction)
    data = _data(batches=1)
    trainer = _trainer(net, handler, epochs=1, data=data)
    seen = {}

    @trainer.on(IterationEvents.BACKWARD_COMPLETED)
    def keep(engine):
        seen["grads"] = {name: p.grad.clone() for name, p in engine.network.named_parameters()}
        seen["output"] = dict(engine.state.output)
        seen["scored"] = [acc.num_samples for acc in handler.accumulators.values()]

    trainer.run()
    return data, seen


def test_regulariser_is_added_to_the_loss_and_its_gradient_reaches_the_weights():
    net = _unet()
    reference = copy.deepcopy(net)
    without_term = copy.deepcopy(net)
    data, seen = _one_training_step(net, lam=2.0)
    output = seen["output"]
    torch.testing.assert_close(output["loss"].detach(), output[SEG_LOSS_KEY] + 2.0 * output[PENALTY_KEY])
    assert output[PENALTY_KEY] > 0

    # the same step by hand: segmentation loss + lam * mean delta_opt at each group's first consumer
    pruner = ChannelPruner(reference, SHAPE_2D, min_channels=2)
    taps = FeatureTaps(reference, {g: pruner.graph.consumer_taps()[g] for g in pruner.prunable_groups}, first_only=True)
    taps.enabled = True
    pred = reference(data[0]["image"])
    features = taps.features()
    penalty = delta_opt_penalty([features[g] for g in taps.groups])
    seg = nn.BCEWithLogitsLoss()(pred, data[0]["label"])
    (seg + 2.0 * penalty).backward()
    for name, p in reference.named_parameters():
        torch.testing.assert_close(seen["grads"][name], p.grad, rtol=1e-4, atol=1e-6)
    # and the term matters: the segmentation loss alone gives another gradient
    plain = copy.deepcopy(without_term)
    nn.BCEWithLogitsLoss()(plain(data[0]["image"]), data[0]["label"]).backward()
    assert not torch.allclose(seen["grads"]["model.0.conv.weight"], plain.model[0].conv.weight.grad, atol=1e-6)


def test_clip_fraction_regularises_with_quantile_normalised_maps():
    net = _unet()
    reference = copy.deepcopy(net)
    data, seen = _one_training_step(net, lam=1.0, clip_fraction=0.05)
    pruner = ChannelPruner(reference, SHAPE_2D, min_channels=2)
    taps = FeatureTaps(reference, {g: pruner.graph.consumer_taps()[g] for g in pruner.prunable_groups}, first_only=True)
    taps.enabled = True
    reference(data[0]["image"])
    features = [taps.features()[g] for g in taps.groups]
    clipped = delta_opt_penalty(features, clip_fraction=0.05)
    torch.testing.assert_close(seen["output"][PENALTY_KEY].detach(), clipped.detach(), rtol=1e-5, atol=1e-7)
    assert not torch.allclose(clipped, delta_opt_penalty(features))


def test_lambda_zero_logs_the_regulariser_without_adding_it_to_the_loss_or_the_gradient():
    net, plain = _unet(), _unet()
    data, seen = _one_training_step(net, lam=0.0)
    assert seen["output"][PENALTY_KEY] > 0 and not seen["output"][PENALTY_KEY].requires_grad
    torch.testing.assert_close(seen["output"]["loss"].detach(), seen["output"][SEG_LOSS_KEY])
    nn.BCEWithLogitsLoss()(plain(data[0]["image"]), data[0]["label"]).backward()
    torch.testing.assert_close(seen["grads"]["model.0.conv.weight"], plain.model[0].conv.weight.grad)
    assert seen["scored"] and all(samples == 2 for samples in seen["scored"])  # delta_prune is still measured


def test_channels_are_cut_at_epoch_end_and_the_optimizer_keeps_training_the_pruned_network(tmp_path):
    net = _unet()
    handler = SauronPruning(
        tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE_2D, output_dir=tmp_path, plot=False
    )
    trainer = _trainer(net, handler, epochs=2)
    snapshots = {}

    @trainer.on(IterationEvents.MODEL_COMPLETED)
    def after_step(engine):
        snapshots[engine.state.iteration] = {k: v.clone() for k, v in engine.network.state_dict().items()}

    trainer.run()
    rows = handler.history.rows
    assert [row["epoch"] for row in rows] == [1, 2]
    assert rows[0]["removed_now"] > 0 and rows[0]["channels"] < 8 + 16 + 32 + 8
    assert all(width >= 2 for width in rows[-1]["widths"].values())
    assert rows[0]["thresholds"] == {group: 0.6 for group in rows[0]["widths"]}
    assert all(isinstance(row["seg_loss"], float) and isinstance(row["penalty"], float) for row in rows)
    # the optimizer holds the live (pruned) parameters, with state, and they keep changing in epoch 2
    live = list(net.parameters())
    held = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in held} == {id(p) for p in live}
    assert all(p in trainer.optimizer.state for p in live)
    cut_group = next(group for group, n in rows[0]["removed"].items() if n > 0)
    first_step, second_step = snapshots[3], snapshots[4]  # epoch 2 (2 batches per epoch), after the first cut
    weight = f"{cut_group}.weight"
    assert first_step[weight].shape[0] == rows[0]["widths"][cut_group]
    assert not torch.equal(first_step[weight], second_step[weight])
    assert all(torch.isfinite(v).all() for v in net.state_dict().values())
    assert json.loads((tmp_path / HISTORY_JSON).read_text())[-1]["epoch"] == 2
    assert trainer.state.metrics["params"] == sum(p.numel() for p in net.parameters())


def test_features_that_hold_nan_stop_training_instead_of_leaving_their_groups_uncut():
    # a diverged network scores NaN; skipping those groups with a warning reported a "converged" width
    data = _data()
    data[1]["image"][0, 0, 0, 0] = float("nan")
    handler = SauronPruning(tau_start=0.6, tau_max=0.9, example_shape=SHAPE_2D, plot=False)
    with pytest.raises(PruningHandlerError, match=r"SauronPruning: delta_prune of group '.+' is not finite"):
        _trainer(_unet(), handler, epochs=1, data=data).run()


def test_3d_network_is_pruned_and_still_runs():
    net = _unet(spatial_dims=3)
    shape = (2, 1, 8, 8, 8)
    handler = SauronPruning(tau_start=0.7, tau_max=0.9, kappa=1, example_shape=shape, plot=False)
    trainer = _trainer(net, handler, epochs=1, data=_data(shape, batches=1))
    trainer.run()
    row = handler.history.rows[-1]
    assert row["removed_now"] > 0
    assert net(torch.randn(shape)).shape == (2, 1, 8, 8, 8)
    assert row["macs"] < handler.reference["macs"]
    assert not any(m._forward_pre_hooks for m in net.modules())  # taps removed when training completed


def test_groupnorm_groups_lose_whole_blocks_only():
    net = _unet(norm=("group", {"num_groups": 4}))
    handler = SauronPruning(tau_start=0.9, tau_max=0.95, kappa=1, example_shape=SHAPE_2D, plot=False, min_channels=1)
    _trainer(net, handler, epochs=1).run()
    units = {name: g.unit for name, g in ChannelPruner(net, SHAPE_2D).prunable_groups.items()}
    widths = handler.history.rows[-1]["widths"]
    assert sum(handler.history.rows[-1]["removed"].values()) > 0
    for group, width in widths.items():
        assert width % units[group] == 0 and width >= units[group]


def test_min_width_fraction_keeps_that_share_of_every_group_when_the_threshold_would_take_more():
    shares = {}
    for fraction in (0.0, 0.5):
        net = _unet()  # groups of 8, 16, 32 and 8 channels
        handler = SauronPruning(
            tau_start=0.95, tau_max=0.99, kappa=1, example_shape=SHAPE_2D, plot=False, min_width_fraction=fraction
        )
        _trainer(net, handler, epochs=1).run()
        shares[fraction] = handler.history.rows[-1]["widths"]
    start = {"model.0.conv": 8, "model.1.submodule.0.conv": 16, "model.1.submodule.1.submodule.conv": 32,
             "model.1.submodule.2.conv": 8}
    assert min(shares[0.0].values()) == 2  # a threshold this high cuts every group to min_channels...
    assert shares[0.5] == {group: width // 2 for group, width in start.items()}  # ...the floor keeps half


def test_warmup_epochs_train_without_regulariser_or_cuts_then_both_start():
    runs = {}
    for warmup in (0, 2):
        net = _unet()
        handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE_2D, plot=False,
                                warmup_epochs=warmup)
        trainer = _trainer(net, handler, epochs=warmup + 1)
        outputs = []
        trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
        trainer.run()
        runs[warmup] = (handler, outputs)
    plain, _ = runs[0]
    warmed, outputs = runs[2]
    rows = warmed.history.rows
    # two epochs of segmentation loss alone: no delta_opt in the loss, nothing scored, no cut, tau held at its start
    assert all(torch.equal(o["loss"], o[SEG_LOSS_KEY]) and float(o[PENALTY_KEY]) == 0.0 for o in outputs[:4])
    assert [row["removed_now"] for row in rows[:2]] == [0, 0] and [row["penalty"] for row in rows[:2]] == [None] * 2
    assert {tau for row in rows[:2] for tau in row["thresholds"].values()} == {0.6}
    # then Sauron: the regulariser is in the loss and the first epoch after the warm-up cuts, as epoch 1 does without
    assert all(float(o[PENALTY_KEY]) > 0 and not torch.equal(o["loss"], o[SEG_LOSS_KEY]) for o in outputs[4:])
    assert rows[2]["removed_now"] > 0 and plain.history.rows[0]["removed_now"] > 0
    assert warmed.plot_marks() == {"warm-up ends": 2} and plain.plot_marks() == {}
    assert warmed.state_dict()["method_state"]["warmup_epochs"] == 2


def test_delta_prune_is_measured_on_the_last_score_batches_of_each_epoch():
    handler = SauronPruning(score_batches=2)
    engine = SimpleNamespace(state=SimpleNamespace(epoch_length=5, iteration=0))
    chosen = []
    for iteration in range(1, 11):
        engine.state.iteration = iteration
        chosen.append(handler._scoring_batch(engine))
    assert [i for i, used in zip(range(1, 11), chosen) if used] == [4, 5, 9, 10]
    assert SauronPruning()._scoring_batch(engine)  # default: every batch


def _resumable_run(tmp_path, epochs: int, resume_from=None, target=None, warmup=0):
    """Trainer + evaluator + Sauron + CheckpointSaver every epoch, as a bundle would wire them."""
    net = _unet()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    post = Compose([Activations(sigmoid=True), AsDiscrete(threshold=0.5)])
    validator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=_data(batches=1),
        network=net,
        postprocessing=lambda d: {**d, "pred": post(d["pred"])},
        key_val_metric={"val_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        decollate=False,
    )
    handler = SauronPruning(
        tau_start=0.2, tau_max=0.8, kappa=3, patience=2, mu=0.5, example_shape=SHAPE_2D, plot=False,
        validator=validator, output_dir=tmp_path / "records", target_macs_reduction=target, warmup_epochs=warmup,
    )
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=_data(),
        network=net,
        optimizer=optimizer,
        # a flat segmentation loss plateaus at once, so the thresholds rise (and patience counts) within a few epochs
        loss_function=lambda pred, label: pred.sum() * 0.0 + 1.0,
        train_handlers=[ValidationHandler(interval=1, validator=validator), handler],
    )
    record = PruningRecord(net, optimizer)
    save_dict = {"pruning": record, "model": net, "optimizer": optimizer, "trainer": trainer, "pruner": handler}
    CheckpointSaver(str(tmp_path / "ckpt"), save_dict, save_interval=1, n_saved=None).attach(trainer)
    if resume_from is not None:
        CheckpointLoader(str(resume_from), dict(save_dict)).attach(trainer)
    trainer.run()
    return net, optimizer, handler


def _comparable(rows):
    return [{k: v for k, v in row.items() if k != "time_s"} for row in rows]


@pytest.mark.parametrize(
    "target, warmup",
    [(None, 0), (0.1, 0), (None, 4)],
    ids=["no_target", "target_reached_after_the_resume_point", "killed_in_the_warm_up"],
)
def test_a_run_killed_and_resumed_from_its_checkpoint_ends_exactly_like_an_uninterrupted_one(tmp_path, target, warmup):
    full_net, full_opt, full = _resumable_run(tmp_path / "full", epochs=6, target=target, warmup=warmup)
    rows = full.history.rows
    assert sum(row["removed_now"] for row in rows[3:]) > 0  # cuts happen after the resume point too
    assert len({tau for row in rows for tau in row["thresholds"].values()}) > 1  # and thresholds rise
    if target is not None:  # and the stop comes after it: the resumed run must find it on its own
        assert full.target_epoch == 4 and all(row["removed_now"] == 0 for row in rows[4:])
    checkpoint = next((tmp_path / "full" / "ckpt").glob("*epoch=3.pt"))
    content = torch.load(checkpoint, weights_only=True)
    # a kill in the warm-up leaves a schedule that has seen no group yet: the resumed run must start it on time
    assert bool(content["pruner"]["method_state"]["schedule"]["groups"]) == (warmup < 3)

    resumed_net, resumed_opt, resumed = _resumable_run(
        tmp_path / "resumed", epochs=6, resume_from=checkpoint, target=target, warmup=warmup
    )
    assert _comparable(resumed.history.rows) == _comparable(rows)
    full_state, resumed_state = full.state_dict(), resumed.state_dict()
    for state in (full_state, resumed_state):
        state["history"]["rows"] = _comparable(state["history"]["rows"])
    assert resumed_state == full_state  # thresholds, patience, losses, metrics, generator, last cut
    for key, value in full_net.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[key], value)
    full_moments, resumed_moments = full_opt.state_dict()["state"], resumed_opt.state_dict()["state"]
    for index, entry in full_moments.items():
        torch.testing.assert_close(resumed_moments[index]["exp_avg"], entry["exp_avg"])


def test_target_limits_the_cut_that_reaches_it_then_stops_pruning_and_the_regulariser():
    runs = {}
    for target in (None, 0.1):
        net = _unet()
        handler = SauronPruning(
            tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE_2D, plot=False, target_macs_reduction=target
        )
        trainer = _trainer(net, handler, epochs=3)
        outputs = []
        trainer.add_event_handler(IterationEvents.LOSS_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
        trainer.run()
        runs[target] = (handler, outputs)
    free, _ = runs[None]
    stopped, outputs = runs[0.1]
    removed = [1 - row["macs_ratio"] for row in stopped.history.rows]
    # without a target the first cut removes more than half of the MACs; with one, only the most redundant channels
    # of that cut go, enough to pass 10%
    assert 1 - free.history.rows[0]["macs_ratio"] > 0.5
    assert 0.1 <= removed[0] < 0.2 and 0 < stopped.history.rows[0]["removed_now"] < free.history.rows[0]["removed_now"]
    assert stopped.target_epoch == 1
    assert stopped.plot_marks() == {"target reached": 1} and free.plot_marks() == {}  # a line on the channel plot
    # after it: same widths, no delta_opt in the loss, nothing measured or accumulated
    assert removed[1:] == [removed[0]] * 2 and [row["removed_now"] for row in stopped.history.rows[1:]] == [0, 0]
    assert [row["penalty"] is None for row in stopped.history.rows] == [False, True, True]
    later = outputs[2:]  # two batches per epoch
    assert all(torch.equal(o["loss"], o[SEG_LOSS_KEY]) and float(o[PENALTY_KEY]) == 0.0 for o in later)
    assert all(acc.num_samples == 0 for acc in stopped.accumulators.values())
    assert stopped.state_dict()["method_state"]["target_epoch"] == 1


def test_final_pruned_checkpoint_reloads_into_a_fresh_network_with_weights_only(tmp_path):
    net = _unet()
    handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=1, example_shape=SHAPE_2D, plot=False)
    _trainer(net, handler, epochs=1).run()
    torch.save({"pruning": PruningRecord(net).state_dict(), "model": net.state_dict()}, tmp_path / "model.pt")
    fresh = load_pruned_network(_unet(), tmp_path / "model.pt")
    x = torch.randn(SHAPE_2D)
    torch.testing.assert_close(fresh(x), net.eval()(x))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lam": -1.0}, "`lam` must be a number >= 0"),
        ({"tau_start": 0.5, "tau_max": 0.1}, "tau_start <= tau_max"),
        ({"score_batches": 0}, "`score_batches` must be an int >= 1 or None"),
        ({"kappa": 0}, "`kappa` must be an int >= 1"),
        ({"target_macs_reduction": 1.0}, "`target_macs_reduction` must be a fraction in \\(0, 1\\)"),
        ({"warmup_epochs": -1}, "`warmup_epochs` must be an int >= 0"),
        ({"warmup_epochs": 1.5}, "`warmup_epochs` must be an int >= 0"),
        ({"compile": 1}, "`compile` must be a bool or a backend name"),
        ({"clip_fraction": 0.5}, "`clip_fraction` must be a number in \\[0, 0.5\\)"),
    ],
)
def test_bad_arguments_fail_early_with_a_message_naming_them(kwargs, message):
    with pytest.raises(PruningHandlerError, match=message):
        SauronPruning(**kwargs)


def test_compiled_regulariser_and_scoring_prune_like_eager():
    rows = {}
    for compile in (False, "aot_eager"):
        handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE_2D, plot=False,
                                compile=compile)
        _trainer(_unet(), handler, epochs=2).run()
        rows[compile] = handler.history.rows
    assert handler.compiled_terms is not None and handler.compiled_terms.compiled
    eager, compiled = rows[False], rows["aot_eager"]
    assert [row["widths"] for row in compiled] == [row["widths"] for row in eager]
    assert rows[False][0]["removed_now"] > 0
    for got, expected in zip(compiled, eager):
        assert got["penalty"] == pytest.approx(expected["penalty"], rel=1e-4)
        assert got["seg_loss"] == pytest.approx(expected["seg_loss"], rel=1e-4)
