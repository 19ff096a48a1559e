"""Channel groups found by tracing (``docs/design.md``, "The channel engine").

A group is every tensor dimension that must lose the same channels: producers joined by residual additions, the
norms after them, and each consumer's input slice at its offset inside a concatenation.  What the tracer does not
understand makes the affected group unprunable with one warning naming the module and operation; the network's input
and output channels are never pruned; a network whose graph cannot be trusted is refused with a ``TraceError``; and
tracing itself leaves no trace on the network.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from monai.networks.nets import DynUNet, SegResNet, UNet
from torch import nn

from monai_pruning.engine import ChannelPruner, TraceError, UnprunableChannelsWarning, trace_channel_groups

SHAPE = (2, 1, 16, 16)


def _unet(**kwargs) -> UNet:
    torch.manual_seed(0)
    return UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1, **kwargs)


def _unprunable_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, UnprunableChannelsWarning)]


class _StemMiddleHead(nn.Module):
    """``stem`` (1 -> 8) -> ``middle`` -> ``expand`` (-> 6) -> ``head`` (-> 2); ``middle`` is what a test varies."""

    def __init__(self, middle: nn.Module, middle_out: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 8, 3, padding=1)
        self.middle = middle
        self.expand = nn.Conv2d(middle_out, 6, 3, padding=1)
        self.head = nn.Conv2d(6, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.expand(self.middle(torch.relu(self.stem(x))))))


class _FirstTwoChannelsDoubled(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2] * 2


class _ChannelFlip(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flip(x, [1])


class _SignBranch(nn.Module):
    """Takes one of two convolutions depending on the input's values: no single graph describes it."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(1, 4, 3, padding=1)
        self.positive = nn.Conv2d(4, 4, 3, padding=1)
        self.negative = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(4, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if x.sum() > 0:
            x = self.positive(x)
        else:
            x = self.negative(x)
        return self.head(x)


def test_unet_skip_concatenation_puts_each_group_at_its_offset_in_the_decoder_input():
    network = _unet()
    graph = trace_channel_groups(network, SHAPE)
    taps = graph.consumer_taps()

    # decoder input of the middle level is cat([skip: 8 channels, deeper level: 16 channels])
    assert ("model.1.submodule.2.0.conv", list(range(8))) in taps["model.1.submodule.0.residual"]
    assert ("model.1.submodule.2.0.conv", list(range(8, 24))) in taps["model.1.submodule.1.submodule.residual"]
    # top level: cat([skip: 4 channels, decoder: 4 channels]) enters the output head
    assert ("model.2.0.conv", [0, 1, 2, 3]) in taps["model.0.residual"]
    assert ("model.2.0.conv", [4, 5, 6, 7]) in taps["model.1.submodule.2.0.conv"]
    positions = graph.positions_to_remove({"model.1.submodule.1.submodule.residual": [0, 5]})
    assert positions[("model.1.submodule.2.0.conv", "in")] == [8, 13]
    assert positions[("model.1.submodule.1.submodule.conv.unit0.conv", "out")] == [0, 5]

    # the offsets are where the deeper level's feature maps really are in the decoder's input
    seen = {}
    modules = dict(network.named_modules())
    modules["model.1.submodule.1.submodule"].register_forward_hook(lambda m, a, out: seen.update(deep=out))
    modules["model.1.submodule.2.0.conv"].register_forward_pre_hook(lambda m, args: seen.update(decoder=args[0]))
    with torch.no_grad():
        network.eval()(torch.randn(*SHAPE))
    assert torch.equal(seen["decoder"][:, 8:24], seen["deep"])


def test_residual_unit_joins_its_residual_conv_and_conv_unit_into_one_group():
    pruner = ChannelPruner(_unet(), SHAPE)
    group = pruner.groups["model.0.residual"]

    assert sorted(group.producers) == ["model.0.conv.unit0.conv", "model.0.residual"]
    assert "model.0.conv.unit0.conv" not in pruner.groups  # no second group for the joined producer
    pruner.cut({"model.0.residual": [2]})
    assert pruner.network.model[0].residual.out_channels == 3
    assert pruner.network.model[0].conv.unit0.conv.out_channels == 3
    assert pruner.network(torch.randn(*SHAPE)).shape == (2, 2, 16, 16)


def test_segresnet_groups_are_cut_in_whole_groupnorm_blocks_that_keep_their_size():
    torch.manual_seed(0)
    network = SegResNet(2, init_filters=8, in_channels=1, out_channels=2, blocks_down=(1, 1), blocks_up=(1,),
                        norm=("GROUP", {"num_groups": 4}))
    pruner = ChannelPruner(network, SHAPE)
    modules = dict(network.named_modules())

    for name, group in pruner.prunable_groups.items():
        norms = [modules[f] for f in group.followers if isinstance(modules[f], nn.GroupNorm)]
        assert norms, name
        assert group.unit == group.size // 4 == norms[0].num_channels // norms[0].num_groups, name
    stem = pruner.groups["convInit.conv"]
    norms = [modules[f] for f in stem.followers if isinstance(modules[f], nn.GroupNorm)]
    assert stem.unit == 2 and len(norms) >= 2

    pruner.cut({"convInit.conv": [2, 3]})

    assert all((n.num_channels, n.num_groups) == (6, 3) for n in norms)
    assert pruner.groups["convInit.conv"].unit == 2 and pruner.groups["convInit.conv"].size == 6
    assert network(torch.randn(*SHAPE)).shape == (2, 2, 16, 16)


def test_grouped_convolution_makes_its_groups_unprunable_with_one_warning_naming_it():
    network = _StemMiddleHead(nn.Conv2d(8, 8, 3, padding=1, groups=2))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        graph = trace_channel_groups(network, SHAPE)

    messages = _unprunable_warnings(record)
    assert len(messages) == 1
    assert "middle" in messages[0] and "groups=2" in messages[0]
    assert not graph.groups["stem"].prunable and not graph.groups["middle"].prunable
    assert "middle" in graph.groups["stem"].reason
    assert graph.groups["expand"].prunable


def test_depthwise_convolution_is_followed_not_blocked():
    network = _StemMiddleHead(nn.Conv2d(8, 8, 3, padding=1, groups=8))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        pruner = ChannelPruner(network, SHAPE)
    assert not _unprunable_warnings(record)
    assert "middle" in pruner.groups["stem"].followers
    pruner.cut({"stem": [0, 5]})
    assert (network.middle.in_channels, network.middle.out_channels, network.middle.groups) == (6, 6, 6)


@pytest.mark.parametrize(
    "middle, middle_out, op",
    [(_FirstTwoChannelsDoubled(), 2, "getitem"), (_ChannelFlip(), 8, "flip")],
    ids=["slice-of-channels", "flip-of-channels"],
)
def test_unsupported_channel_operation_blocks_its_group_with_a_warning_naming_module_and_op(middle, middle_out, op):
    network = _StemMiddleHead(middle, middle_out)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        graph = trace_channel_groups(network, SHAPE)

    messages = _unprunable_warnings(record)
    assert len(messages) == 1
    assert "'stem'" in messages[0] and "middle" in messages[0] and op in messages[0]
    assert not graph.groups["stem"].prunable
    assert graph.groups["expand"].prunable  # what comes after the operation is understood again


def test_network_input_and_output_head_channels_are_never_pruned():
    network = _unet()
    pruner = ChannelPruner(network, SHAPE)
    assert not pruner.groups["model.2.0.conv"].prunable  # the head
    assert pruner.groups["model.2.0.conv"].reason == "network output"
    assert "model.2.0.conv" not in pruner.widths()

    pruner.cut({name: list(range(pruner.removable(name))) for name in pruner.prunable_groups})

    assert all(width == 1 for width in pruner.widths().values())
    assert network.model[0].conv.unit0.conv.in_channels == 1 and network.model[0].residual.in_channels == 1
    assert network.model[2][0].conv.out_channels == 2
    assert network(torch.randn(*SHAPE)).shape == (2, 2, 16, 16)


def test_dynunet_deep_supervision_heads_lose_their_input_channels_and_train_mode_output_keeps_its_shape():
    torch.manual_seed(0)
    network = DynUNet(2, 1, 3, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 16], deep_supervision=True,
                      deep_supr_num=1)
    pruner = ChannelPruner(network, SHAPE)
    head = network.deep_supervision_heads[0].conv.conv
    head_name = "deep_supervision_heads.0.conv.conv"
    feeding = [name for name, g in pruner.prunable_groups.items() if head_name in g.consumers]
    assert feeding == ["upsamples.0.conv_block.conv2.conv"]

    pruner.cut({feeding[0]: [0, 3, 7]})

    assert (head.in_channels, head.out_channels) == (5, 3)
    x = torch.randn(*SHAPE)
    assert network.train()(x).shape == (2, 2, 3, 16, 16)
    with torch.no_grad():
        assert network.eval()(x).shape == (2, 3, 16, 16)


