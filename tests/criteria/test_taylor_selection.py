from __future__ import annotations

import math

import pytest
import torch

from monai_pruning.criteria.taylor import fraction_to_count, select_global_lowest


def test_lowest_scores_are_chosen_across_all_groups():
    scores = {"a": torch.tensor([0.5, 0.1, 0.9]), "b": torch.tensor([0.2, 0.05])}
    assert select_global_lowest(scores, 2) == {"a": [1], "b": [1]}
    # b's other channel (0.2) would empty b, so the next lowest elsewhere (a's 0.5) is taken instead
    assert select_global_lowest(scores, 3) == {"a": [0, 1], "b": [1]}


def test_group_never_drops_below_min_channels_and_others_fill_the_count():
    scores = {"a": torch.tensor([0.5, 0.6, 0.7]), "b": torch.tensor([0.01, 0.02])}
    assert select_global_lowest(scores, 2) == {"a": [0], "b": [0]}
    assert select_global_lowest(scores, 2, min_channels={"a": 3}) == {"a": [], "b": [0]}
    assert select_global_lowest(scores, 10, min_channels=2) == {"a": [0], "b": []}


def test_asking_for_more_than_possible_leaves_every_group_at_its_floor():
    scores = {"a": torch.tensor([0.5, 0.6, 0.7]), "b": torch.tensor([0.01, 0.02])}
    assert select_global_lowest(scores, 100) == {"a": [0, 1], "b": [0]}
    assert select_global_lowest(scores, 0) == {"a": [], "b": []}


def test_ties_are_broken_by_group_name_then_index_whatever_the_dict_order():
    forward = {"a": torch.tensor([1.0, 1.0, 1.0]), "b": torch.tensor([1.0, 1.0])}
    backward = {"b": forward["b"], "a": forward["a"]}
    expected = {"a": [0, 1], "b": [0]}
    assert select_global_lowest(forward, 3) == expected
    assert select_global_lowest(backward, 3) == expected


def test_unit_sizes_remove_whole_blocks_scored_by_their_sum_and_counted_by_their_size():
    scores = {"a": torch.tensor([0.1] * 4 + [9.0] * 4), "b": torch.tensor([0.3, 0.5, 0.6])}
    # block scores of a: 0.4 and 36; each of a's channels is below b's lowest, but the block is not
    assert select_global_lowest(scores, 5, unit_sizes={"a": 4}) == {"a": [0, 1, 2, 3], "b": [0]}
    assert select_global_lowest(scores, 1, unit_sizes={"a": 4}) == {"a": [], "b": [0]}
    # with 4 to remove, b's 0.3 comes before a's block (0.4); the block then no longer fits
    assert select_global_lowest(scores, 4, unit_sizes={"a": 4}) == {"a": [], "b": [0, 1]}
    without_units = select_global_lowest(scores, 1)
    assert without_units == {"a": [0], "b": []}


def test_a_block_that_does_not_fit_is_skipped_and_smaller_units_fill_the_count():
    scores = {"a": torch.tensor([0.0] * 4 + [9.0] * 4), "b": torch.tensor([0.3, 0.5, 0.6])}
    assert select_global_lowest(scores, 3, unit_sizes={"a": 4}) == {"a": [], "b": [0, 1]}


def test_block_removal_respects_min_channels():
    scores = {"a": torch.zeros(8)}
    assert select_global_lowest(scores, 8, min_channels=4, unit_sizes={"a": 4}) == {"a": [0, 1, 2, 3]}
    assert select_global_lowest(scores, 8, min_channels=5, unit_sizes={"a": 4}) == {"a": []}


def test_infinite_scores_mark_channels_that_are_never_selected():
    scores = {"a": torch.tensor([math.inf, 0.5]), "b": torch.tensor([math.inf, math.inf, 0.1])}
    assert select_global_lowest(scores, 5) == {"a": [1], "b": [2]}


