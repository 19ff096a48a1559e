from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet
from torch import nn

from monai_pruning.criteria import weight_gradient_importance
from monai_pruning.criteria.weight_gradient import channel_weight_sums
from monai_pruning.engine import trace_channel_groups


class _ConvBnConv(nn.Module):
    """conv(1->4) -> BatchNorm -> ReLU -> conv(4->3) -> InstanceNorm(affine) -> conv(3->2): three groups."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.middle = nn.Conv2d(4, 3, 3, padding=1)
        self.norm = nn.InstanceNorm2d(3, affine=True)
        self.last = nn.Conv2d(3, 2, 1)
        nn.init.normal_(self.bn.weight)

    def forward(self, x):
        return self.last(self.norm(self.middle(torch.relu(self.bn(self.first(x))))))


def _gradients(net: nn.Module, modules: list[str]) -> dict[str, torch.Tensor]:
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    loss = net(x).pow(2).mean()
    named = dict(net.named_modules())
    grads = torch.autograd.grad(loss, [named[m].weight for m in modules])
    return dict(zip(modules, grads))


def test_scores_are_the_mean_over_convolutions_of_summed_abs_weight_times_gradient_divided_by_the_group_mean():
    net = _ConvBnConv()
    graph = trace_channel_groups(net, (1, 1, 8, 8))
    grads = _gradients(net, ["first", "bn", "middle", "norm", "last"])
    scores = weight_gradient_importance(graph, dict(net.named_modules()), grads, normalize=False)
    # by hand, channel by channel: the filter it produces and the input slice reading it; norm scales do not count
    first = torch.stack([
        ((net.first.weight[c] * grads["first"][c]).abs().sum()
         + (net.middle.weight[:, c] * grads["middle"][:, c]).abs().sum()) / 2
        for c in range(4)
    ])
    middle = torch.stack([
        ((net.middle.weight[c] * grads["middle"][c]).abs().sum()
         + (net.last.weight[:, c] * grads["last"][:, c]).abs().sum()) / 2
        for c in range(3)
    ])
    torch.testing.assert_close(scores["first"], first.detach(), rtol=1e-5, atol=0)
    torch.testing.assert_close(scores["middle"], middle.detach(), rtol=1e-5, atol=0)
    normalised = weight_gradient_importance(graph, dict(net.named_modules()), grads)
    torch.testing.assert_close(normalised["first"], (first / first.mean()).detach(), rtol=1e-5, atol=0)
    assert normalised["middle"].mean().item() == pytest.approx(1.0)


def test_a_module_without_a_gradient_is_left_out_and_only_the_named_groups_are_scored():
    net = _ConvBnConv()
    graph = trace_channel_groups(net, (1, 1, 8, 8))
    grads = _gradients(net, ["first", "last"])
    scores = weight_gradient_importance(graph, dict(net.named_modules()), grads, groups=["middle"], normalize=False)
    assert list(scores) == ["middle"]
    expected = torch.stack([(net.last.weight[:, c] * grads["last"][:, c]).abs().sum() for c in range(3)])
    torch.testing.assert_close(scores["middle"], expected.detach(), rtol=1e-5, atol=0)


def test_a_network_out_of_step_with_its_graph_or_a_misshapen_gradient_is_refused():
    net = _ConvBnConv()
    graph = trace_channel_groups(net, (1, 1, 8, 8))
    grads = _gradients(net, ["first"])
    with pytest.raises(ValueError, match="gradient of shape"):
        weight_gradient_importance(graph, dict(net.named_modules()), {"first": grads["first"][:2]})
    narrower = dict(net.named_modules(), first=nn.Conv2d(1, 3, 3, padding=1))
    with pytest.raises(ValueError, match="module 'first' has 3 channels"):
        weight_gradient_importance(graph, narrower, {"first": torch.zeros(3, 1, 3, 3)})


def test_channel_weight_sums_reads_only_the_asked_roles_and_skips_convolutions_given_no_values():
    net = _ConvBnConv()
    graph = trace_channel_groups(net, (1, 1, 8, 8))
    modules = dict(net.named_modules())
    abs_weight = lambda name, weight: weight.abs()  # noqa: E731
    producers, counted = channel_weight_sums(graph, modules, abs_weight, groups=["middle"], roles=("out",))
    torch.testing.assert_close(producers["middle"], net.middle.weight.detach().double().abs().sum((1, 2, 3)))
    assert counted == {"middle": 1}
    both, counted = channel_weight_sums(graph, modules, abs_weight, groups=["middle"])
    readers = net.last.weight.detach().double().abs().sum((0, 2, 3))
    torch.testing.assert_close(both["middle"], producers["middle"] + readers)
    assert counted == {"middle": 2}
    only_readers, counted = channel_weight_sums(
        graph, modules, lambda name, weight: None if name == "middle" else weight.abs(), groups=["middle"])
    torch.testing.assert_close(only_readers["middle"], readers)
    assert counted == {"middle": 1}


def test_dynunet_scores_equal_torch_pruning_group_taylor_importance_on_every_group():
    """The criterion the benchmark stands in for Torch-Pruning's Taylor peer is that peer's, group by group."""
    tp = pytest.importorskip("torch_pruning")
    torch.manual_seed(0)
    net = DynUNet(2, 1, 2, [3, 3, 3, 3], [1, 2, 2, 2], [2, 2, 2], filters=[8, 16, 16, 32], norm_name="batch")
    example = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(3))
    labels = (example > 0.4).float()
    for module in net.modules():  # BatchNorm scales away from 1: were they scored, it would show
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
    net.eval()
    DiceCELoss(to_onehot_y=True, softmax=True)(net(example), labels).backward()
    graph = trace_channel_groups(net, (1, 1, 32, 32))
    names = {module: name for name, module in net.named_modules()}
    grads = {name: module.weight.grad for name, module in net.named_modules()
             if getattr(module, "weight", None) is not None and module.weight.grad is not None}
    ours = weight_gradient_importance(graph, dict(net.named_modules()), grads)

    dependencies = tp.DependencyGraph().build_dependency(net, example_inputs=example[:1])
    importance = tp.importance.GroupTaylorImportance()
    compared = 0
    for group in dependencies.get_all_groups(root_module_types=[nn.Conv2d, nn.ConvTranspose2d]):
        root = group[0].dep.target.module
        name = names.get(root)
        if name not in graph.prunable_groups or not dependencies.is_out_channel_pruning_fn(
            group[0].dep.handler
        ):
            continue
        theirs = importance(group)
        torch.testing.assert_close(ours[name], theirs.float(), rtol=1e-4, atol=1e-6)
        compared += 1
    assert compared == len(graph.prunable_groups) >= 6
