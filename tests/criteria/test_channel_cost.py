from __future__ import annotations

from copy import deepcopy

import pytest
import torch
from monai.networks.nets import DynUNet
from torch import nn

from monai_pruning.criteria import cost_normalize, macs_per_channel, select_global_lowest
from monai_pruning.engine import ChannelPruner
from monai_pruning.measure import count_macs, macs_by_layer


class _Chain(nn.Module):
    """conv(3->4, k3) -> BN -> ReLU -> conv(4->6, k1) -> ReLU -> conv(6->2, k1)."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.c2 = nn.Conv2d(4, 6, 1)
        self.c3 = nn.Conv2d(6, 2, 1)

    def forward(self, x):
        return self.c3(torch.relu(self.c2(torch.relu(self.bn(self.c1(x))))))


class _Concat(nn.Module):
    """Two branches (3->2 and 3->3, k3) concatenated into a 1x1 head (5->1)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 2, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.head = nn.Conv2d(5, 1, 1)

    def forward(self, x):
        return self.head(torch.cat([self.a(x), self.b(x)], dim=1))


def _cost(net: nn.Module, shape) -> dict[str, float]:
    pruner = ChannelPruner(net.eval(), shape)
    return macs_per_channel(pruner.graph, macs_by_layer(net, (1, *shape[1:])))


def test_macs_per_channel_of_a_chain_is_the_producer_norm_and_consumer_share_by_hand():
    cost = _cost(_Chain(), (1, 3, 8, 8))
    pixels = 8 * 8
    # c1: 64 px x 4 out x 27 -> 1728 per out channel; BN: 64 per channel; c2 reads it: 64 x 6 -> 384 per in channel
    assert cost["c1"] == pytest.approx(pixels * 27 + pixels + pixels * 6)
    # c2: 64 x 4 per out channel; c3 reads it: 64 x 2 per in channel
    assert cost["c2"] == pytest.approx(pixels * 4 + pixels * 2)


def test_concatenated_inputs_charge_each_branch_only_its_own_positions():
    cost = _cost(_Concat(), (1, 3, 8, 8))
    pixels = 8 * 8
    # head: 64 x 1 x 5 MACs, i.e. 64 per input position, whichever branch it comes from
    assert cost["a"] == pytest.approx(pixels * 27 + pixels)
    assert cost["b"] == pytest.approx(pixels * 27 + pixels)


@pytest.mark.parametrize("dims", [2, 3])
def test_predicted_saving_equals_the_measured_saving_of_cutting_one_channel(dims):
    size = 16 if dims == 2 else 8
    shape = (1, 1) + (size,) * dims
    torch.manual_seed(0)
    net = DynUNet(dims, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2],
                  upsample_kernel_size=[2, 2], filters=[4, 8, 16], norm_name=("instance", {"affine": True}))
    net.eval()
    pruner = ChannelPruner(net, shape)
    predicted = macs_per_channel(pruner.graph, macs_by_layer(net, shape))
    for group in list(pruner.prunable_groups):
        cut = ChannelPruner(deepcopy(net), shape)
        before = count_macs(cut.network, shape)
        cut.cut({group: [0]})
        # no layer of this network reads and writes the same group, so the first-order saving is exact
        assert before - count_macs(cut.network, shape) == pytest.approx(predicted[group]), group


def test_cost_normalize_ranks_by_importance_per_mac():
    scores = {"cheap": torch.tensor([1.0, 2.0]), "dear": torch.tensor([4.0, 8.0])}
    normalized = cost_normalize(scores, {"cheap": 1.0, "dear": 8.0})
    # relative costs 2/9 and 16/9 of the mean 4.5
    assert torch.allclose(normalized["cheap"], torch.tensor([4.5, 9.0]))
    assert torch.allclose(normalized["dear"], torch.tensor([2.25, 4.5]))
    # by importance alone the cheap channels go first; per MAC the dear channel with score 4 goes first
    assert select_global_lowest(scores, 1) == {"cheap": [0], "dear": []}
    assert select_global_lowest(normalized, 1) == {"cheap": [], "dear": [0]}


def test_cost_normalize_never_prefers_a_group_that_saves_nothing_and_names_missing_groups():
    normalized = cost_normalize({"free": torch.tensor([0.0]), "paid": torch.tensor([5.0])}, {"free": 0.0, "paid": 3.0})
    assert torch.isinf(normalized["free"]).all() and normalized["paid"].item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match="no cost for the scored groups \\['x'\\]"):
        cost_normalize({"x": torch.ones(2)}, {})
    with pytest.raises(ValueError, match=">= 0"):
        cost_normalize({"x": torch.ones(2)}, {"x": -1.0})
    with pytest.raises(ValueError, match="NaN\\) for the groups \\['x'\\]"):
        cost_normalize({"x": torch.ones(2)}, {"x": float("nan")})
    with pytest.raises(TypeError, match="ChannelGraph"):
        macs_per_channel(object(), {})
