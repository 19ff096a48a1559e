from __future__ import annotations

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.criteria import PerSampleLoss, weight_gradient_importance
from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.taylorfo_pruning import TaylorFOPruning
from monai_pruning.handlers.taylorfo_scoring import score_channels, summed_weight_gradients

SHAPE = (4, 1, 16, 16)


def _bundle_loss() -> DiceCELoss:
    """The training loss every bundle ships: its Dice pools the batch."""
    return DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True)


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=0, norm="instance")


def _samples() -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(SHAPE, generator=torch.Generator().manual_seed(4))
    # a very different share of foreground in every sample: pooled over the batch, Dice then weighs them unequally
    labels = (images.roll(2, dims=-1) > torch.tensor([0.2, 0.6, 0.85, 0.97]).reshape(-1, 1, 1, 1)).float()
    return images, labels


def _split(batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    images, labels = _samples()
    return [(images[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, SHAPE[0], batch_size)]


def _scores(loss, batch_size: int) -> dict[str, torch.Tensor]:
    net = _unet()
    taps = FeatureTaps(net, ChannelPruner(net, SHAPE).graph.consumer_taps(), gradients=True)
    return score_channels(net, taps, _split(batch_size), loss_function=loss)


def _largest_relative_difference(first: dict, second: dict) -> float:
    return max(((first[g] - second[g]).abs().max() / first[g].abs().max()).item() for g in first)


def test_scores_with_the_per_sample_training_loss_do_not_depend_on_how_the_scoring_set_is_batched():
    one_batch, two_batches = _scores(PerSampleLoss(_bundle_loss()), 4), _scores(PerSampleLoss(_bundle_loss()), 2)
    assert set(one_batch) == set(two_batches)
    for group, values in one_batch.items():
        torch.testing.assert_close(two_batches[group], values, rtol=1e-5, atol=1e-6)
    # the pooled loss itself couples the samples: the same split changes its scores
    pooled = _largest_relative_difference(_scores(_bundle_loss(), 4), _scores(_bundle_loss(), 2))
    assert pooled > 1e-3


def _handler_scores(batch_size: int, net: nn.Module | None = None, **kwargs) -> dict[str, torch.Tensor]:
    net = net if net is not None else _unet()
    images, labels = _samples()
    loader = [{"image": images[i : i + batch_size], "label": labels[i : i + batch_size]} for i in range(0, 4, batch_size)]
    handler = TaylorFOPruning(example_shape=SHAPE, plot=False, **kwargs)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=_bundle_loss(),
        train_handlers=[handler],
    )
    trainer.state.dataloader = loader
    handler._ensure_pruner(trainer)
    return handler.score(trainer)


def test_taylorfo_scores_with_the_trainers_loss_per_sample_by_default():
    one_batch, two_batches = _handler_scores(4), _handler_scores(2)
    for group, values in one_batch.items():
        torch.testing.assert_close(two_batches[group], values, rtol=1e-5, atol=1e-6)
    # the trainer's loss given as the scoring loss pools the batch again
    pooled = _largest_relative_difference(
        _handler_scores(4, scoring_loss=_bundle_loss()), _handler_scores(2, scoring_loss=_bundle_loss())
    )
    assert pooled > 1e-3


def test_a_scoring_loss_that_is_not_callable_is_refused_in_one_line():
    with pytest.raises(ValueError, match=r"TaylorFOPruning: `scoring_loss` must be a loss function or None, got str"):
        TaylorFOPruning(scoring_loss="DiceCELoss")


def test_weight_gradient_scores_sum_the_batch_loss_gradients_and_leave_parameter_gradients_untouched():
    """The |weight x gradient| criterion reads the trainer's loss as it is, over every scoring batch, summed."""
    net = _unet()
    handler_scores = _handler_scores(2, net=net, criterion="weight_gradient")
    assert all(p.grad is None for p in net.parameters())  # no .grad left behind for the optimizer to step on
    # by hand: one backward of the (batch-pooled) bundle loss per batch of two, gradients added up
    reference = _unet()
    graph = ChannelPruner(reference, SHAPE).graph
    convs = [name for name, module in reference.named_modules() if isinstance(module, nn.Conv2d | nn.ConvTranspose2d)]
    for images, labels in _split(2):
        _bundle_loss()(reference(images), labels).backward()
    modules = dict(reference.named_modules())
    grads = {name: modules[name].weight.grad for name in convs}
    expected = weight_gradient_importance(graph, modules, grads, groups=list(handler_scores))
    for group, values in expected.items():
        torch.testing.assert_close(handler_scores[group], values, rtol=1e-4, atol=1e-6)
    # the same pass as a function, for any batches
    summed = summed_weight_gradients(_unet(), convs, _split(2), _bundle_loss())
    for name in convs:
        torch.testing.assert_close(summed[name], grads[name], rtol=1e-4, atol=1e-7)


def test_weight_gradient_normalize_false_ranks_the_unnormalised_sums_torch_pruning_normalizer_none():
    normalised = _handler_scores(2, criterion="weight_gradient")
    raw = _handler_scores(2, criterion="weight_gradient", weight_gradient_normalize=False)
    assert set(raw) == set(normalised)
    for group, values in raw.items():
        torch.testing.assert_close(normalised[group], values / values.mean(), rtol=1e-5, atol=1e-7)
    # the groups keep their own scales: the division is what puts every group at a mean of 1
    assert max(v.mean().item() for v in raw.values()) > 2 * min(v.mean().item() for v in raw.values())
    with pytest.raises(ValueError, match="weight_gradient_normalize"):
        TaylorFOPruning(criterion="weight_gradient", weight_gradient_normalize="no")


def test_summed_weight_gradients_refuses_a_module_without_weights_and_an_empty_loader():
    with pytest.raises(ValueError, match="module 'model' has no weight parameter"):
        summed_weight_gradients(_unet(), ["model"], _split(2), _bundle_loss())
    with pytest.raises(ValueError, match="no batch to score on"):
        summed_weight_gradients(_unet(), ["model.0.conv"], [], _bundle_loss())