def test_a_cost_budget_ends_the_selection_at_the_first_unit_that_would_exceed_it():
    scores = {"a": torch.tensor([0.1, 0.2, 0.9]), "b": torch.tensor([0.15, 0.3])}
    costs = {"a": 1.0, "b": 10.0}
    assert select_global_lowest(scores, 4) == {"a": [0, 1], "b": [0]}
    # b's 0.15 would spend 11 of 2.5: the step ends there, a's cheap 0.2 ranks after it and is not taken either
    assert select_global_lowest(scores, 4, channel_costs=costs, max_cost=2.5) == {"a": [0], "b": []}
    assert select_global_lowest(scores, 4, channel_costs=costs, max_cost=11.0) == {"a": [0], "b": [0]}
    assert select_global_lowest(scores, 4, channel_costs=costs, max_cost=12.0) == {"a": [0, 1], "b": [0]}


def test_the_lowest_unit_is_taken_even_when_it_alone_exceeds_the_budget():
    scores = {"a": torch.tensor([0.1, 0.2, 0.9]), "b": torch.tensor([0.15, 0.3])}
    expected = {"a": [0], "b": []}
    assert select_global_lowest(scores, 4, channel_costs={"a": 1.0, "b": 10.0}, max_cost=0.0) == expected
    assert select_global_lowest(scores, 4, channel_costs={"a": 5.0, "b": 10.0}, max_cost=1.0) == expected


def test_a_block_costs_its_size_times_the_cost_of_one_channel():
    scores = {"a": torch.tensor([0.1, 0.1, 5.0, 5.0]), "b": torch.tensor([0.05, 0.3])}
    kwargs = {"unit_sizes": {"a": 2}, "channel_costs": {"a": 1.0, "b": 0.5}}
    assert select_global_lowest(scores, 4, max_cost=2.0, **kwargs) == {"a": [], "b": [0]}
    assert select_global_lowest(scores, 4, max_cost=2.5, **kwargs) == {"a": [0, 1], "b": [0]}



def test_width_multiples_remove_the_lowest_channels_of_a_group_m_at_a_time_scattered_or_not():
    # a: 8 channels, its four lowest scattered (bundle score 0.4); b's single channels score 0.5 each
    scores = {"a": torch.tensor([0.1, 5.0, 0.1, 5.0, 0.1, 5.0, 0.1, 5.0]), "b": torch.tensor([0.5, 0.5, 0.5])}
    assert select_global_lowest(scores, 5, width_multiples={"a": 4}) == {"a": [0, 2, 4, 6], "b": [0]}
    # only b fits a count of 3; without the multiple, a's three lowest would go first
    assert select_global_lowest(scores, 3, width_multiples={"a": 4}) == {"a": [], "b": [0, 1]}
    assert select_global_lowest(scores, 3) == {"a": [0, 2, 4], "b": []}


def test_a_width_that_is_not_a_multiple_first_loses_its_remainder_then_whole_multiples():
    scores = {"a": torch.arange(11, dtype=torch.float32)}  # 11 channels, multiple 4: 11 -> 8 -> 4
    assert select_global_lowest(scores, 3, width_multiples=4) == {"a": [0, 1, 2]}
    assert select_global_lowest(scores, 7, width_multiples=4) == {"a": list(range(7))}
    # the remainder bundle does not fit a count of 2, so neither does anything after it
    assert select_global_lowest(scores, 2, width_multiples=4) == {"a": []}



def test_bundles_of_equal_or_negative_scores_are_still_taken_in_their_order():
    zeros = {"a": torch.zeros(12)}  # remainder of 4, then 8: ties must not put the 8 first
    assert select_global_lowest(zeros, 12, width_multiples=8) == {"a": list(range(4))}
    # 7 channels, multiple 2: the remainder (one channel, -1) sums higher than the next two bundles (-2 each)
    signed = {"a": torch.tensor([-1.0] * 6 + [0.0])}
    assert select_global_lowest(signed, 5, width_multiples=2) == {"a": [0, 1, 2, 3, 4]}

def test_width_multiples_keep_every_group_at_a_multiple_above_its_floor():
    torch.manual_seed(0)
    scores = {"a": torch.rand(32), "b": torch.rand(24), "c": torch.rand(6)}
    chosen = select_global_lowest(scores, 100, min_channels=3, width_multiples=8)
    kept = {name: scores[name].numel() - len(idx) for name, idx in chosen.items()}
    assert kept == {"a": 8, "b": 8, "c": 6}  # c is narrower than 8: never cut


