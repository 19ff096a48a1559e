"""The peer step probe: which channels a Torch-Pruning step cut, read back exactly, and our engine's cut compared."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DynUNet

pytest.importorskip("torch_pruning")

from tests.benchmarks.benchmark_scripts import load_script  # noqa: E402

from monai_pruning.engine import ChannelPruner  # noqa: E402
from monai_pruning.measure import count_macs  # noqa: E402

SHAPE = (2, 1, 16, 16, 16)


@pytest.fixture(scope="module")
def probe():
    return load_script("peer_step_probe")


def _dynunet3d() -> DynUNet:
    torch.manual_seed(0)
    return DynUNet(3, 1, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[8, 16, 32], norm_name="instance")


def test_a_3d_l1_peer_step_is_read_back_channel_by_channel_and_our_engine_cutting_them_gives_the_same_output(probe):
    network = _dynunet3d()
    start = count_macs(network, (1, *SHAPE[1:]))
    peer = probe.TorchPruningPeer(importance="l1", target_macs=int(0.6 * start), steps=1, example_shape=SHAPE,
                                  global_pruning=False)
    step = probe.first_peer_step(network, peer, SHAPE)
    assert step["macs_before"] == start and step["macs_after"] <= int(0.6 * start)
    # per layer: every prunable group lost channels, the transposed convolutions' groups included
    groups = ChannelPruner(_dynunet3d(), (1, *SHAPE[1:])).prunable_groups
    assert set(step["removals"]) == set(groups)
    assert any("transp_conv" in name for name in step["removals"])
    assert all(len(removed) < groups[name].size for name, removed in step["removals"].items())
    # the channels read back are the ones cut: our engine's cut of them has the peer's widths and output
    assert count_macs(step["ours"], (1, *SHAPE[1:])) == step["macs_after"]
    assert step["max_difference"] < 1e-5
    assert all(p.grad is None for p in network.parameters())  # the position tags do not outlive the probe


def test_reading_the_cut_channels_needs_the_positions_tagged_before_the_cut(probe):
    network = _dynunet3d()
    with pytest.raises(ValueError, match="no element positions"):
        probe.removed_channels(network, _dynunet3d(), ChannelPruner(_dynunet3d(), (1, *SHAPE[1:])))


def test_a_run_record_override_string_becomes_the_value_the_bundle_got(probe):
    assert probe._typed("False") is False and probe._typed("142874448") == 142874448
    assert probe._typed("l1") == "l1" and probe._typed(7) == 7
