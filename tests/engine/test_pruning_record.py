"""The pruning record (``docs/design.md``): plain data that reshapes a freshly built network to a pruned one.

The record must hold everything that the weights' shapes do not tell (depthwise ``groups``, GroupNorm
``num_groups``), so that a network built from the unpruned ``network_def`` takes the pruned weights strictly and
computes exactly what the pruned network computed; a record that does not fit the network is refused with one line.
"""

from __future__ import annotations

import io
import json

import pytest
import torch
from monai.networks.nets import FlexibleUNet, SegResNet, UNet
from torch import nn

from monai_pruning.engine import ChannelPruner, PruningRecord, PruningRecordError, module_widths, resize_to_widths
from monai_pruning.measure import count_macs, count_parameters

SHAPE = (2, 1, 16, 16)


def _unet(channels=(4, 8, 16), seed: int = 0, **kwargs) -> UNet:
    torch.manual_seed(seed)
    return UNet(2, 1, 2, channels, (2, 2), num_res_units=1, norm="batch", **kwargs)


def _segresnet(seed: int = 0) -> SegResNet:
    torch.manual_seed(seed)
    return SegResNet(2, init_filters=8, in_channels=1, out_channels=2, blocks_down=(1, 1), blocks_up=(1,),
                     norm=("GROUP", {"num_groups": 4}))


def _efficientnet_unet(seed: int = 0) -> FlexibleUNet:
    torch.manual_seed(seed)
    return FlexibleUNet(1, 2, "efficientnet-b0", pretrained=False, spatial_dims=2, decoder_channels=(16, 8, 8, 8, 8))


