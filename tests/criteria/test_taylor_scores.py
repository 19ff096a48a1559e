from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_pruning.criteria.taylor import (
    TaylorAccumulator,
    layerwise_l2_normalize,
    normalize_output_gradient,
    normalize_output_gradients,
    reduce_contributions,
    taylor_channel_contributions,
)

# ---------------------------------------------------------------------------------------------------------------
# per-sample normalisation of the output gradient
# ---------------------------------------------------------------------------------------------------------------


def test_output_gradient_is_scaled_to_unit_norm_per_sample_and_zero_stays_zero():
    grad = torch.tensor([[[[3.0, 4.0], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]])
    expected = torch.tensor([[[[0.6, 0.8], [0.0, 0.0]]], [[[0.0, 0.0], [0.0, 0.0]]], [[[0.5, 0.5], [0.5, 0.5]]]])
    torch.testing.assert_close(normalize_output_gradient(grad), expected)


def test_stacked_deep_supervision_gradient_is_normalised_jointly_over_heads():
    grad = torch.zeros(1, 2, 1, 2, 2)  # (B, S, C, H, W)
    grad[0, 0, 0, 0, 0] = 3.0
    grad[0, 1, 0, 1, 1] = 4.0
    result = normalize_output_gradients(grad)
    assert isinstance(result, torch.Tensor)
    assert result[0, 0, 0, 0, 0].item() == pytest.approx(0.6)
    assert result[0, 1, 0, 1, 1].item() == pytest.approx(0.8)


def test_list_of_head_gradients_of_different_sizes_shares_one_norm_per_sample():
    full = torch.tensor([[[3.0, 0.0]], [[0.0, 1.0]]])  # (2, 1, 2)
    half = torch.tensor([[[4.0]], [[0.0]]])  # (2, 1, 1)
    scaled_full, scaled_half = normalize_output_gradients([full, half])
    torch.testing.assert_close(scaled_full, torch.tensor([[[0.6, 0.0]], [[0.0, 1.0]]]))
    torch.testing.assert_close(scaled_half, torch.tensor([[[0.8]], [[0.0]]]))


def test_list_of_head_gradients_must_share_batch_size():
    with pytest.raises(ValueError, match=r"normalize_output_gradients: all `grads` must share one batch size"):
        normalize_output_gradients([torch.ones(2, 3), torch.ones(3, 3)])


def test_output_gradient_needs_a_batch_axis():
    with pytest.raises(ValueError, match=r"normalize_output_gradient: `grad` must be a floating \(B, ...\) tensor"):
        normalize_output_gradient(torch.ones(4))


# ---------------------------------------------------------------------------------------------------------------
# contributions and their reductions
# ---------------------------------------------------------------------------------------------------------------


def test_contributions_sum_activation_times_gradient_over_space_per_sample():
    activation = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [-1.0, 2.0]]])  # (2, 2, 2)
    grad = torch.tensor([[[1.0, 1.0], [0.5, -1.0]], [[2.0, 3.0], [1.0, 1.0]]])
    expected = torch.tensor([[3.0, -2.5], [3.0, 1.0]])
    torch.testing.assert_close(taylor_channel_contributions(activation, grad), expected)
    torch.testing.assert_close(reduce_contributions(expected, "abs"), torch.tensor([6.0, 3.5]))
    torch.testing.assert_close(reduce_contributions(expected, "sq"), torch.tensor([18.0, 7.25]))
    torch.testing.assert_close(reduce_contributions(expected, "signed"), torch.tensor([6.0, 1.5]))


def test_contributions_reduce_over_all_spatial_axes_in_3d():
    activation = torch.ones(1, 2, 2, 3, 4)
    grad = torch.full((1, 2, 2, 3, 4), 0.5)
    grad[0, 1] = -1.0
    torch.testing.assert_close(taylor_channel_contributions(activation, grad), torch.tensor([[12.0, -24.0]]))


def test_signed_abs_and_sq_rank_channels_differently():
    contributions = torch.tensor(
        [
            [1.0, 3.0, 2.0],
            [1.0, 0.0, -2.0],
            [1.0, 0.0, 2.0],
            [1.0, 0.0, -2.0],
        ]
    )  # channel 0: steady small; channel 1: one large; channel 2: large but cancelling
    abs_scores = reduce_contributions(contributions, "abs")
    sq_scores = reduce_contributions(contributions, "sq")
    signed_scores = reduce_contributions(contributions, "signed")
    torch.testing.assert_close(abs_scores, torch.tensor([4.0, 3.0, 8.0]))
    torch.testing.assert_close(sq_scores, torch.tensor([4.0, 9.0, 16.0]))
    torch.testing.assert_close(signed_scores, torch.tensor([4.0, 3.0, 0.0]))
    assert abs_scores.argmin() == 1 and sq_scores.argmin() == 0 and signed_scores.argmin() == 2


def test_contributions_of_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match=r"`activation` and `grad` must have the same shape"):
        taylor_channel_contributions(torch.ones(1, 2, 4), torch.ones(1, 2, 5))


def test_unknown_reduction_mode_is_refused():
    with pytest.raises(ValueError, match=r"reduce_contributions: `mode` must be one of"):
        reduce_contributions(torch.ones(2, 2), "mean")
    with pytest.raises(ValueError, match=r"TaylorAccumulator: `mode` must be one of"):
        TaylorAccumulator("l1")


