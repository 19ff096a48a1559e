"""The Torch-Pruning peer of the benchmarks: after its cuts the network, its optimizer and its record are as ours."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

tp = pytest.importorskip("torch_pruning")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from torch_pruning_peer import TorchPruningPeer, prune_keeping_optimizer_state  # noqa: E402

from monai_pruning.engine import ChannelPruner, PruningRecord  # noqa: E402
from monai_pruning.measure import count_macs  # noqa: E402

SHAPE = (2, 1, 32, 32)


def _dynunet() -> DynUNet:
    torch.manual_seed(0)
    return DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[8, 16, 32], norm_name="instance")


def _data() -> list[dict]:
    images = torch.randn((8, *SHAPE[1:]), generator=torch.Generator().manual_seed(1))
    labels = (images > 0.5).float()
    return [{"image": images[i : i + 4], "label": labels[i : i + 4]} for i in (0, 4)]


@pytest.mark.parametrize("importance, global_pruning", [("l1", False), ("taylor", True)])
def test_after_a_peer_step_adam_keeps_its_state_the_new_parameters_train_and_every_instance_norm_fits(
    importance, global_pruning
):
    net = _dynunet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    target = int(0.5 * count_macs(net, (1, *SHAPE[1:])))
    peer = TorchPruningPeer(importance=importance, target_macs=target, steps=1, example_shape=SHAPE,
                            global_pruning=global_pruning)
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=2, train_data_loader=_data(), network=net,
                                optimizer=optimizer, loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
                                train_handlers=[peer])
    seen = {}

    @trainer.on(Events.EPOCH_COMPLETED)
    def after_the_peer(engine):  # registered after the peer: the network and optimizer just after its cut
        if engine.state.epoch == 1:
            seen["steps"] = {id(p): int(optimizer.state[p]["step"]) for p in net.parameters() if p in optimizer.state}
            seen["weights"] = {name: p.detach().clone() for name, p in net.named_parameters()}
            net.eval()
            with torch.no_grad():
                seen["output_std"] = net(_data()[0]["image"]).std(dim=(2, 3)).min().item()
            net.train()

    trainer.run()
    parameters = list(net.parameters())
    assert count_macs(net, (1, *SHAPE[1:])) <= target
    assert [p for g in optimizer.param_groups for p in g["params"]] == parameters
    # Adam's moments and step count survive the cut (2 iterations in epoch 1) instead of starting again
    assert len(seen["steps"]) == len(parameters) and set(seen["steps"].values()) == {2}
    assert all(optimizer.state[p]["exp_avg"].shape == p.shape for p in parameters)
    assert seen["output_std"] > 0  # the pruned network's output still depends on its input
    # the next epoch trains every parameter of the pruned network
    assert all(not torch.equal(p, seen["weights"][name]) for name, p in net.named_parameters())
    # each InstanceNorm names the width it receives, so the saved pruning record describes the network
    record = PruningRecord(net).state_dict()["modules"]
    convs = {name: m.out_channels for name, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    for name, module in net.named_modules():
        if isinstance(module, torch.nn.InstanceNorm2d):
            conv = name.replace("norm", "conv") + ".conv"
            assert record[name]["num_features"] == convs[conv], name


def test_pruning_a_group_slices_adam_state_and_gradients_with_the_weights_on_both_sides_of_the_cut():
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 3))
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        optimizer.zero_grad()
        net(torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))).square().mean().backward()
        optimizer.step()
    old = {name: (p.detach().clone(), p.grad.clone(), {k: v.clone() for k, v in optimizer.state[p].items()})
           for name, p in net.named_parameters()}
    graph = tp.DependencyGraph().build_dependency(net, example_inputs=torch.zeros(1, 1, 8, 8))
    group = graph.get_pruning_group(net[0], tp.prune_conv_out_channels, idxs=[1, 2])
    prune_keeping_optimizer_state(net, group.prune, optimizer)
    kept = [0, 3]
    expected_slices = {"0.weight": (kept, slice(None)), "0.bias": (kept,), "2.weight": (slice(None), kept),
                       "2.bias": (slice(None),)}
    for name, param in net.named_parameters():
        weight, grad, state = old[name]
        index = expected_slices[name]
        assert torch.equal(param, weight[index]) and torch.equal(param.grad, grad[index])
        assert torch.equal(optimizer.state[param]["exp_avg"], state["exp_avg"][index])
        assert torch.equal(optimizer.state[param]["exp_avg_sq"], state["exp_avg_sq"][index])
        assert torch.equal(optimizer.state[param]["step"], state["step"])
    assert optimizer.param_groups[0]["params"] == list(net.parameters())


def test_a_resumed_peer_keeps_the_linear_schedule_of_the_network_it_started_from():
    """A stop after epoch 2 of 4: the resumed run's targets still run from the unpruned network's MACs (the first
    version measured its "start" again on the resumed, already pruned network and cut several steps at once)."""
    net = _dynunet()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    start = count_macs(net, (1, *SHAPE[1:]))
    target = int(0.4 * start)

    def trainer_with(peer: TorchPruningPeer, max_epochs: int) -> SupervisedTrainer:
        return SupervisedTrainer(device=torch.device("cpu"), max_epochs=max_epochs, train_data_loader=_data(),
                                 network=net, optimizer=optimizer,
                                 loss_function=DiceCELoss(to_onehot_y=True, softmax=True), train_handlers=[peer])

    first = TorchPruningPeer(importance="l1", target_macs=target, steps=4, example_shape=SHAPE, global_pruning=False)
    trainer_with(first, max_epochs=2).run()
    stopped_at = count_macs(net, (1, *SHAPE[1:]))
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)
    buffer.seek(0)

    resumed = TorchPruningPeer(importance="l1", target_macs=target, steps=4, example_shape=SHAPE, global_pruning=False)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    trainer = trainer_with(resumed, max_epochs=3)
    trainer.state.epoch, trainer.state.iteration = 2, 2 * len(_data())
    trainer.run()

    macs = count_macs(net, (1, *SHAPE[1:]))
    on_schedule = start - (start - target) * 3 / 4
    restarted_schedule = stopped_at - (stopped_at - target) * 3 / 4
    assert resumed.start_macs == start
    assert restarted_schedule < macs <= on_schedule


@pytest.mark.parametrize("bundle", ["polyp_endoscopy_segmentation", "kidney_ct_segmentation"])
def test_the_peer_overlay_puts_the_peer_in_the_resume_checkpoint_and_nothing_of_taylorfo(bundle):
    from monai.bundle import ConfigParser

    repo = Path(__file__).resolve().parents[2]
    parser = ConfigParser()
    configs = [repo / "bundles" / bundle / "configs" / name for name in ("train.json", "prune_taylorfo.json")]
    parser.read_config([str(p) for p in configs] + [str(repo / "benchmarks" / name)
                                                   for name in ("finetune_dense.json", "prune_torch_pruning.json")])
    assert parser["pruning_state"] == {"peer": "@peer_handler"}
    assert "**@pruning_state" in parser["resume_objects"]


def test_floored_importance_ranks_each_groups_strongest_channels_last():
    from torch_pruning_peer import FlooredImportance

    floored = FlooredImportance(lambda group: torch.tensor([3.0, 1.0, 2.0, 5.0]), min_channels=2)
    assert floored(None).tolist() == [float("inf"), 1.0, 2.0, float("inf")]
    assert FlooredImportance(lambda group: None, 2)(None) is None


@pytest.mark.parametrize("importance, global_pruning", [("taylor", True), ("l1", False)])
def test_the_peer_cuts_no_group_below_our_engines_floor_where_torch_pruning_alone_leaves_one_channel(
    importance, global_pruning
):
    def widths_after(min_channels: int) -> list[int]:
        net = _dynunet()
        target = int(0.02 * count_macs(net, (1, *SHAPE[1:])))  # beyond what the floors allow: as far as they let it
        peer = TorchPruningPeer(importance=importance, target_macs=target, steps=1, example_shape=SHAPE,
                                global_pruning=global_pruning, max_pruning_ratio=1.0, min_channels=min_channels,
                                granularity=50)
        SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=_data(), network=net,
                          optimizer=torch.optim.AdamW(net.parameters(), lr=1e-3),
                          loss_function=DiceCELoss(to_onehot_y=True, softmax=True), train_handlers=[peer]).run()
        return list(ChannelPruner(net, SHAPE).widths().values())

    assert min(widths_after(1)) == 1  # Torch-Pruning's own floor
    assert min(widths_after(2)) == 2


def test_a_peer_floor_below_one_channel_is_refused():
    with pytest.raises(ValueError, match="min_channels"):
        TorchPruningPeer(importance="l1", target_macs=10, steps=1, example_shape=SHAPE, min_channels=0)
