"""
RewrapReshapedNetwork: plain DistributedDataParallel training that resumes a pruned checkpoint stays in sync.

Two CPU processes (gloo), each with its own data, load a pruned checkpoint into an unpruned network at the start of
training, as a resumed run does. Identical parameters on both ranks afterwards can only come from a wrapper that
synchronises the gradients of the reallocated parameters; without the handler the stale wrapper must visibly fail
(the test would otherwise not show anything).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from monai.engines import SupervisedTrainer
from monai.handlers import CheckpointLoader
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.distributed import wrapper_is_stale
from monai_pruning.engine import ChannelPruner, PruningRecord
from monai_pruning.handlers import RewrapReshapedNetwork

from process_groups import gloo_group, run_ranks

WORLD = 2
SHAPE = (2, 1, 16, 16)

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(8, 16), strides=(2,), num_res_units=1, norm="batch")


def _pruned_checkpoint(path: Path) -> None:
    net = _unet()
    pruner = ChannelPruner(net, SHAPE, min_channels=2)
    pruner.cut({name: [0, 1, 2] for name in list(pruner.prunable_groups)[:2]})
    torch.save({"pruning": PruningRecord(net).state_dict(), "model": net.state_dict()}, path)


def _rank_data(rank: int) -> list[dict]:
    generator = torch.Generator().manual_seed(200 + rank)
    images = torch.randn((6, *SHAPE[1:]), generator=generator)
    labels = (images > 0.3).float()
    return [{"image": images[i : i + 2], "label": labels[i : i + 2]} for i in range(0, 6, 2)]


def _worker(rank: int, init_file: str, out: str, with_handler: bool) -> None:
    os.environ["LOCAL_RANK"] = str(rank)
    torch.set_num_threads(1)
    result: dict = {}
    with gloo_group(init_file, rank, WORLD):
        net = _unet()
        wrapper = nn.parallel.DistributedDataParallel(net)
        optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
        trainer = SupervisedTrainer(
            device=torch.device("cpu"),
            max_epochs=2,
            train_data_loader=_rank_data(rank),
            network=wrapper,
            optimizer=optimizer,
            loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
            decollate=False,
        )
        record = PruningRecord(net, optimizer)
        CheckpointLoader(str(Path(out) / "pruned.pt"), {"pruning": record, "model": net}).attach(trainer)
        if with_handler:
            RewrapReshapedNetwork().attach(trainer)
        try:
            trainer.run()
        except RuntimeError as err:
            result["error"] = str(err).splitlines()[0]
        result["stale"] = wrapper_is_stale(trainer.network)
        result["replaced"] = trainer.network is not wrapper and trainer.network.module is net
        # parameters only: the BatchNorm statistics of the last forward are rank 0's only from the next forward on
        result["state"] = {k: v.detach().clone() for k, v in net.named_parameters()}
    torch.save(result, Path(out) / f"result{rank}.pt")


def _run(tmp_path: Path, with_handler: bool) -> list[dict]:
    _pruned_checkpoint(tmp_path / "pruned.pt")
    run_ranks(_worker, WORLD, str(tmp_path / "init"), str(tmp_path), with_handler)
    return [torch.load(tmp_path / f"result{r}.pt", weights_only=True) for r in range(WORLD)]


def test_plain_ddp_training_after_loading_a_pruned_checkpoint_keeps_the_replicas_identical(tmp_path):
    results = _run(tmp_path, with_handler=True)
    assert all("error" not in r and r["replaced"] and not r["stale"] for r in results)
    pruned = torch.load(tmp_path / "pruned.pt", weights_only=True)["model"]
    assert results[0]["state"]
    for name, value in results[0]["state"].items():
        assert value.shape == pruned[name].shape, name
        assert torch.equal(value, results[1]["state"][name]), name
    assert any(not torch.equal(results[0]["state"][n], pruned[n]) for n in pruned)  # it trained


def test_without_the_handler_the_stale_wrapper_fails_or_lets_the_replicas_drift(tmp_path):
    results = _run(tmp_path, with_handler=False)
    assert all(r["stale"] for r in results)
    drifted = any(not torch.equal(v, results[1]["state"][n]) for n, v in results[0]["state"].items())
    assert "error" in results[0] or drifted


def _left_alone_worker(rank: int, init_file: str) -> None:
    with gloo_group(init_file, rank, 1):
        net = _unet()
        wrapper = nn.parallel.DistributedDataParallel(net)
        engine = type("Engine", (), {"network": wrapper})()
        RewrapReshapedNetwork()(engine)
        assert engine.network is wrapper and not wrapper_is_stale(wrapper)
        engine.network = net
        RewrapReshapedNetwork()(engine)
        assert engine.network is net
        with pytest.raises(TypeError, match="expected a DistributedDataParallel"):
            wrapper_is_stale(net)


def test_a_current_wrapper_or_a_plain_network_is_left_alone(tmp_path):
    run_ranks(_left_alone_worker, 1, str(tmp_path / "init"))
