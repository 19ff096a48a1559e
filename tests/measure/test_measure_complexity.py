from __future__ import annotations

import pytest
import torch
from torch import nn

from monai_pruning.measure import Complexity, count_macs, count_parameters, macs_by_layer, measure_complexity


@pytest.mark.parametrize(
    "layer, shape, expected",
    [
        # out length (10 + 2 - 3) // 2 + 1 = 5; 2 x 6 x 5 outputs, each 4 in-channels x 3 taps
        (nn.Conv1d(4, 6, 3, stride=2, padding=1), (2, 4, 10), 2 * 6 * 5 * 4 * 3),
        # out 5 x 7; 8 x 5 x 7 outputs, each (4 / 2) x 3 x 5 taps
        (nn.Conv2d(4, 8, (3, 5), stride=(2, 1), padding=(1, 2), groups=2), (1, 4, 9, 7), 8 * 5 * 7 * 2 * 15),
        # no padding: out 3 x 4 x 5
        (nn.Conv3d(2, 3, 3), (1, 2, 5, 6, 7), 3 * 3 * 4 * 5 * 2 * 27),
        # dilation 2 enlarges the field, not the taps: out (12 - 4 - 1) // 3 + 1 = 3
        (nn.Conv1d(3, 2, 3, stride=3, dilation=2, bias=False), (1, 3, 12), 2 * 3 * 3 * 3),
        # depthwise: groups = channels, each output sees one channel
        (nn.Conv2d(6, 6, 3, padding=1, groups=6), (1, 6, 4, 4), 6 * 4 * 4 * 9),
        # every input element goes through a 2 x 2 kernel into each of 6 outputs
        (nn.ConvTranspose2d(4, 6, 2, stride=2), (1, 4, 5, 5), 4 * 5 * 5 * 6 * 4),
        (nn.ConvTranspose3d(4, 6, 3, stride=2, groups=2), (1, 4, 3, 3, 3), 4 * 27 * (6 // 2) * 27),
        (nn.ConvTranspose1d(2, 5, 4, stride=1, padding=1), (3, 2, 7), 3 * 2 * 7 * 5 * 4),
        (nn.Linear(10, 5), (3, 7, 10), 3 * 7 * 5 * 10),
        (nn.BatchNorm2d(4), (2, 4, 3, 3), 2 * 4 * 3 * 3),
        (nn.BatchNorm2d(4, affine=False), (2, 4, 3, 3), 0),
        (nn.InstanceNorm3d(2, affine=True), (1, 2, 4, 4, 4), 2 * 64),
        (nn.InstanceNorm3d(2), (1, 2, 4, 4, 4), 0),
        (nn.GroupNorm(2, 4), (2, 4, 5), 40),
        (nn.GroupNorm(2, 4, affine=False), (2, 4, 5), 0),
        (nn.LayerNorm(5), (2, 4, 5), 40),
        (nn.LayerNorm(5, elementwise_affine=False), (2, 4, 5), 0),
        (nn.ReLU(), (2, 4, 5), 0),
        (nn.MaxPool2d(2), (1, 3, 4, 4), 0),
    ],
)
def test_count_macs_of_single_layer_equals_hand_computed_value(layer, shape, expected):
    assert count_macs(layer, shape) == expected


def _small_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(4, 8, 3, padding=1, bias=False),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 2),
    )


def test_count_macs_of_composed_network_sums_its_layers():
    # conv 4*8*8*9 + bn 4*8*8 + conv 8*4*4*4*9 + linear 2*128
    assert count_macs(_small_net(), (1, 1, 8, 8)) == 2304 + 256 + 4608 + 256
    assert macs_by_layer(_small_net(), (1, 1, 8, 8)) == {"0": 2304, "1": 256, "4": 4608, "6": 256}


def test_count_macs_scales_with_batch_size():
    net = _small_net()
    assert count_macs(net, (3, 1, 8, 8)) == 3 * count_macs(net, (1, 1, 8, 8))


def test_count_parameters_and_complexity_of_composed_network():
    net = _small_net()
    expected_params = (4 * 9 + 4) + (4 + 4) + (8 * 4 * 9) + (128 * 2 + 2)
    assert count_parameters(net) == expected_params
    assert measure_complexity(net, (1, 1, 8, 8)) == Complexity(params=expected_params, macs=7424)


def test_count_parameters_trainable_only_leaves_out_frozen_parameters():
    net = _small_net()
    for param in net[0].parameters():
        param.requires_grad_(False)
    assert count_parameters(net, trainable_only=True) == count_parameters(net) - (4 * 9 + 4)