def test_width_multiples_combine_with_groupnorm_units_and_skip_protected_channels():
    # unit 2 (GroupNorm) and multiple 4: bundles of the two lowest blocks; the inf block is never bundled
    scores = {"a": torch.tensor([0.1, 0.1, math.inf, 0.0, 0.2, 0.2, 0.3, 0.3])}
    assert select_global_lowest(scores, 4, unit_sizes={"a": 2}, width_multiples=4) == {"a": [0, 1, 4, 5]}
    assert select_global_lowest(scores, 8, unit_sizes={"a": 2}, width_multiples=4) == {"a": [0, 1, 4, 5]}


def test_a_bundle_costs_its_channel_count_against_the_budget():
    scores = {"a": torch.zeros(8), "b": torch.ones(4)}
    costs = {"a": 1.0, "b": 1.0}
    kwargs = {"channel_costs": costs, "width_multiples": {"a": 4}}
    # a's bundle costs 4; b's first channel would take the total to 5
    assert select_global_lowest(scores, 6, max_cost=4.5, **kwargs) == {"a": [0, 1, 2, 3], "b": []}
    assert select_global_lowest(scores, 6, max_cost=5.0, **kwargs) == {"a": [0, 1, 2, 3], "b": [0]}


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"num_to_remove": -1}, ValueError, r"`num_to_remove` must be an int >= 0"),
        ({"num_to_remove": 1, "min_channels": 0}, ValueError, r"`min_channels` for group 'a' must be an int >= 1"),
        ({"num_to_remove": 1, "min_channels": {"z": 2}}, ValueError, r"`min_channels` names groups that have no"),
        ({"num_to_remove": 1, "unit_sizes": {"a": 4}}, ValueError, r"group 'a' has 6 channels, not a multiple"),
        ({"num_to_remove": 1, "max_cost": -1.0, "channel_costs": {"a": 1.0}}, ValueError, r"`max_cost` must be a"),
        ({"num_to_remove": 1, "max_cost": 1.0}, ValueError, r"`max_cost` needs `channel_costs`"),
        ({"num_to_remove": 1, "max_cost": 1.0, "channel_costs": {"b": 1.0}}, ValueError,
         r"`channel_costs`\): no cost for the scored groups \['a'\]"),
        ({"num_to_remove": 1, "max_cost": 1.0, "channel_costs": {"a": -2.0}}, ValueError, r"must be >= 0 \(or are"),
        ({"num_to_remove": 1, "width_multiples": 0}, ValueError, r"`width_multiples` for group 'a' must be an int"),
        ({"num_to_remove": 1, "width_multiples": {"z": 8}}, ValueError, r"`width_multiples` names groups that have"),
    ],
)
def test_select_global_lowest_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        select_global_lowest({"a": torch.zeros(6)}, **kwargs)


def test_nan_scores_are_refused_naming_the_group():
    with pytest.raises(ValueError, match=r"select_global_lowest: scores\['enc.0'\] contains NaN"):
        select_global_lowest({"enc.0": torch.tensor([0.1, math.nan])}, 1)


def test_scores_must_be_one_dimensional():
    with pytest.raises(ValueError, match=r"scores\['a'\] must be a 1D \(C,\) tensor, got \(2, 2\)"):
        select_global_lowest({"a": torch.zeros(2, 2)}, 1)


@pytest.mark.parametrize(
    "fraction, total, count",
    [(0.01, 6848, 68), (0.5, 3, 2), (0.001, 10, 1), (0.0, 10, 0), (1.0, 7, 7), (0.3, 0, 0), (0.29, 100, 29)],
)
def test_fraction_to_count_rounds_to_nearest_and_never_stalls_at_zero(fraction, total, count):
    assert fraction_to_count(fraction, total) == count


@pytest.mark.parametrize("fraction, total", [(1.5, 10), (-0.1, 10), (0.5, -1), (0.5, 2.0)])
def test_fraction_to_count_rejects_out_of_range_arguments(fraction, total):
    with pytest.raises(ValueError, match="fraction_to_count"):
        fraction_to_count(fraction, total)