def test_data_dependent_control_flow_raises_a_one_line_trace_error_naming_the_network():
    with pytest.raises(TraceError, match="_SignBranch") as err:
        trace_channel_groups(_SignBranch(), SHAPE)
    assert "data-dependent control flow" in str(err.value) and "\n" not in str(err.value)


def test_network_that_does_not_run_on_the_example_shape_raises_trace_error_naming_the_shape():
    with pytest.raises(TraceError, match=r"does not run on an input of shape \(2, 3, 16, 16\)") as err:
        trace_channel_groups(_unet(), (2, 3, 16, 16))
    assert "\n" not in str(err.value)


def test_wrapped_network_is_refused_with_a_hint_to_prune_the_module():
    with pytest.raises(TraceError, match=r"`\.module`"):
        trace_channel_groups(nn.DataParallel(_unet()), SHAPE)


def test_tracing_leaves_batchnorm_statistics_modes_and_random_state_unchanged():
    network = _unet(norm="batch", dropout=0.3)
    network.train()
    network(torch.randn(*SHAPE))  # running statistics away from their initial values
    frozen = network.model[1].submodule[0].conv.unit0.adn.N
    frozen.eval()  # a frozen BatchNorm inside a training network, as when fine-tuning
    modes = {name: m.training for name, m in network.named_modules()}
    buffers = {name: b.clone() for name, b in network.named_buffers()}
    rng = torch.get_rng_state()

    ChannelPruner(network, SHAPE)

    assert torch.equal(torch.get_rng_state(), rng)
    assert {name: m.training for name, m in network.named_modules()} == modes
    assert all(torch.equal(b, buffers[name]) for name, b in network.named_buffers())
    network.eval()
    trace_channel_groups(network, SHAPE)
    assert not any(m.training for m in network.modules())