def _through_a_file(pruned: nn.Module) -> dict:
    """``{"pruning", "model"}`` as written by ``torch.save`` and read back with ``weights_only=True``."""
    buffer = io.BytesIO()
    torch.save({"pruning": PruningRecord(pruned).state_dict(), "model": pruned.state_dict()}, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _reload(fresh: nn.Module, checkpoint: dict) -> nn.Module:
    PruningRecord(fresh).load_state_dict(checkpoint["pruning"])
    fresh.load_state_dict(checkpoint["model"], strict=True)
    return fresh


def _groupnorms(network: nn.Module) -> dict[str, tuple[int, int]]:
    return {n: (m.num_channels, m.num_groups) for n, m in network.named_modules() if isinstance(m, nn.GroupNorm)}


def _same_outputs(a: nn.Module, b: nn.Module, shape) -> bool:
    x = torch.randn(*shape)
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


def test_record_is_plain_json_data_holding_the_pruned_widths():
    network = _unet()
    ChannelPruner(network, SHAPE).cut({"model.0.residual": [0], "model.1.submodule.1.submodule.residual": [3, 4]})

    state = PruningRecord(network).state_dict()

    assert json.loads(json.dumps(state)) == state
    entries = state["modules"]
    assert entries["model.0.conv.unit0.conv"] == {"type": "Conv2d", "in_channels": 1, "out_channels": 3, "groups": 1}
    assert entries["model.0.conv.unit0.adn.N"] == {"type": "BatchNorm2d", "num_features": 3}
    assert entries["model.1.submodule.2.0.conv"]["in_channels"] == 8 + 14  # skip + the cut deeper level
    assert all(isinstance(v, (str, int)) for entry in entries.values() for v in entry.values())


def test_pruned_network_has_the_widths_parameters_and_macs_of_a_freshly_built_narrower_one():
    network = _unet()
    pruner = ChannelPruner(network, SHAPE)
    params, macs = count_parameters(network), count_macs(network, (1, 1, 16, 16))

    pruner.cut({name: list(range(1, size, 2)) for name, size in pruner.widths().items()})  # every group halved

    narrower = _unet(channels=(2, 4, 8))
    assert module_widths(network) == module_widths(narrower)
    assert count_parameters(network) == count_parameters(narrower) < params
    assert count_macs(network, (1, 1, 16, 16)) == count_macs(narrower, (1, 1, 16, 16)) < macs


def test_record_reshapes_a_fresh_unpruned_network_to_compute_exactly_what_the_pruned_one_does():
    network = _unet()
    pruner = ChannelPruner(network, SHAPE)
    pruner.cut({"model.1.submodule.0.residual": [1, 6], "model.1.submodule.2.0.conv": [0]})

    fresh = _reload(_unet(seed=1), _through_a_file(network))

    assert module_widths(fresh) == module_widths(network)
    assert _same_outputs(fresh, network, SHAPE)


def test_record_restores_depthwise_groups_that_the_weight_shapes_do_not_show():
    network = _efficientnet_unet()
    pruner = ChannelPruner(network, (2, 1, 32, 32))
    depthwise = "encoder._blocks.1.1._depthwise_conv"
    assert depthwise in pruner.groups["encoder._blocks.1.1._expand_conv"].followers
    pruner.cut({"encoder._blocks.1.1._expand_conv": list(range(0, 96, 2)), "encoder._conv_stem": [0, 1, 2]})

    checkpoint = _through_a_file(network)
    assert checkpoint["pruning"]["modules"][depthwise] == {
        "type": "Conv2d", "in_channels": 48, "out_channels": 48, "groups": 48}
    fresh = _reload(_efficientnet_unet(seed=1), checkpoint)

    assert fresh.get_submodule(depthwise).groups == 48
    assert fresh.get_submodule("encoder._blocks.0.0._depthwise_conv").groups == 29
    assert _same_outputs(fresh, network, (1, 1, 32, 32))


def test_record_restores_groupnorm_num_groups_of_a_pruned_segresnet():
    network = _segresnet()
    pruner = ChannelPruner(network, SHAPE)
    pruner.cut({"convInit.conv": [0, 1, 6, 7], "down_layers.1.0.conv": [4, 5, 6, 7]})

    checkpoint = _through_a_file(network)
    fresh = _reload(_segresnet(seed=1), checkpoint)

    norms = _groupnorms(fresh)
    assert norms == _groupnorms(network)
    assert norms["conv_final.0"] == (4, 2) and checkpoint["pruning"]["modules"]["conv_final.0"]["num_groups"] == 2
    assert norms["down_layers.1.1.norm1"] == (12, 3)
    assert _same_outputs(fresh, network, SHAPE)


def test_record_of_an_unpruned_network_changes_nothing():
    network = _unet()
    fresh = _unet(seed=1)
    before = list(fresh.parameters())
    PruningRecord(fresh).load_state_dict(PruningRecord(network).state_dict())
    assert all(a is b for a, b in zip(before, fresh.parameters()))


def test_record_repoints_an_optimizer_at_the_reallocated_parameters():
    pruned = _unet()
    ChannelPruner(pruned, SHAPE).cut({"model.0.residual": [0]})
    unpruned = dict(_unet().named_parameters())
    changed = {name for name, p in pruned.named_parameters() if p.shape != unpruned[name].shape}

    slices = resize_to_widths(_unet(seed=1), module_widths(pruned))
    assert len(slices) == len(changed) > 0 and all(s.kept == () for s in slices)  # reallocated, not cut

    fresh = _unet(seed=1)
    before = dict(fresh.named_parameters())
    optimizer = torch.optim.SGD(fresh.parameters(), lr=0.1, momentum=0.9)
    PruningRecord(fresh, optimizer).load_state_dict(PruningRecord(pruned).state_dict())

    assert {name for name, p in fresh.named_parameters() if p is not before[name]} == changed
    assert [id(p) for g in optimizer.param_groups for p in g["params"]] == [id(p) for p in fresh.parameters()]


@pytest.mark.parametrize(
    "state, match",
    [
        ({"format_version": 1}, "not a pruning record"),
        ([1, 2], "not a pruning record"),
        ({"format_version": 99, "modules": {}}, "format 99 is not supported"),
        ({"format_version": 1, "modules": {"model.0.residual": {"type": "Conv2d", "in_channels": 1}}},
         r"entry for 'model\.0\.residual' has fields"),
        ({"format_version": 1, "modules": {"model.0.residual": {
            "type": "Conv2d", "in_channels": 1, "out_channels": 3, "groups": 2}}}, "impossible widths"),
        ({"format_version": 1, "modules": {"model.0.residual": {
            "type": "Conv2d", "in_channels": 1, "out_channels": 0, "groups": 1}}}, "impossible widths"),
    ],
    ids=["no-modules", "not-a-dict", "future-format", "missing-field", "groups-not-dividing", "zero-width"],
)
def test_malformed_record_is_refused_with_a_one_line_error(state, match):
    network = _unet()
    weights = {k: v.clone() for k, v in network.state_dict().items()}
    with pytest.raises(PruningRecordError, match=match) as err:
        PruningRecord(network).load_state_dict(state)
    assert "\n" not in str(err.value)
    assert all(torch.equal(v, weights[k]) for k, v in network.state_dict().items())  # refused before any change


def test_record_from_another_network_is_refused_naming_the_mismatch():
    record = PruningRecord(_segresnet()).state_dict()
    with pytest.raises(PruningRecordError, match=r"does not match UNet: no module 'convInit\.conv'") as err:
        PruningRecord(_unet()).load_state_dict(record)
    assert "network_def" in str(err.value) and "\n" not in str(err.value)

    instance_norm = UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, norm="instance")
    with pytest.raises(PruningRecordError, match=r"'model\.0\.conv\.unit0\.adn\.N' is InstanceNorm2d.*BatchNorm2d"):
        PruningRecord(instance_norm).load_state_dict(PruningRecord(_unet()).state_dict())


def test_a_data_parallel_wrapper_records_and_reshapes_the_network_inside_it_under_its_own_names():
    pruned = _unet()
    ChannelPruner(pruned, SHAPE).cut({next(iter(ChannelPruner(pruned, SHAPE).prunable_groups)): [0, 1]})
    record = PruningRecord(nn.DataParallel(pruned)).state_dict()
    assert record == PruningRecord(pruned).state_dict()
    assert not any(name.startswith("module.") for name in record["modules"])
    fresh = _unet(seed=1)
    PruningRecord(nn.DataParallel(fresh)).load_state_dict(record)
    assert module_widths(fresh) == module_widths(pruned)
