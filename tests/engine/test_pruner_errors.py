"""``ChannelPruner.cut`` refuses cuts it cannot make, early, with one clear line, and without touching the network.

Every refusal is a ``PruningError`` naming the group and what is wrong with the request; it is raised before any
tensor is replaced, so that a handler catching it still holds an intact network and optimizer.
"""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import SegResNet, UNet

from monai_pruning.engine import ChannelPruner, PruningError

SHAPE = (2, 1, 16, 16)


@pytest.fixture(scope="module")
def unet_pruner() -> ChannelPruner:
    """Shared by the tests that must not cut anything (each one checks that nothing was cut)."""
    torch.manual_seed(0)
    return ChannelPruner(UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1), SHAPE, min_channels=2)


@pytest.fixture(scope="module")
def segresnet_pruner() -> ChannelPruner:
    torch.manual_seed(0)
    network = SegResNet(2, init_filters=8, in_channels=1, out_channels=2, blocks_down=(1, 1), blocks_up=(1,),
                        norm=("GROUP", {"num_groups": 4}))
    return ChannelPruner(network, SHAPE)


def _refused(pruner: ChannelPruner, removals: dict, match: str) -> str:
    """Run a cut that must fail; return its message after checking the network was left as it was."""
    weights = {name: p.detach().clone() for name, p in pruner.network.named_parameters()}
    widths = pruner.widths(prunable_only=False)
    with pytest.raises(PruningError, match=match) as err:
        pruner.cut(removals)
    message = str(err.value)
    assert "\n" not in message
    assert pruner.widths(prunable_only=False) == widths
    current = dict(pruner.network.named_parameters())
    assert current.keys() == weights.keys() and all(torch.equal(current[k], weights[k]) for k in weights)
    return message


def test_unknown_group_is_refused_naming_it_and_the_known_groups(unet_pruner):
    message = _refused(unet_pruner, {"model.0.conv.unit0.conv": [0]}, r"unknown channel group 'model\.0\.conv")
    assert "model.0.residual" in message


def test_unprunable_group_is_refused_with_the_reason(unet_pruner):
    _refused(unet_pruner, {"model.2.0.conv": [0]}, r"channel group 'model\.2\.0\.conv' is not prunable: network output")


@pytest.mark.parametrize("index", [4, -1, 100])
def test_channel_index_out_of_range_is_refused_naming_group_and_size(unet_pruner, index):
    _refused(unet_pruner, {"model.0.residual": [0, index]}, r"out of range for group 'model\.0\.residual' of 4 ")


def test_too_few_channels_left_is_refused_naming_min_channels(unet_pruner):
    message = _refused(unet_pruner, {"model.0.residual": [0, 1, 2]}, r"group 'model\.0\.residual'")
    assert "min_channels=2" in message and "3 of 4" in message


def test_a_bad_group_anywhere_in_the_request_leaves_every_other_group_uncut(unet_pruner):
    _refused(unet_pruner, {"model.1.submodule.0.residual": [0, 1], "model.0.residual": [9]}, "out of range")


def test_partial_groupnorm_block_is_refused(segresnet_pruner):
    assert segresnet_pruner.groups["convInit.conv"].unit == 2
    _refused(segresnet_pruner, {"convInit.conv": [2]}, r"'convInit\.conv' can only lose whole blocks of 2 channels")
    _refused(segresnet_pruner, {"convInit.conv": [1, 2]}, "whole blocks of 2")


def test_groupnorm_group_keeps_at_least_one_block(segresnet_pruner):
    _refused(segresnet_pruner, {"convInit.conv": list(range(8))}, r"fewer than min_channels=2")


def test_min_channels_below_one_is_refused_at_construction():
    with pytest.raises(PruningError, match="min_channels must be at least 1, got 0"):
        ChannelPruner(torch.nn.Conv2d(1, 2, 1), SHAPE, min_channels=0)


def test_empty_removals_cut_nothing(unet_pruner):
    widths = unet_pruner.widths()
    assert unet_pruner.cut({"model.0.residual": []}) == {}
    assert unet_pruner.widths() == widths


def test_removable_counts_what_min_channels_and_groupnorm_blocks_allow(unet_pruner, segresnet_pruner):
    assert unet_pruner.removable("model.0.residual") == 2  # 4 channels, min_channels=2
    assert segresnet_pruner.removable("convInit.conv") == 6  # 8 channels in blocks of 2, at least one block left
    assert segresnet_pruner.removable("down_layers.1.0.conv") == 12  # 16 channels in blocks of 4
