"""The engine's oracle (``docs/design.md``): physical pruning equals masking.

Cutting channels from a group must give, to float tolerance, the outputs of the unpruned network with those channels
zeroed where they enter their consumers.  Held for every supported network, 2D and 3D, for random cuts, and for a
second cut on top of the first, in eval mode and in train mode.  In train mode DynUNet's deep-supervision heads are
outputs too (stacked with the main output), so their inputs must be cut and their outputs kept; batch and instance
norms use the batch's statistics, which are per channel and so agree between the pruned and the masked network.
"""

from __future__ import annotations

import copy
import random
import warnings

import pytest
import torch
from monai.networks import nets

from monai_pruning.engine import ChannelPruner

LEAKY = ("leakyrelu", {"negative_slope": 0.01, "inplace": True})


def _networks():
    yield "UNet-2d-prelu-instance-res", lambda: nets.UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=2), (2, 1, 32, 32)
    yield "UNet-3d-batch-res", lambda: nets.UNet(3, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="batch"), (
        2, 1, 16, 16, 16)
    yield "BasicUNet-2d", lambda: nets.BasicUNet(2, 1, 2, features=(8, 8, 16, 16, 32, 8)), (2, 1, 32, 32)
    yield "BasicUNet-3d", lambda: nets.BasicUNet(3, 1, 2, features=(4, 4, 8, 8, 16, 4)), (2, 1, 32, 32, 32)
    for dims, shape in ((2, (2, 1, 32, 32)), (3, (2, 1, 16, 16, 16))):
        yield f"DynUNet-{dims}d-nnunet", lambda d=dims: nets.DynUNet(
            d, 1, 2, [3, 3, 3, 3], [1, 2, 2, 2], [2, 2, 2], filters=[4, 8, 16, 16], norm_name="instance",
            act_name=LEAKY), shape
        yield f"DynUNet-{dims}d-res-deep-supervision", lambda d=dims: nets.DynUNet(
            d, 1, 3, [3, 3, 3, 3], [1, 2, 2, 2], [2, 2, 2], filters=[4, 8, 16, 16], res_block=True,
            deep_supervision=True, deep_supr_num=2), shape
        yield f"SegResNet-{dims}d", lambda d=dims: nets.SegResNet(d, init_filters=8, in_channels=1, out_channels=2,
                                                                   blocks_down=(1, 2, 2), blocks_up=(1, 1)), shape
        yield f"AttentionUnet-{dims}d", lambda d=dims: nets.AttentionUnet(d, 1, 2, (4, 8, 16), (2, 2)), shape
    yield "FlexibleUNet-2d-resnet10", lambda: nets.FlexibleUNet(
        1, 2, "resnet10", pretrained=False, spatial_dims=2, decoder_channels=(32, 16, 8, 8, 4)), (2, 1, 64, 64)
    yield "FlexibleUNet-3d-resnet10", lambda: nets.FlexibleUNet(
        1, 2, "resnet10", pretrained=False, spatial_dims=3, decoder_channels=(32, 16, 8, 8, 4)), (2, 1, 32, 32, 32)


NETWORKS = list(_networks())


def _random_removals(pruner: ChannelPruner, rng: random.Random, fraction: float) -> dict[str, list[int]]:
    removals = {}
    for name, group in pruner.prunable_groups.items():
        blocks = min(pruner.removable(name), int(group.size * fraction)) // group.unit
        chosen = rng.sample(range(group.size // group.unit), blocks)
        removals[name] = [b * group.unit + k for b in chosen for k in range(group.unit)]
    return removals


def _masked_copy(network: torch.nn.Module, pruner: ChannelPruner, removals: dict[str, list[int]]) -> torch.nn.Module:
    """The unpruned network with the removed channels zeroed where they enter their consumers."""
    reference = copy.deepcopy(network)
    modules = dict(reference.named_modules())
    for (module_name, role), positions in pruner.graph.positions_to_remove(removals).items():
        if role != "in":
            continue

        def zero_inputs(_module, args, positions=positions):
            masked = args[0].clone()
            masked[:, positions] = 0
            return (masked, *args[1:])

        modules[module_name].register_forward_pre_hook(zero_inputs)
    return reference


def _outputs(network: torch.nn.Module, x: torch.Tensor, train: bool) -> torch.Tensor:
    """The network's output in the given mode; running statistics are left as they were."""
    buffers = {name: b.clone() for name, b in network.named_buffers()}
    with torch.no_grad():
        out = network.train(train)(x)
        for name, b in network.named_buffers():
            b.copy_(buffers[name])
    return out


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name, build, shape", NETWORKS, ids=[n for n, _, _ in NETWORKS])
def test_physical_cut_equals_masking_for_every_supported_network(name, build, shape, train):
    torch.manual_seed(0)
    network = build()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = ChannelPruner(network, shape)
    assert pruner.prunable_groups, f"{name}: nothing prunable"
    rng = random.Random(0)
    x = torch.randn(*shape)
    params_before = sum(p.numel() for p in network.parameters())
    for fraction in (0.5, 0.3):  # the second cut lands on the already pruned network
        removals = _random_removals(pruner, rng, fraction)
        assert any(removals.values())
        reference = _masked_copy(network, pruner, removals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pruner.cut(removals)
        expected = _outputs(reference, x, train)
        if "deep-supervision" in name:  # the heads are outputs in train mode only: (batch, 1 + heads, classes, ...)
            assert expected.dim() == len(shape) + (1 if train else 0)
        torch.testing.assert_close(_outputs(network, x, train), expected, atol=1e-5, rtol=1e-4)
    assert sum(p.numel() for p in network.parameters()) < params_before


def test_training_step_after_cut_runs_and_changes_the_loss():
    torch.manual_seed(0)
    network = nets.DynUNet(2, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[8, 16, 32], norm_name="instance",
                           act_name=LEAKY)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    x, y = torch.randn(4, 1, 16, 16), (torch.rand(4, 1, 16, 16) > 0.5).float()
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> float:
        optimizer.zero_grad()
        loss = loss_fn(network.train()(x)[:, 1:], y)
        loss.backward()
        optimizer.step()
        return float(loss)

    step()
    pruner = ChannelPruner(network, (2, 1, 16, 16))
    pruner.cut(_random_removals(pruner, random.Random(1), 0.5), optimizer=optimizer)
    live = {id(p) for p in network.parameters()}
    assert all(id(p) in live for group in optimizer.param_groups for p in group["params"])
    losses = [step() for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] != losses[0]
