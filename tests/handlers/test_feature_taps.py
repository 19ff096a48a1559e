from __future__ import annotations

import gc
import weakref

import pytest
import torch
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers.feature_taps import FeatureTaps, TapError

SHAPE = (2, 1, 16, 16)


def _unet(dtype=torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(4, 8, 16), strides=(2, 2), num_res_units=0, norm="batch").to(dtype)


def _prunable_taps(pruner: ChannelPruner) -> dict:
    return {g: t for g, t in pruner.graph.consumer_taps().items() if g in pruner.prunable_groups}


def test_features_are_the_group_channels_where_they_enter_their_first_consumer():
    net = _unet()
    pruner = ChannelPruner(net, SHAPE)
    taps_map = _prunable_taps(pruner)
    modules = dict(net.named_modules())
    seen = {}
    handles = [
        modules[entries[0][0]].register_forward_pre_hook(
            lambda m, args, group=group, pos=entries[0][1]: seen.__setitem__(group, args[0][:, pos].detach().clone())
        )
        for group, entries in taps_map.items()
    ]
    taps = FeatureTaps(net, taps_map, first_only=True)
    taps.enabled = True
    net(torch.randn(SHAPE))
    features = taps.features()
    for handle in handles:
        handle.remove()
    assert set(features) == set(taps_map)
    for group, width in pruner.widths().items():
        assert features[group].shape == (2, width, *seen[group].shape[2:])
        torch.testing.assert_close(features[group].detach(), seen[group])
    # the skip group enters the last conv after the up-sampled channels: positions are not 0..C-1 there
    assert any(entries[0][1][0] > 0 for entries in taps_map.values())
    assert all(f.requires_grad for f in features.values())


def test_disabled_taps_capture_nothing_so_evaluator_passes_leave_no_trace():
    net = _unet()
    taps = FeatureTaps(net, _prunable_taps(ChannelPruner(net, SHAPE)))
    with torch.no_grad():
        net(torch.randn(SHAPE))
    assert taps.features() == {}
    taps.enabled = True
    net(torch.randn(SHAPE))
    assert len(taps.features()) == len(taps)
    taps.clear()
    assert taps.features() == {}


def test_contributions_are_the_loss_derivative_of_a_gate_on_every_consumer_of_a_channel():
    """Sum over consumers of activation x gradient == dL/d(gate multiplying the channel wherever it is consumed)."""
    net = _unet(torch.float64)
    pruner = ChannelPruner(net, SHAPE)
    taps_map = _prunable_taps(pruner)
    group = "model.0.conv"  # feeds the encoder and, through the skip concatenation, the output convolution
    assert len(taps_map[group]) == 2
    modules = dict(net.named_modules())
    gate = torch.ones(pruner.widths()[group], dtype=torch.float64, requires_grad=True)

    def gate_hook(module, args, positions):
        x = args[0]
        scale = torch.ones(x.shape[1], dtype=x.dtype).index_put((torch.tensor(positions),), gate)
        return (x * scale.view(1, -1, 1, 1),)

    handles = [
        modules[name].register_forward_pre_hook(lambda m, a, p=positions: gate_hook(m, a, p))
        for name, positions in taps_map[group]
    ]
    taps = FeatureTaps(net, taps_map, gradients=True)  # registered after the gate: sees the gated input
    taps.enabled = True
    x = torch.randn(SHAPE, dtype=torch.float64)
    out = net(x)
    loss = (out * torch.randn_like(out)).sum()
    loss.backward()
    for handle in handles:
        handle.remove()
    z = taps.contributions()
    assert set(z) == set(taps_map)
    assert z[group].shape == (2, gate.numel())
    torch.testing.assert_close(z[group].sum(dim=0), gate.grad)


def _grad_through_taps(net: torch.nn.Module) -> tuple[FeatureTaps, torch.Tensor, list[torch.Tensor]]:
    """One tapped forward pass of ``net`` and ``autograd.grad`` of its summed output w.r.t. the tapped tensors."""
    taps = FeatureTaps(net, _prunable_taps(ChannelPruner(net, SHAPE)), gradients=True)
    taps.enabled = True
    out = net(torch.randn(SHAPE))
    taps.enabled = False
    tapped = taps.tapped_tensors()
    torch.autograd.grad(out, tapped, grad_outputs=torch.ones_like(out), allow_unused=True)
    return taps, out, tapped