# ---------------------------------------------------------------------------------------------------------------
# accumulation over batches
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["abs", "sq", "signed"])
def test_accumulator_over_batches_equals_reduction_over_all_samples(mode):
    batches = [torch.tensor([[2.0, -1.0]]), torch.tensor([[-3.0, 0.5], [0.5, 4.0]])]
    accumulator = TaylorAccumulator(mode)
    for batch in batches:
        accumulator.update(batch)
    assert accumulator.num_samples == 3
    torch.testing.assert_close(accumulator.compute(), reduce_contributions(torch.cat(batches), mode))


def test_signed_accumulator_takes_the_absolute_value_only_at_the_end():
    accumulator = TaylorAccumulator("signed")
    accumulator.update(torch.tensor([[2.0]]))
    accumulator.update(torch.tensor([[-3.0]]))
    torch.testing.assert_close(accumulator.compute(), torch.tensor([1.0]))  # not |2| + |-3| = 5


def test_taylor_accumulator_refuses_a_new_channel_count_until_reset():
    accumulator = TaylorAccumulator()
    accumulator.update(torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"got 2 channels but accumulated 3 so far; call reset\(\)"):
        accumulator.update(torch.ones(2, 2))
    accumulator.reset()
    with pytest.raises(RuntimeError, match="no contributions were accumulated"):
        accumulator.compute()
    accumulator.update(torch.ones(2, 2))
    torch.testing.assert_close(accumulator.compute(), torch.tensor([2.0, 2.0]))


def test_layerwise_l2_normalize_gives_unit_norm_groups_and_keeps_zero_groups():
    scores = {"a": torch.tensor([3.0, 4.0]), "b": torch.zeros(3)}
    result = layerwise_l2_normalize(scores)
    torch.testing.assert_close(result["a"], torch.tensor([0.6, 0.8]))
    torch.testing.assert_close(result["b"], torch.zeros(3))
    torch.testing.assert_close(scores["a"], torch.tensor([3.0, 4.0]))  # input untouched


# ---------------------------------------------------------------------------------------------------------------
# the score is the first-order loss change of zeroing a channel
# ---------------------------------------------------------------------------------------------------------------


def _tiny_network(second_layer_scale: float = 1.0):
    generator = torch.Generator().manual_seed(0)
    weights = {
        "w1": torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=generator),
        "b1": torch.randn(3, dtype=torch.float64, generator=generator),
        "w2": torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=generator),
        "x": torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=generator),
        "target": torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=generator),
    }
    weights["w2"][:, 1] *= second_layer_scale  # channel 1's effect on the output

    def hidden() -> torch.Tensor:
        return torch.relu(F.conv2d(weights["x"], weights["w1"], weights["b1"], padding=1))

    def loss_of(activation: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(F.conv2d(activation, weights["w2"], padding=1), weights["target"])

    return hidden, loss_of


def _gated_loss(hidden, loss_of, channel: int, gate: float) -> float:
    activation = hidden().clone()
    activation[:, channel] *= gate
    return loss_of(activation).item()


def _signed_scores(hidden, loss_of) -> torch.Tensor:
    activation = hidden().requires_grad_()
    loss_of(activation).backward()
    return taylor_channel_contributions(activation, activation.grad).sum(dim=0)


@pytest.mark.parametrize("channel", [0, 1, 2])
def test_score_is_exactly_the_linear_term_of_the_loss_change_of_gating_the_channel(channel):
    hidden, loss_of = _tiny_network()
    score = _signed_scores(hidden, loss_of)[channel].item()
    # the MSE loss is quadratic in a gate m on the channel, so a central difference around m = 1 is exact:
    # (L(m=0) - L(m=2)) / 2 = -dL/dm = -score
    linear_term = (_gated_loss(hidden, loss_of, channel, 0.0) - _gated_loss(hidden, loss_of, channel, 2.0)) / 2
    assert abs(score) > 1e-3
    assert linear_term == pytest.approx(-score, rel=1e-9, abs=1e-12)


def test_zeroing_a_weakly_connected_channel_changes_the_loss_by_minus_its_score():
    hidden, loss_of = _tiny_network(second_layer_scale=1e-3)
    score = _signed_scores(hidden, loss_of)[1].item()
    change = _gated_loss(hidden, loss_of, 1, 0.0) - _gated_loss(hidden, loss_of, 1, 1.0)
    assert abs(score) > 1e-5
    assert change == pytest.approx(-score, rel=1e-2)


def test_normalised_output_gradient_divides_each_sample_contribution_by_its_gradient_norm():
    hidden, loss_of = _tiny_network()
    generator = torch.Generator().manual_seed(1)
    conv = torch.randn(2, 3, 3, 3, dtype=torch.float64, generator=generator)
    target = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=generator)
    target[1] *= 50.0  # sample 1 is badly fitted and would dominate unnormalised scores

    def contributions(normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
        activation = hidden().requires_grad_()
        output = F.conv2d(activation, conv, padding=1)
        output_grad = torch.autograd.grad(F.mse_loss(output, target), output, retain_graph=True)[0]
        output.backward(normalize_output_gradient(output_grad) if normalise else output_grad)
        return taylor_channel_contributions(activation, activation.grad), output_grad

    raw, output_grad = contributions(normalise=False)
    normalised, _ = contributions(normalise=True)
    norms = output_grad.flatten(1).norm(dim=1)
    torch.testing.assert_close(normalised, raw / norms[:, None])
    assert norms[1] > 3 * norms[0]  # the samples weigh differently, so the check can tell a wrong scaling
