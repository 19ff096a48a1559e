"""The optimizer survives a cut (``docs/design.md``, "The channel engine").

After ``ChannelPruner.cut(..., optimizer=opt)`` the optimizer must update the network's *new* parameters, with its
per-parameter state (SGD momentum, Adam/AdamW moments) cut with exactly the indices the weights were cut with, the
scalar ``step`` carried over and every hyper-parameter untouched, so that training continues without a restart.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import pytest
import torch
import torch.nn.functional as F
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner

SHAPE = (2, 1, 16, 16)
# group name -> channel indices; the four prunable groups of the UNet below (4, 8, 16 and 4 channels)
CUT = {
    "model.0.residual": [1, 3],
    "model.1.submodule.0.residual": [0, 5, 6],
    "model.1.submodule.1.submodule.residual": [2, 9, 15],
    "model.1.submodule.2.0.conv": [2],
}
OPTIMIZERS: dict[str, Callable[[Iterable], torch.optim.Optimizer]] = {
    "sgd-momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, betas=(0.8, 0.95)),
    "adamw-amsgrad": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05, amsgrad=True),
}
# state tensor -> (scale, offset): an elementwise, injective stand-in for the state, see the slicing test
ENCODING = {
    "momentum_buffer": (0.5, 0.25),
    "exp_avg": (-2.0, 1.0),
    "exp_avg_sq": (1.5, 3.0),
    "max_exp_avg_sq": (3.0, 4.0),
}


def _network() -> UNet:
    torch.manual_seed(0)
    return UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="batch")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(4, 1, 16, 16, generator=gen), (torch.rand(4, 16, 16, generator=gen) > 0.5).long()


def _train_step(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
    x, y = _batch()
    optimizer.zero_grad()
    loss = F.cross_entropy(network.train()(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def _loss(network: torch.nn.Module) -> float:
    x, y = _batch()
    with torch.no_grad():  # training mode: BatchNorm uses batch statistics, so only the parameters matter
        return float(F.cross_entropy(network.train()(x), y))


def _state_by_name(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, dict]:
    return {name: copy.deepcopy(optimizer.state[p]) for name, p in network.named_parameters() if p in optimizer.state}


@pytest.fixture(params=list(OPTIMIZERS))
def trained(request) -> tuple[UNet, torch.optim.Optimizer]:
    """A UNet and its optimizer after two training steps, so that every parameter has optimizer state."""
    network = _network()
    optimizer = OPTIMIZERS[request.param](network.parameters())
    for _ in range(2):
        _train_step(network, optimizer)
    return network, optimizer


def test_cut_leaves_the_optimizer_holding_exactly_the_live_parameters_with_hyperparameters_untouched(trained):
    network, optimizer = trained
    hyper_before = [{k: v for k, v in g.items() if k != "params"} for g in copy.deepcopy(optimizer.param_groups)]
    params_before = sum(p.numel() for p in network.parameters())

    ChannelPruner(network, SHAPE).cut(CUT, optimizer=optimizer)

    live = {id(p) for p in network.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    assert sum(p.numel() for p in network.parameters()) < params_before
    assert len(held) == len(live) and {id(p) for p in held} == live
    assert {id(p) for p in optimizer.state} == live  # no state left behind for the replaced parameters
    assert [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups] == hyper_before


def test_cut_keeps_the_state_of_the_kept_channels_exactly_for_producer_norm_and_consumer(trained):
    network, optimizer = trained
    before = _state_by_name(network, optimizer)

    ChannelPruner(network, SHAPE).cut({"model.0.residual": [1, 3]}, optimizer=optimizer)

    after = _state_by_name(network, optimizer)
    # (parameter, dimension that holds the group's channels, positions kept along it)
    for name, dim, kept in (
        ("model.0.conv.unit0.conv.weight", 0, [0, 2]),  # producer: output channels
        ("model.0.conv.unit0.conv.bias", 0, [0, 2]),
        ("model.0.residual.weight", 0, [0, 2]),  # residual producer joined to the same group
        ("model.0.conv.unit0.adn.N.weight", 0, [0, 2]),  # BatchNorm after the producer
        ("model.1.submodule.0.conv.unit0.conv.weight", 1, [0, 2]),  # consumer: input channels
        # transposed-conv consumer of cat([skip (this group), decoder (4 channels)]); its weight is (in, out, ...)
        ("model.2.0.conv.weight", 0, [0, 2, 4, 5, 6, 7]),
    ):
        moments = [k for k, v in before[name].items() if isinstance(v, torch.Tensor) and v.dim() > 0]
        assert moments, f"{name} has no state to check"
        for key in moments:
            expected = before[name][key].index_select(dim, torch.tensor(kept))
            assert torch.equal(after[name][key], expected), f"{name}: {key}"


def test_cut_slices_every_state_tensor_like_its_parameter_and_carries_step_over(trained):
    network, optimizer = trained
    # Replace each moment by an elementwise injective function of its parameter: after a correct cut the moment
    # is still that function of the (new) parameter, bit for bit, whichever dimensions and offsets were cut.
    with torch.no_grad():
        for p in network.parameters():
            for key, (scale, offset) in ENCODING.items():
                if key in optimizer.state[p]:
                    optimizer.state[p][key] = p.detach() * scale + offset
    steps = {name: state.get("step") for name, state in _state_by_name(network, optimizer).items()}
    keys = {name: set(state) for name, state in _state_by_name(network, optimizer).items()}

    ChannelPruner(network, SHAPE).cut(CUT, optimizer=optimizer)

    for name, p in network.named_parameters():
        state = optimizer.state[p]
        assert set(state) == keys[name]
        encoded = [key for key in ENCODING if key in state]
        assert encoded, f"{name} has no moment"
        for key in encoded:
            scale, offset = ENCODING[key]
            assert state[key].shape == p.shape, f"{name}: {key}"
            assert torch.equal(state[key], p.detach() * scale + offset), f"{name}: {key}"
        if steps[name] is not None:
            assert torch.equal(torch.as_tensor(state["step"]), torch.as_tensor(steps[name]))


def test_training_after_a_cut_updates_every_live_parameter_and_lowers_the_loss(trained):
    network, optimizer = trained
    ChannelPruner(network, SHAPE).cut(CUT, optimizer=optimizer)
    weights = {name: p.detach().clone() for name, p in network.named_parameters()}
    loss_before = _loss(network)

    for _ in range(3):
        _train_step(network, optimizer)

    unchanged = [name for name, p in network.named_parameters() if torch.equal(p.detach(), weights[name])]
    assert not unchanged, f"parameters the optimizer no longer updates: {unchanged}"
    assert _loss(network) < loss_before


def test_two_cuts_in_a_row_equal_one_cut_of_their_union(trained):
    network, optimizer = trained
    twin, twin_optimizer = copy.deepcopy((network, optimizer))  # one deepcopy keeps the two tied together

    pruner = ChannelPruner(network, SHAPE)
    pruner.cut({"model.1.submodule.0.residual": [1], "model.0.residual": [0]}, optimizer=optimizer)
    # indices refer to the current network: 4 and 6 of the 7 left are the original 5 and 7; 2 of 3 is the original 3
    pruner.cut({"model.1.submodule.0.residual": [4, 6], "model.0.residual": [2]}, optimizer=optimizer)
    ChannelPruner(twin, SHAPE).cut(
        {"model.1.submodule.0.residual": [1, 5, 7], "model.0.residual": [0, 3]}, optimizer=twin_optimizer
    )

    ours, theirs = network.state_dict(), twin.state_dict()
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        assert torch.equal(network.eval()(x), twin.eval()(x))
    state, twin_state = optimizer.state_dict()["state"], twin_optimizer.state_dict()["state"]
    assert state.keys() == twin_state.keys()
    for index in state:
        for key, value in state[index].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(twin_state[index][key])), f"{index}: {key}"


def test_optimizer_over_some_parameter_groups_keeps_exactly_its_own_parameters_in_their_groups():
    network = _network()
    decoder = {n for n, _ in network.named_parameters() if n.startswith(("model.1.submodule.2", "model.2"))}
    named = dict(network.named_parameters())
    optimizer = torch.optim.SGD(
        [
            {"params": [named[n] for n in sorted(decoder)], "lr": 0.1},
            {"params": [named[n] for n in sorted(set(named) - decoder) if "residual" in n], "lr": 0.01},
        ],
        momentum=0.9,
    )  # the encoder's plain conv units are frozen: the optimizer does not know them
    _train_step(network, optimizer)
    names = {id(p): n for n, p in network.named_parameters()}
    groups_before = [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups]

    ChannelPruner(network, SHAPE).cut(CUT, optimizer=optimizer)

    names = {id(p): n for n, p in network.named_parameters()}
    assert all(id(p) in names for g in optimizer.param_groups for p in g["params"])
    assert [[names[id(p)] for p in g["params"]] for g in optimizer.param_groups] == groups_before
    assert [g["lr"] for g in optimizer.param_groups] == [0.1, 0.01]
    for p in optimizer.state:
        assert optimizer.state[p]["momentum_buffer"].shape == p.shape
