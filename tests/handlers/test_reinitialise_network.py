"""ReinitialiseNetwork: the pruned architecture from a checkpoint's record, with fresh weights (the scratch control)."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner, PruningRecord, module_widths
from monai_pruning.handlers import ReinitialiseNetwork
from monai_pruning.handlers.reinitialise_network import reinitialise

SHAPE = (2, 1, 16, 16)
CUT = {"model.0.residual": [1], "model.1.submodule.0.residual": [0, 5]}


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="batch")


def _pruned_checkpoint(path) -> UNet:
    network = _unet()
    ChannelPruner(network, SHAPE).cut(CUT)
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, path)
    return network


def _started_network(checkpoint, seed: int) -> UNet:
    network = _unet(seed=7)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    loader = CheckpointLoader(load_path=str(checkpoint), load_dict={"pruning": PruningRecord(network, optimizer)})
    trainer = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=[], network=network,
                                optimizer=optimizer, loss_function=torch.nn.MSELoss(),
                                train_handlers=[loader, ReinitialiseNetwork(seed=seed)])
    trainer._fire_event(Events.STARTED)  # only the STARTED handlers: the loader, then the re-initialisation
    assert [id(p) for g in optimizer.param_groups for p in g["params"]] == [id(p) for p in network.parameters()]
    return network


def test_the_run_starts_with_the_pruned_widths_and_none_of_the_pruned_weights(tmp_path):
    pruned = _pruned_checkpoint(tmp_path / "model.pt")
    started = _started_network(tmp_path / "model.pt", seed=0)
    assert module_widths(started) == module_widths(pruned)
    pruned_weights = dict(pruned.named_parameters())
    for name, parameter in started.named_parameters():
        if parameter.numel() > 1 and name.endswith("conv.weight"):
            assert not torch.equal(parameter, pruned_weights[name]), name


def test_fresh_weights_follow_the_seed():
    a, b, c = _unet(), _unet(), _unet()
    assert reinitialise(a, seed=3) == reinitialise(b, seed=3) > 0
    reinitialise(c, seed=4)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()) if pa.numel() > 1)


def test_reinitialisation_leaves_the_global_random_stream_alone():
    network = _unet()
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    reinitialise(network, seed=0)
    assert torch.equal(torch.rand(3), expected)