def test_count_parameters_counts_shared_parameters_once():
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, nn.ReLU(), shared)) == 20


def test_count_parameters_refuses_uninitialised_lazy_module():
    with pytest.raises(ValueError, match="lazy"):
        count_parameters(nn.LazyLinear(3))


class _MultiOutput(nn.Module):
    """Calls one conv twice and returns a dict holding a tuple and a list, like deep-supervision networks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1, bias=False)
        self.head = nn.Conv2d(2, 1, 1)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.conv(self.conv(x))
        return {"main": self.head(y), "aux": (y, [x])}


def test_count_macs_handles_dict_and_tuple_outputs_and_counts_each_call_of_a_shared_layer():
    # 2 calls x (2 x 4 x 4 outputs x 2 in-channels) + head 1 x 4 x 4 x 2
    assert count_macs(_MultiOutput(), (1, 2, 4, 4)) == 2 * 64 + 32


class _TrainOnlyHead(nn.Module):
    """Adds an auxiliary head in training mode only, as deep supervision does."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv1d(1, 2, 1, bias=False)
        self.aux = nn.Conv1d(2, 1, 1, bias=False)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor):
        y = self.drop(self.body(x))
        return (y, self.aux(y)) if self.training else y


def test_count_macs_uses_current_mode_and_leaves_mode_and_global_rng_untouched():
    net = _TrainOnlyHead()
    torch.manual_seed(123)
    state = torch.get_rng_state()
    assert count_macs(net.train(), (1, 1, 5)) == 10 + 10
    assert net.training
    assert torch.equal(torch.get_rng_state(), state)
    assert count_macs(net.eval(), (1, 1, 5)) == 10
    assert not net.training


def test_count_macs_in_training_mode_leaves_batchnorm_running_statistics_untouched():
    net = _small_net().train()
    before = {name: buf.clone() for name, buf in net.named_buffers()}
    count_macs(net, (4, 1, 8, 8))
    for name, buf in net.named_buffers():
        assert torch.equal(buf, before[name]), name


def test_count_macs_accepts_an_example_tensor_and_removes_its_hooks():
    net = _small_net()
    assert count_macs(net, torch.zeros(2, 1, 8, 8)) == 2 * 7424
    assert all(not layer._forward_hooks for layer in net.modules())


@pytest.mark.parametrize("shape", [(), (1, 0, 8, 8), (1, 1, 8.0, 8), "1,1,8,8", 5])
def test_count_macs_rejects_bad_input_shape_with_one_line_error(shape):
    with pytest.raises(ValueError, match="count_macs: .*input_shape") as info:
        count_macs(_small_net(), shape)
    assert "\n" not in str(info.value)


def test_count_macs_reports_incompatible_shape_in_one_line_naming_the_shape():
    net = _small_net()
    with pytest.raises(ValueError, match=r"count_macs: forward pass of Sequential failed .*\(1, 3, 8, 8\)") as info:
        count_macs(net, (1, 3, 8, 8))
    assert "\n" not in str(info.value)
    assert all(not layer._forward_hooks for layer in net.modules())


def test_count_macs_refuses_non_module():
    with pytest.raises(TypeError, match="count_macs: expected a torch.nn.Module"):
        count_macs(lambda x: x, (1, 1))


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


class _ClassicUNet(nn.Module):
    """The 4-down/4-up U-Net of the TaylorFO reference (maxpool down, 2x2 transposed conv up, concat skips)."""

    def __init__(self, base: int) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(5)]
        self.down = nn.ModuleList([_double_conv(1, widths[0])])
        self.down.extend(_double_conv(widths[i], widths[i + 1]) for i in range(4))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(4)))
        self.decode = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in reversed(range(4)))
        self.head = nn.Conv2d(widths[0], 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for index, block in enumerate(self.down):
            x = block(x if index == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()
        for up, decode in zip(self.up, self.decode):
            x = decode(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)


def test_count_macs_matches_independent_analytic_reference_for_classic_unet():
    # computed analytically from the layer shapes: base width 16 has 1.94 M params and 3.0 G MACs at 256^2,
    # excluding BN and ReLU
    net = _ClassicUNet(16)
    per_layer = macs_by_layer(net, (1, 1, 256, 256))
    layers = dict(net.named_modules())
    conv_macs = sum(macs for name, macs in per_layer.items() if not isinstance(layers[name], nn.BatchNorm2d))
    assert conv_macs == pytest.approx(3.0e9, rel=0.02)
    assert count_parameters(net) == pytest.approx(1.94e6, rel=0.005)
