from __future__ import annotations

import copy

import pytest
import torch
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner, PruningRecord
from monai_pruning.handlers import networks_from_checkpoints, write_feature_map_comparison
from monai_pruning.handlers.feature_map_export import FeatureMapError
from monai_pruning.measure import count_macs


def _unet() -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(6, 8, 10), strides=(2, 2), num_res_units=0, norm="instance")


def _cut(network: torch.nn.Module, share: int) -> torch.nn.Module:
    pruned = copy.deepcopy(network)
    pruner = ChannelPruner(pruned, (2, 1, 16, 16))
    pruner.cut({group: list(range(width // share)) for group, width in pruner.widths().items()})
    return pruned


def test_page_lists_channels_kept_and_macs_per_layer_and_shows_every_network_side_by_side(tmp_path):
    baseline = _unet()
    halved, third = _cut(baseline, 2), _cut(baseline, 3)
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    page = write_feature_map_comparison({"baseline": baseline, "sauron": halved, "taylorfo": third}, image, tmp_path)
    text = page.read_text()
    widths = ChannelPruner(copy.deepcopy(baseline), (2, 1, 16, 16)).widths()
    halved_widths = ChannelPruner(copy.deepcopy(halved), (2, 1, 16, 16)).widths()
    for group, width in widths.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| {group} |"))
        assert f"{width} of {width} ch" in row and f"{halved_widths[group]} of {width} ch" in row
    share = 100 * count_macs(halved, (1, 1, 16, 16)) / count_macs(baseline, (1, 1, 16, 16))
    assert f"| sauron | {sum(halved_widths.values())} |" in text and f"{share:.1f}%" in text
    assert len(list(tmp_path.glob("*.png"))) == len(widths)
    assert all(f"]({number:02d}_" in text for number in range(1, len(widths) + 1))


def test_layers_draws_only_the_named_groups_while_the_table_keeps_every_group(tmp_path):
    baseline = _unet()
    image = torch.rand(1, 16, 16, generator=torch.Generator().manual_seed(0))
    groups = list(ChannelPruner(copy.deepcopy(baseline), (2, 1, 16, 16)).widths())
    page = write_feature_map_comparison({"baseline": baseline, "half": _cut(baseline, 2)}, image, tmp_path,
                                        layers=[groups[-1]])
    text = page.read_text()
    drawn = [path.name for path in tmp_path.glob("*.png")]
    assert len(drawn) == 1 and drawn[0].endswith(f"_{groups[-1]}.png") and f"]({drawn[0]})" in text
    assert all(f"| {group} |" in text for group in groups)
    assert f"(drawn for 1 of the {len(groups)} layers)" in text
    with pytest.raises(FeatureMapError, match="groups baseline does not have: \\['nowhere'\\]"):
        write_feature_map_comparison({"baseline": baseline}, image, tmp_path / "bad", layers=["nowhere"])
    with pytest.raises(FeatureMapError, match="list of group names"):
        write_feature_map_comparison({"baseline": baseline}, image, tmp_path / "bad", layers=groups[0])


def test_networks_come_from_checkpoints_in_the_order_given(tmp_path):
    baseline = _unet()
    halved = _cut(baseline, 2)
    for name, network in (("base", baseline), ("half", halved)):
        torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, tmp_path / name)
    loaded = networks_from_checkpoints(_unet(), {"half": tmp_path / "half", "base": tmp_path / "base"})
    assert list(loaded) == ["half", "base"]
    assert loaded["half"].model[0].conv.out_channels == halved.model[0].conv.out_channels < 6
    assert loaded["base"].model[0].conv.out_channels == 6
    with pytest.raises(FeatureMapError, match="non-empty dict"):
        networks_from_checkpoints(_unet(), {})
