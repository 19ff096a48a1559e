from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from monai_pruning.criteria.sauron import (
    DeltaPruneAccumulator,
    delta_opt,
    delta_opt_and_pooled,
    delta_opt_penalty,
    delta_prune,
    mean_layer_distance,
)

EPS = 1e-8


def _ramp_4x4() -> torch.Tensor:
    """[[0..3], [4..7], [8..11], [12..15]]: its 2x2 block means are 2.5, 4.5, 10.5, 12.5."""
    return torch.arange(16.0).reshape(4, 4)


# ---------------------------------------------------------------------------------------------------------------
# delta_opt: hand-computed values
# ---------------------------------------------------------------------------------------------------------------


def test_delta_opt_2d_matches_hand_computed_rms_of_normalised_pooled_maps():
    ramp = _ramp_4x4()
    features = torch.stack([ramp, 2 * ramp + 3, torch.full((4, 4), 7.0), 15 - ramp])[None]  # (1, 4, 4, 4)
    result = delta_opt(features, eps=EPS)
    # channel 1 is an affine copy of channel 0: identical after min-max normalisation -> sqrt(eps)
    # channel 2 is constant -> normalised to 0; channel 0 pooled = [2.5, 4.5, 10.5, 12.5] / 15
    # channel 3 = 1 - n(channel 0) -> pooled difference 2 * p0 - 1 = [-2/3, -0.4, 0.4, 2/3]
    expected = torch.tensor([[math.sqrt(EPS), math.sqrt(293) / 30, 2 * math.sqrt(17) / 15]])
    assert result.shape == (1, 3)
    torch.testing.assert_close(result, expected, rtol=1e-5, atol=1e-6)


def test_delta_opt_1d_matches_hand_computed_value():
    features = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 0.0, 0.0]]])  # (1, 2, 4)
    # n0 = [0, 1/3, 2/3, 1] -> pooled [1/6, 5/6]; n1 = [1, 0, 0, 0] -> pooled [1/2, 0]
    # differences [-1/3, 5/6] -> mean square (1/9 + 25/36) / 2 = 29/72
    torch.testing.assert_close(delta_opt(features, eps=EPS), torch.tensor([[math.sqrt(29 / 72)]]))


def test_delta_opt_3d_normalises_and_averages_over_all_spatial_axes_not_only_the_first_two():
    depth, height, width = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), torch.arange(4.0), indexing="ij")
    features = torch.stack([width, depth])[None]  # (1, 2, 2, 2, 4)
    # over all axes: n0 = w / 3 -> pooled [1/6, 5/6]; n1 = d -> pooled [1/2, 1/2]; RMS of [-1/3, 1/3] = 1/3.
    # The original code's per-W-slice normalisation would make channel 0 all zeros and return a (1, 1, 2) tensor.
    result = delta_opt(features, eps=EPS)
    assert result.shape == (1, 1)
    torch.testing.assert_close(result, torch.tensor([[1 / 3]]))


def test_delta_opt_does_not_pool_an_axis_of_size_one():
    line = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 0.0, 0.0]]])
    expected = torch.tensor([[math.sqrt(29 / 72)]])
    torch.testing.assert_close(delta_opt(line[:, :, None, :], eps=EPS), expected)
    torch.testing.assert_close(delta_opt(line[:, :, None, None, :], eps=EPS), expected)


def test_delta_opt_is_computed_per_sample():
    first = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 0.0, 0.0]]])
    second = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [0.0, 2.0, 4.0, 6.0]]])
    result = delta_opt(torch.cat([first, second]), eps=EPS)
    torch.testing.assert_close(result, torch.tensor([[math.sqrt(29 / 72)], [math.sqrt(EPS)]]))