def test_gradients_reach_taps_through_autograd_grad_without_touching_parameter_grads():
    net = _unet()
    taps, _, _ = _grad_through_taps(net)
    assert len(taps.contributions()) == len(taps)
    assert all(p.grad is None for p in net.parameters())


def test_captured_tensors_are_freed_after_clear_so_repeated_scoring_does_not_leak_memory():
    # a gradient hook that referenced its own tensor formed a cycle through C++ that gc cannot collect, and every
    # scoring pass stayed in memory (23 GB after 21 TaylorFO steps on the polyp demo)
    taps, out, tapped = _grad_through_taps(_unet())
    refs = [weakref.ref(t) for t in tapped]
    assert taps.contributions()
    del out, tapped
    taps.clear()
    gc.collect()
    assert all(ref() is None for ref in refs)


def test_set_taps_after_a_cut_follows_the_new_widths_and_remove_drops_all_hooks():
    net = _unet()
    pruner = ChannelPruner(net, SHAPE, min_channels=1)
    taps = FeatureTaps(net, _prunable_taps(pruner), first_only=True)
    hooked = [m for m in net.modules() if m._forward_pre_hooks]
    assert len(hooked) == len(taps)
    pruner.cut({"model.1.submodule.0.conv": [0, 3, 5]})
    taps.set_taps(_prunable_taps(pruner))
    assert len([m for m in net.modules() if m._forward_pre_hooks]) == len(taps)  # old hooks gone
    taps.enabled = True
    net(torch.randn(SHAPE))
    assert taps.features()["model.1.submodule.0.conv"].shape[1] == 5
    taps.remove()
    assert not any(m._forward_pre_hooks for m in net.modules())
    assert taps.features() == {}


def test_contributions_need_gradient_taps():
    net = _unet()
    taps = FeatureTaps(net, _prunable_taps(ChannelPruner(net, SHAPE)))
    with pytest.raises(RuntimeError, match="gradients=False"):
        taps.contributions()


def test_a_tap_on_a_module_the_network_lacks_is_refused_in_one_line():
    net = _unet()
    with pytest.raises(TapError, match=r"group 'g' taps module 'no.such.conv', not in the network"):
        FeatureTaps(net, {"g": [("no.such.conv", [0, 1])]})


def test_feature_sources_give_the_whole_consumer_input_and_where_the_groups_channels_lie_in_it():
    net = _unet()
    taps = FeatureTaps(net, _prunable_taps(ChannelPruner(net, SHAPE)), first_only=True)
    taps.enabled = True
    net(torch.randn(SHAPE))
    sources, features = taps.feature_sources(), taps.features()
    assert set(sources) == set(features) == set(taps.groups)
    for group, (tensor, (start, length)) in sources.items():
        assert tensor.narrow(1, start, length).shape == features[group].shape
        torch.testing.assert_close(tensor.narrow(1, start, length), features[group])
    # a group that is one part of a concatenation: the whole concatenated input, not a slice of it
    assert any(tensor.shape[1] > length for tensor, (_, length) in sources.values())


def test_on_capture_sees_each_group_once_during_the_forward_pass_and_nothing_when_disabled():
    net = _unet()
    finished, calls = [], []
    for name, module in net.named_modules():
        module.register_forward_hook(lambda m, args, out, name=name: finished.append(name))

    def on_capture(group, tensor, run):
        calls.append((group, tensor, run, len(finished)))

    taps = FeatureTaps(net, _prunable_taps(ChannelPruner(net, SHAPE)), first_only=True, on_capture=on_capture)
    net(torch.randn(SHAPE))
    assert calls == []
    taps.enabled = True
    finished.clear()
    net(torch.randn(SHAPE))
    assert sorted(group for group, _, _, _ in calls) == sorted(taps.groups)
    sources = taps.feature_sources()
    for group, tensor, run, _ in calls:
        assert tensor is sources[group][0] and run == sources[group][1]
    # during the forward pass, as each group's first consumer is reached, not all at the end
    assert calls[0][3] < calls[-1][3] < len(finished)


def test_on_capture_must_be_callable():
    with pytest.raises(TypeError, match="`on_capture` must be callable"):
        FeatureTaps(_unet(), {}, on_capture="not a function")