def test_delta_opt_gradient_matches_finite_differences():
    features = torch.randn(2, 3, 2, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(delta_opt, (features.requires_grad_(),))


def _delta_opt_by_autograd(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The paper's order of operations, differentiated by autograd: normalise each full map, then pool, then RMS."""
    batch, channels = features.shape[:2]
    flat = features.flatten(2)
    view = (batch, channels) + (1,) * (features.ndim - 2)
    low, high = flat.amin(-1).reshape(view), flat.amax(-1).reshape(view)
    kernel = tuple(2 if size >= 2 else 1 for size in features.shape[2:])
    pool = {3: F.avg_pool1d, 4: F.avg_pool2d, 5: F.avg_pool3d}[features.ndim]
    pooled = pool((features - low) / (high - low + eps), kernel_size=kernel, stride=kernel)
    return torch.sqrt((pooled[:, 1:] - pooled[:, :1]).pow(2).flatten(2).mean(-1) + eps)


# small maps (extrema in one reduction) and maps of 4096+ positions, whose extrema are found row by row: odd sizes
# whose trailing slice is not pooled (65 x 67, rows of 65) and rows that cross axes (16 x 17 x 16, rows of 64)
@pytest.mark.parametrize(
    "shape", [(3, 4, 9), (2, 3, 7, 6), (2, 3, 5, 1, 6), (2, 4, 5, 4, 3), (1, 3, 65, 67), (1, 2, 16, 17, 16)]
)
def test_delta_opt_pools_before_normalising_with_the_same_values_and_gradients(shape):
    # maps with distinct values: the minimum and maximum are attained once, so the gradient is unique
    features = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64).requires_grad_()
    weights = torch.randn(shape[0], shape[1] - 1, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    fast, = torch.autograd.grad((delta_opt(features) * weights).sum(), features)
    slow, = torch.autograd.grad((_delta_opt_by_autograd(features) * weights).sum(), features)
    assert torch.allclose(delta_opt(features), _delta_opt_by_autograd(features), atol=1e-12)
    assert torch.allclose(fast, slow, atol=1e-12)
    if features[:1].numel() <= 1000:  # numerical Jacobians of the large maps would take minutes
        assert torch.autograd.gradcheck(delta_opt, (features.detach()[:1].clone().requires_grad_(),))


def _delta_opt_first_extremum(features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Like _delta_opt_by_autograd, with min(dim)/max(dim), whose gradient goes to one position (the first)."""
    batch, channels = features.shape[:2]
    flat = features.flatten(2)
    view = (batch, channels) + (1,) * (features.ndim - 2)
    low, high = flat.min(-1).values.reshape(view), flat.max(-1).values.reshape(view)
    pooled = F.avg_pool2d((features - low) / (high - low + eps), 2)
    return torch.sqrt((pooled[:, 1:] - pooled[:, :1]).pow(2).flatten(2).mean(-1) + eps)


@pytest.mark.parametrize("side", [4, 64])  # extrema in one reduction, and row by row
def test_delta_opt_gradient_at_a_repeated_extremum_goes_to_its_first_position(side):
    features = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    features[0, 1, 1, 2] = features[0, 1, side - 1, 0] = -1.0  # the minimum twice, in different rows
    features[0, 2, 0, 3] = features[0, 2, 2, 1] = 2.0  # the maximum twice
    features.requires_grad_()
    fast, = torch.autograd.grad(delta_opt(features).sum(), features)
    expected, = torch.autograd.grad(_delta_opt_first_extremum(features).sum(), features)
    torch.testing.assert_close(fast, expected)
    shared, = torch.autograd.grad(_delta_opt_by_autograd(features).sum(), features)  # amin/amax split it
    assert not torch.allclose(fast, shared)


@pytest.mark.parametrize("shape", [(1, 7, 64, 65), (2, 6, 8, 6, 6)])
def test_delta_opt_of_a_channel_run_equals_that_of_the_narrowed_maps_and_gives_other_channels_no_gradient(shape):
    features = torch.randn(shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64).requires_grad_()
    weights = torch.randn(shape[0], 2, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    distances, pooled = delta_opt_and_pooled(features, channels=(2, 3))
    narrowed, narrowed_pooled = delta_opt_and_pooled(features.narrow(1, 2, 3))
    torch.testing.assert_close(distances, narrowed)
    torch.testing.assert_close(pooled, narrowed_pooled)
    grad, = torch.autograd.grad((distances * weights).sum(), features)
    expected, = torch.autograd.grad((narrowed * weights).sum(), features)
    torch.testing.assert_close(grad, expected)
    assert grad[:, 2:5].abs().sum() > 0 and not grad[:, :2].any() and not grad[:, 5:].any()
    penalty = delta_opt_penalty([features, features], channels=[(2, 3), None])
    torch.testing.assert_close(penalty, (narrowed.mean() + delta_opt(features).mean()) / 2)


def test_delta_opt_backward_fills_no_zero_gradient_for_the_pooled_maps_it_also_returns():
    # the pooled maps are not differentiable; autograd would otherwise hand backward a zero-filled tensor of their
    # size for every layer and batch
    features = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(9)).requires_grad_()
    distances, pooled = delta_opt_and_pooled(features)
    assert not pooled.requires_grad
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        distances.sum().backward()
    zeroing = ("aten::zeros", "aten::zeros_like", "aten::zero_")
    zeroed = [event.name for event in profile.events() if event.name in zeroing]
    assert zeroed == [] and features.grad.abs().sum() > 0


def test_delta_opt_gradient_of_half_precision_maps_is_half_precision_and_finite():
    features = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(8)).half().requires_grad_()
    distances, _ = delta_opt_and_pooled(features)
    distances.sum().backward()
    assert distances.dtype == torch.float32
    assert features.grad.dtype == torch.float16 and torch.isfinite(features.grad).all()
    reference = features.detach().float().requires_grad_()
    delta_opt(reference).sum().backward()
    torch.testing.assert_close(features.grad.float(), reference.grad, rtol=1e-2, atol=1e-3)


@pytest.mark.parametrize("channels", [(3, 2), (0, 0), (-1, 2), (0.5, 2), [0], (True, 1)])
def test_delta_opt_and_pooled_rejects_a_channel_run_outside_the_maps_in_one_line(channels):
    with pytest.raises(ValueError, match=r"`channels` must be None or \(start, length\) .* inside its 4 channels"):
        delta_opt_and_pooled(torch.randn(1, 4, 4, 4), channels=channels)


def test_delta_opt_penalty_needs_one_channel_run_per_map():
    with pytest.raises(ValueError, match="one \\(start, length\\) or None per feature map \\(2\\)"):
        delta_opt_penalty([torch.randn(1, 4, 4, 4)] * 2, channels=[(0, 2)])


def test_layer_by_layer_terms_combine_to_the_penalty_of_the_whole_list():
    maps = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 1, 4, 4), torch.randn(2, 3, 4, 4, 4)]
    terms = [delta_opt_and_pooled(m) for m in maps]
    penalty, pooled = delta_opt_penalty(maps, return_pooled=True)
    torch.testing.assert_close(mean_layer_distance([distances for distances, _ in terms]), penalty)
    assert all(torch.equal(a, b) for (_, a), b in zip(terms, pooled))
    assert mean_layer_distance([]) == 0


# ---------------------------------------------------------------------------------------------------------------
# delta_opt: no NaN, in values and gradients
# ---------------------------------------------------------------------------------------------------------------


def test_delta_opt_single_channel_gives_empty_batch_by_zero_tensor():
    result = delta_opt(torch.randn(3, 1, 4, 4))
    assert result.shape == (3, 0)


def test_delta_opt_constant_maps_give_finite_values_and_gradients():
    features = torch.full((2, 3, 4, 4, 4), 5.0, requires_grad=True)
    result = delta_opt(features)
    assert torch.isfinite(result).all()
    result.sum().backward()
    assert torch.isfinite(features.grad).all()


def test_delta_opt_constant_channel_next_to_varying_reference_has_finite_gradient():
    varying = torch.randn(1, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    features = torch.cat([varying, torch.zeros(1, 1, 4, 4)], dim=1).requires_grad_()
    delta_opt(features).sum().backward()
    assert torch.isfinite(features.grad).all()


def test_delta_opt_identical_channels_have_finite_gradient_at_zero_distance():
    varying = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    features = varying.repeat(1, 3, 1, 1).requires_grad_()
    result = delta_opt(features)
    torch.testing.assert_close(result, torch.full((2, 2), math.sqrt(1e-8)))
    result.sum().backward()
    assert torch.isfinite(features.grad).all()


def test_delta_opt_half_precision_constant_map_is_finite():
    result = delta_opt(torch.ones(1, 2, 4, 4, dtype=torch.float16))
    assert result.dtype == torch.float32
    assert torch.isfinite(result).all()


# ---------------------------------------------------------------------------------------------------------------
# delta_opt_penalty
# ---------------------------------------------------------------------------------------------------------------


def test_delta_opt_penalty_is_mean_over_layers_of_mean_distance_skipping_single_channel_layers():
    layer_a = torch.tensor([[[0.0, 1.0, 2.0, 3.0], [3.0, 0.0, 0.0, 0.0]]])  # distance sqrt(29/72)
    ramp = _ramp_4x4()
    layer_b = torch.stack([ramp, torch.full((4, 4), 7.0), 15 - ramp])[None]  # sqrt(293)/30 and 2 sqrt(17)/15
    single = torch.randn(1, 1, 4, 4)
    mean_b = (math.sqrt(293) / 30 + 2 * math.sqrt(17) / 15) / 2
    expected = torch.tensor((math.sqrt(29 / 72) + mean_b) / 2)
    torch.testing.assert_close(delta_opt_penalty([layer_a, single, layer_b], eps=EPS), expected)


def test_delta_opt_penalty_with_only_single_channel_layers_is_a_zero_that_backpropagates():
    features = torch.randn(2, 1, 4, 4, requires_grad=True)
    penalty = delta_opt_penalty([features, features * 2])
    assert penalty.shape == () and penalty.item() == 0.0 and penalty.requires_grad
    penalty.backward()  # must not raise
    assert not torch.isnan(penalty)


def test_delta_opt_penalty_of_empty_list_is_zero():
    assert delta_opt_penalty([]).item() == 0.0


def test_delta_opt_penalty_rejects_a_single_tensor_instead_of_a_list():
    with pytest.raises(TypeError, match="delta_opt_penalty: `feature_maps` must be a list"):
        delta_opt_penalty(torch.randn(1, 2, 4, 4))


@pytest.mark.parametrize(
    "features, error, message",
    [
        (torch.randn(2, 3), ValueError, r"delta_opt: `features` must be channel-first"),
        (torch.randn(1, 2, 2, 2, 2, 2), ValueError, r"1 to 3 spatial dims"),
        (torch.ones(1, 2, 4, dtype=torch.int64), TypeError, r"floating-point"),
        ([[1.0, 2.0]], TypeError, r"must be a torch.Tensor"),
    ],
)
def test_delta_opt_rejects_bad_input_with_one_line_error(features, error, message):
    with pytest.raises(error, match=message) as info:
        delta_opt(features)
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------------------------------------------------
# delta_prune
# ---------------------------------------------------------------------------------------------------------------


def test_delta_prune_2d_uses_raw_maps_normalised_per_sample_and_averaged_over_batch():
    ramp = _ramp_4x4()
    sample_0 = torch.stack([ramp, torch.full((4, 4), 7.0), torch.zeros(4, 4)])
    sample_1 = torch.stack([torch.zeros(4, 4), torch.ones(4, 4), torch.full((4, 4), 3.0)])
    features = torch.stack([sample_0, sample_1])  # (2, 3, 4, 4)
    # sample 0, reference 1: pooled ch0 = [2.5, 4.5, 10.5, 12.5] vs 7 -> RMS sqrt(69/4); ch2 -> 7; max 7
    # sample 1, reference 1: distances [1, 0, 2]; max 2
    expected = torch.tensor([(math.sqrt(69 / 4) / 7 + 0.5) / 2, 0.0, 1.0])
    torch.testing.assert_close(delta_prune(features, reference=1), expected)


def test_delta_prune_is_not_scale_invariant_per_channel_unlike_delta_opt():
    ramp = torch.arange(8.0)
    features = torch.stack([ramp, 2 * ramp, ramp + 10])[None]  # (1, 3, 8)
    # pooled ramp = [0.5, 2.5, 4.5, 6.5]; 2*ramp differs by the pooled ramp itself: RMS sqrt(69/4); +10 -> 10
    expected = torch.tensor([0.0, math.sqrt(69 / 4) / 10, 1.0])
    torch.testing.assert_close(delta_prune(features, reference=0), expected)
    assert delta_opt(features, eps=EPS)[0, 0] < 1e-3  # delta_opt sees channel 1 as a copy of channel 0


def test_delta_prune_3d_reduces_over_all_spatial_axes():
    base = torch.randn(1, 1, 2, 4, 6, generator=torch.Generator().manual_seed(3))
    features = torch.cat([base, base + 1.0, base - 3.0], dim=1)
    # pooling preserves constant offsets: distances to channel 0 are exactly 0, 1, 3
    torch.testing.assert_close(delta_prune(features, reference=0), torch.tensor([0.0, 1 / 3, 1.0]))


def test_delta_prune_1d_hand_computed():
    features = torch.tensor([[[1.0, 3.0, 5.0, 7.0], [0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 6.0, 6.0]]])
    # pooled: [2, 6], [0, 0], [2, 6] -> reference 1: RMS [sqrt(20), 0, sqrt(20)] -> normalised [1, 0, 1]
    torch.testing.assert_close(delta_prune(features, reference=1), torch.tensor([1.0, 0.0, 1.0]))
    # reference 0: channel 2 coincides after pooling
    torch.testing.assert_close(delta_prune(features, reference=0), torch.tensor([0.0, 1.0, 0.0]))


def test_delta_prune_is_detached_and_finite_for_all_equal_channels():
    features = torch.ones(2, 4, 4, 4, requires_grad=True)
    scores = delta_prune(features, reference=2)
    assert not scores.requires_grad
    torch.testing.assert_close(scores, torch.zeros(4))


def test_delta_prune_single_channel_scores_zero():
    torch.testing.assert_close(delta_prune(torch.randn(2, 1, 4, 4), reference=0), torch.zeros(1))


@pytest.mark.parametrize("reference", [-1, 3, 1.0, True])
def test_delta_prune_rejects_reference_outside_channels(reference):
    with pytest.raises(ValueError, match=r"delta_prune: `reference` must be a channel index in \[0, 3\)"):
        delta_prune(torch.randn(1, 3, 4, 4), reference=reference)


# ---------------------------------------------------------------------------------------------------------------
# DeltaPruneAccumulator
# ---------------------------------------------------------------------------------------------------------------


def test_accumulator_draws_reference_once_per_window_from_the_given_generator():
    batches = [torch.randn(2, 7, 4, 4, generator=torch.Generator().manual_seed(i)) for i in range(4)]
    expected = int(torch.randint(7, (1,), generator=torch.Generator().manual_seed(11)).item())
    accumulator = DeltaPruneAccumulator(torch.Generator().manual_seed(11))
    for batch in batches:
        accumulator.update(batch)
        assert accumulator.reference == expected
    _, reference = accumulator.compute()
    assert reference == expected


def test_accumulator_is_reproducible_with_equal_seeds_and_draws_anew_after_reset():
    batch = torch.randn(2, 50, 4, 4, generator=torch.Generator().manual_seed(0))
    first, second = (DeltaPruneAccumulator(torch.Generator().manual_seed(5)) for _ in range(2))
    references = []
    for _ in range(5):
        first.update(batch)
        second.update(batch)
        assert first.reference == second.reference
        torch.testing.assert_close(first.compute()[0], second.compute()[0])
        references.append(first.reference)
        first.reset()
        second.reset()
    assert len(set(references)) > 1  # a new reference each window (5 draws from 50 channels)


def test_accumulator_averages_per_sample_over_batches_of_different_sizes():
    small = torch.randn(1, 5, 6, 6, generator=torch.Generator().manual_seed(0))
    large = torch.randn(3, 5, 6, 6, generator=torch.Generator().manual_seed(1))
    accumulator = DeltaPruneAccumulator(torch.Generator().manual_seed(2))
    accumulator.update(small)
    accumulator.update(large)
    scores, reference = accumulator.compute()
    assert accumulator.num_samples == 4
    torch.testing.assert_close(scores, delta_prune(torch.cat([small, large]), reference))


def test_accumulator_refuses_a_new_channel_count_until_reset():
    accumulator = DeltaPruneAccumulator(torch.Generator().manual_seed(0))
    accumulator.update(torch.randn(1, 6, 4, 4))
    with pytest.raises(ValueError, match=r"got 4 channels but this window started with 6; call reset\(\)"):
        accumulator.update(torch.randn(1, 4, 4, 4))
    accumulator.reset()
    accumulator.update(torch.randn(1, 4, 4, 4))
    assert accumulator.compute()[0].shape == (4,)


def test_accumulator_compute_without_updates_raises():
    with pytest.raises(RuntimeError, match="no feature maps were accumulated"):
        DeltaPruneAccumulator(torch.Generator()).compute()


def test_accumulator_requires_a_generator():
    with pytest.raises(TypeError, match="`generator` must be a torch.Generator"):
        DeltaPruneAccumulator(0)  # type: ignore[arg-type]


def test_penalty_returns_the_raw_pooled_maps_that_delta_prune_scores_without_pooling_again():
    generator = torch.Generator().manual_seed(9)
    maps = [torch.randn(2, 4, 6, 6, generator=generator), torch.randn(2, 1, 4, 4, 4, generator=generator)]
    maps[0].requires_grad_()
    penalty, pooled = delta_opt_penalty(maps, return_pooled=True)
    assert torch.equal(penalty, delta_opt_penalty(maps))
    # float32 tolerances: the windows are summed in another order than torch's avg_pool
    torch.testing.assert_close(pooled[0], F.avg_pool2d(maps[0].detach(), 2))
    assert not pooled[0].requires_grad
    torch.testing.assert_close(pooled[1], F.avg_pool3d(maps[1], 2))
    torch.testing.assert_close(delta_prune(pooled[0], 1, pooled=True), delta_prune(maps[0], 1))


def _spiky_maps(channels: int = 3, size: int = 32) -> torch.Tensor:
    """Faint, unrelated content in every channel, plus one large spike per channel, each in another corner."""
    maps = torch.rand(1, channels, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.01
    corners = [(0, 0), (size - 1, size - 1), (0, size - 1), (size - 1, 0)]
    for channel in range(channels):
        maps[0, channel][corners[channel % 4]] = 10.0
    return maps


def test_clipping_the_extremes_closes_the_spike_shortcut_min_max_normalisation_leaves_open():
    maps = _spiky_maps()
    content = maps.clone()
    content[0, :, 0, 0] = content[0, :, -1, -1] = content[0, :, 0, -1] = 0.005  # the same maps without the spikes
    # min-max: a spike squashes each map's content towards 0, so unrelated maps look alike
    assert delta_opt(maps).max() < 0.03 < 0.15 < delta_opt(content).min()
    # clipped at 2% of the pixels at each end, the spikes no longer decide the range: the content is compared
    assert torch.allclose(delta_opt(maps, clip_fraction=0.02), delta_opt(content, clip_fraction=0.02), atol=0.02)
    assert delta_opt(maps, clip_fraction=0.02).min() > 0.15


def test_clip_fraction_zero_is_the_papers_min_max_and_positive_values_have_gradients_and_pooled_maps():
    maps = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(delta_opt(maps, clip_fraction=0.0), delta_opt(maps))
    distances, pooled = delta_opt_and_pooled(maps, channels=(1, 3), clip_fraction=0.05)
    _, pooled_min_max = delta_opt_and_pooled(maps, channels=(1, 3))
    assert distances.shape == (2, 2) and torch.equal(pooled, pooled_min_max) and not pooled.requires_grad
    assert torch.autograd.gradcheck(lambda x: delta_opt(x, clip_fraction=0.05), (maps[:1].clone().requires_grad_(),))
    penalty = delta_opt_penalty([maps.clone().requires_grad_()], clip_fraction=0.05)
    assert penalty.requires_grad and penalty > 0


@pytest.mark.parametrize("value", [-0.1, 0.5, True, "0.1"])
def test_clip_fraction_out_of_range_is_a_one_line_error(value):
    with pytest.raises(ValueError, match=r"^delta_opt: `clip_fraction` must be a number in \[0, 0.5\)"):
        delta_opt(torch.rand(1, 2, 8, 8), clip_fraction=value)
