from __future__ import annotations

import io
import json

import pytest
import torch

from monai_pruning.criteria.sauron import ThresholdSchedule, channels_to_cut, most_redundant_within_cost

# levels: 0.01, 0.11, 0.21, 0.31
LEVELS = [0.01, 0.11, 0.21, 0.31]


def _schedule(**overrides) -> ThresholdSchedule:
    settings = {"tau_start": 0.01, "tau_max": 0.31, "kappa": 3, "patience": 2, "mu": 0.1}
    settings.update(overrides)
    return ThresholdSchedule(**settings)


def _assert_taus(thresholds: dict, expected: dict) -> None:
    assert thresholds.keys() == expected.keys()
    for group, tau in expected.items():
        assert thresholds[group] == pytest.approx(tau), group


# ---------------------------------------------------------------------------------------------------------------
# building blocks
# ---------------------------------------------------------------------------------------------------------------


def test_default_levels_are_sixteen_evenly_spaced_values_from_0001_to_03():
    levels = ThresholdSchedule().levels
    assert len(levels) == 16
    assert levels[0] == 0.001 and levels[-1] == 0.3
    assert levels[1] == pytest.approx(0.001 + 0.299 / 15)


@pytest.mark.parametrize(
    "losses, plateau",
    [
        ([1.0, 0.9], False),  # fewer than patience + 1 losses
        ([5.0, 4.0, 3.0], False),  # new minimum
        ([3.0, 5.0, 6.0], False),  # new maximum
        ([5.0, 3.0, 4.0], True),  # inside the range of the previous two
        ([3.0, 5.0, 3.0], True),  # equal to the previous minimum is not a new minimum
        ([9.0, 1.0, 5.0, 3.0, 2.0], False),  # only the previous `patience` losses count: 2 < min(5, 3)
    ],
)
def test_training_loss_plateau_needs_last_loss_within_previous_patience_losses(losses, plateau):
    assert _schedule().training_loss_plateaued(losses) is plateau


@pytest.mark.parametrize(
    "losses, plateau",
    [
        ([1.0, 0.9, 0.86], True),  # 4.4% below the minimum 0.9: within 5%
        ([1.0, 0.9, 0.85], False),  # 5.6% below: a real improvement
        ([1.0, 0.9, 1.01], False),  # a new maximum still blocks
        ([-1.0, -0.9, -1.04], True),  # the tolerance scales with the magnitude of a negative minimum too
    ],
)
def test_plateau_tolerance_counts_a_small_relative_fall_as_a_plateau(losses, plateau):
    assert _schedule(plateau_tolerance=0.05).training_loss_plateaued(losses) is plateau


def test_plateau_tolerance_is_validated_and_part_of_the_saved_settings():
    with pytest.raises(ValueError, match="plateau_tolerance"):
        _schedule(plateau_tolerance=1.0)
    saved = _schedule(plateau_tolerance=0.05).state_dict()
    with pytest.raises(ValueError, match="plateau_tolerance"):
        _schedule().load_state_dict(saved)


@pytest.mark.parametrize(
    "mode, metrics, stalled",
    [
        ("max", [], True),  # no validation: does not block
        ("max", [0.5], False),  # a first value is a new best
        ("max", [0.5, 0.7], False),
        ("max", [0.7, 0.5], True),
        ("max", [0.7, 0.7], True),  # a tie is not a new best
        ("min", [0.5, 0.4], False),
        ("min", [0.4, 0.5], True),
    ],
)
def test_validation_condition_blocks_only_on_a_new_best_against_earlier_values(mode, metrics, stalled):
    assert _schedule(metric_mode=mode).validation_stalled(metrics) is stalled


# ---------------------------------------------------------------------------------------------------------------
# update, step by step
# ---------------------------------------------------------------------------------------------------------------


def test_tau_rises_on_plateau_then_waits_patience_epochs_before_the_next_rise():
    schedule = _schedule()
    cut = {"a": (0, 10)}
    losses = [1.0, 0.9]
    _assert_taus(schedule.update(losses[:1], [], cut), {"a": LEVELS[0]})
    _assert_taus(schedule.update(losses, [], cut), {"a": LEVELS[0]})  # too few losses yet
    losses.append(0.95)  # plateau
    _assert_taus(schedule.update(losses, [], cut), {"a": LEVELS[1]})
    assert schedule.patience_left == {"a": 2}
    for expected_wait in (1, 0):
        losses.append(0.95)
        _assert_taus(schedule.update(losses, [], cut), {"a": LEVELS[1]})
        assert schedule.patience_left == {"a": expected_wait}
    losses.append(0.94)  # patience spent, but a new minimum: no rise
    _assert_taus(schedule.update(losses, [], cut), {"a": LEVELS[1]})
    losses.append(0.945)  # within [0.94, 0.95]: plateau again
    _assert_taus(schedule.update(losses, [], cut), {"a": LEVELS[2]})


def test_no_rise_without_training_loss_plateau():
    schedule = _schedule()
    losses = [3.0, 2.0, 1.0, 0.5, 0.25]  # new minimum every epoch
    for end in range(1, len(losses) + 1):
        _assert_taus(schedule.update(losses[:end], [], {"a": (0, 10)}), {"a": LEVELS[0]})


def test_group_that_cut_at_least_mu_of_its_width_does_not_rise():
    schedule = _schedule()
    plateau = [1.0, 2.0, 1.5]
    # ceil(0.1 * 10) = 1: "a" removed 0 < 1 rises, "b" removed 1 does not; ceil(0.1 * 60) = 6: "c" removed 5 rises
    thresholds = schedule.update(plateau, [], {"a": (0, 10), "b": (1, 10), "c": (5, 60)})
    _assert_taus(thresholds, {"a": LEVELS[1], "b": LEVELS[0], "c": LEVELS[1]})
    assert schedule.patience_left == {"a": 2, "b": 0, "c": 2}


def test_new_best_validation_metric_blocks_the_rise():
    plateau = [1.0, 2.0, 1.5]
    blocked = _schedule(metric_mode="max")
    _assert_taus(blocked.update(plateau, [0.5, 0.6], {"a": (0, 10)}), {"a": LEVELS[0]})
    _assert_taus(blocked.update(plateau, [0.5, 0.6, 0.55], {"a": (0, 10)}), {"a": LEVELS[1]})
    loss_mode = _schedule(metric_mode="min")
    _assert_taus(loss_mode.update(plateau, [0.5, 0.6], {"a": (0, 10)}), {"a": LEVELS[1]})


def test_without_new_best_blocks_a_rising_validation_metric_no_longer_holds_tau_back():
    plateau, rising = [1.0, 2.0, 1.5], [0.5, 0.6]
    _assert_taus(_schedule().update(plateau, rising, {"a": (0, 10)}), {"a": LEVELS[0]})
    free = _schedule(new_best_blocks=False)
    _assert_taus(free.update(plateau, rising, {"a": (0, 10)}), {"a": LEVELS[1]})
    falling = [1.0, 2.0, 0.5]  # a new low of the training loss still blocks
    _assert_taus(_schedule(new_best_blocks=False).update(falling, rising, {"a": (0, 10)}), {"a": LEVELS[0]})


def test_new_best_blocks_is_validated_and_part_of_the_saved_settings():
    with pytest.raises(ValueError, match="new_best_blocks"):
        _schedule(new_best_blocks="no")
    saved = _schedule(new_best_blocks=False).state_dict()
    assert saved["new_best_blocks"] is False
    with pytest.raises(ValueError, match="new_best_blocks"):
        _schedule().load_state_dict(saved)
    _schedule(new_best_blocks=False).load_state_dict(saved)


def test_tau_is_capped_at_tau_max():
    schedule = _schedule(patience=1)
    losses = [1.0, 1.0]
    seen = []
    for _ in range(12):
        losses.append(1.0)
        seen.append(schedule.update(losses, [], {"a": (0, 10)})["a"])
    assert max(seen) == 0.31
    assert seen[-1] == 0.31
    assert sorted(set(seen)) == pytest.approx(LEVELS[1:])


def test_groups_are_added_lazily_at_tau_start():
    schedule = _schedule()
    schedule.update([1.0, 2.0, 1.5], [], {"a": (0, 10)})
    assert schedule.threshold("late") == pytest.approx(LEVELS[0])
    thresholds = schedule.update([1.0, 2.0, 1.5, 1.5], [], {"a": (0, 10), "new": (0, 10)})
    _assert_taus(thresholds, {"a": LEVELS[1], "late": LEVELS[1], "new": LEVELS[1]})


def test_registered_group_missing_from_last_cut_counts_as_having_removed_nothing():
    schedule = _schedule()
    schedule.threshold("quiet")
    _assert_taus(schedule.update([1.0, 2.0, 1.5], [], {}), {"quiet": LEVELS[1]})
    blocked = _schedule(mu=0.0)  # ceil(0) = 0: nothing is "fewer than 0", so no group can rise
    blocked.threshold("quiet")
    _assert_taus(blocked.update([1.0, 2.0, 1.5], [], {}), {"quiet": LEVELS[0]})


def test_state_dict_round_trips_through_json_and_weights_only_torch_load():
    schedule = _schedule()
    schedule.update([1.0, 2.0, 1.5], [], {"a": (0, 10), "b": (3, 10)})
    state = schedule.state_dict()
    assert json.loads(json.dumps(state)) == state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded_state = torch.load(buffer, weights_only=True)

    restored = _schedule()
    restored.load_state_dict(json.loads(json.dumps(loaded_state)))
    assert restored.thresholds == schedule.thresholds
    assert restored.patience_left == schedule.patience_left
    for losses in ([1.0, 2.0, 1.5, 1.5], [1.0, 2.0, 1.5, 1.5, 1.5], [1.0, 2.0, 1.5, 1.5, 1.5, 1.6]):
        cut = {"a": (0, 9), "b": (0, 7)}
        assert restored.update(losses, [], cut) == schedule.update(losses, [], cut)


def test_load_state_dict_refuses_different_settings():
    state = _schedule().state_dict()
    with pytest.raises(ValueError, match=r"saved tau_max=0.31 differs from this schedule's tau_max=0.5"):
        _schedule(tau_max=0.5).load_state_dict(state)


def test_load_state_dict_refuses_step_beyond_kappa():
    state = _schedule().state_dict()
    state["groups"] = {"a": {"step": 7, "patience_left": 0}}
    with pytest.raises(ValueError, match=r"group 'a' has step=7"):
        _schedule().load_state_dict(state)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tau_start": 0.5, "tau_max": 0.3}, "tau_start <= tau_max"),
        ({"kappa": 0}, "`kappa` must be an int >= 1"),
        ({"patience": 0}, "`patience` must be an int >= 1"),
        ({"mu": 2.0}, r"`mu` must be in \[0, 1\]"),
        ({"metric_mode": "best"}, "`metric_mode` must be 'max' or 'min'"),
    ],
)
def test_constructor_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ThresholdSchedule(**kwargs)


def test_update_rejects_malformed_last_cut_without_registering_the_group():
    schedule = _schedule()
    with pytest.raises(ValueError, match=r"last_cut\['a'\] = \(5, 3\) needs 0 <= removed <= width_before"):
        schedule.update([1.0], [], {"a": (5, 3)})
    with pytest.raises(ValueError, match=r"last_cut\['b'\] must be \(removed, width_before\)"):
        schedule.update([1.0], [], {"b": 4})
    assert schedule.thresholds == {}


# ---------------------------------------------------------------------------------------------------------------
# channels_to_cut
# ---------------------------------------------------------------------------------------------------------------


def test_channels_below_tau_are_cut_but_never_the_reference():
    scores = torch.tensor([0.3, 0.05, 0.5, 0.0, 0.2])
    assert channels_to_cut(scores, reference=3, tau=0.1) == [1]
    assert channels_to_cut(scores, reference=0, tau=0.25) == [1, 3, 4]


def test_min_channels_keeps_the_highest_scoring_candidates():
    scores = torch.tensor([0.0, 0.05, 0.5, 0.01, 0.08])
    # candidates 1, 3, 4 would leave 2; with min 4 only one goes: the lowest score, channel 3
    assert channels_to_cut(scores, reference=0, tau=0.1, min_channels=4) == [3]
    assert channels_to_cut(scores, reference=0, tau=0.1, min_channels=3) == [1, 3]


def test_min_channels_ties_keep_the_lower_index_and_small_groups_lose_nothing():
    scores = torch.tensor([0.0, 0.05, 0.05])
    assert channels_to_cut(scores, reference=0, tau=0.1, min_channels=2) == [2]
    assert channels_to_cut(scores, reference=0, tau=0.1, min_channels=5) == []


def test_channels_to_cut_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"channels_to_cut: `reference` must be a channel index in \[0, 2\)"):
        channels_to_cut(torch.zeros(2), reference=2, tau=0.1)
    with pytest.raises(ValueError, match=r"channels_to_cut: `scores` must be a 1D"):
        channels_to_cut(torch.zeros(2, 2), reference=0, tau=0.1)
    with pytest.raises(ValueError, match=r"`min_channels` must be an int >= 1"):
        channels_to_cut(torch.zeros(2), reference=0, tau=0.1, min_channels=0)


# two groups with different thresholds: a's candidates sit at 0.5 and 0.9 of tau, b's at 0.25 and 0.75
_CANDIDATES = {"a": [1, 2], "b": [0, 3]}
_SCORES = {"a": torch.tensor([0.0, 0.05, 0.09, 0.5]), "b": torch.tensor([0.1, 0.9, 0.9, 0.3])}
_TAUS = {"a": 0.1, "b": 0.4}
_COSTS = {"a": 10.0, "b": 4.0}


@pytest.mark.parametrize(
    "needed, expected",
    [
        (0.0, {}),  # nothing needed: nothing cut
        (4.0, {"b": [0]}),  # b0 (ratio 0.25) alone reaches it
        (12.0, {"a": [1], "b": [0]}),  # b0 then a1 (0.5): 14 >= 12, passed by less than a1's cost
        (15.0, {"a": [1], "b": [0, 3]}),  # then b3 (0.75)
        (100.0, {"a": [1, 2], "b": [0, 3]}),  # more than all candidates cost: all of them
    ],
)
def test_cut_within_cost_takes_the_lowest_delta_prune_relative_to_tau_first_until_the_cost_is_reached(
    needed, expected
):
    assert most_redundant_within_cost(_CANDIDATES, _SCORES, _TAUS, _COSTS, needed) == expected


def test_cut_within_cost_ranks_groupnorm_units_by_their_mean_and_takes_them_whole():
    scores = {"g": torch.tensor([0.1, 0.3, 0.9, 0.9, 0.05, 0.05])}
    chosen = most_redundant_within_cost({"g": [0, 1, 4, 5]}, scores, {"g": 1.0}, {"g": 1.0}, 1.0, {"g": 2})
    assert chosen == {"g": [4, 5]}  # mean 0.05 before mean 0.2; one unit of two channels passes the needed 1


@pytest.mark.parametrize(
    "candidates, taus, costs, units, message",
    [
        ({"g": [0]}, {"g": 1.0}, {"g": 1.0}, {"g": 2}, "would cut part of its unit 0"),
        ({"g": [0]}, {"g": 0.0}, {"g": 1.0}, None, "threshold of 0.0"),
        ({"g": [0]}, {"g": 1.0}, {}, None, "needs a score, a threshold and a channel cost"),
    ],
)
def test_cut_within_cost_rejects_inconsistent_arguments(candidates, taus, costs, units, message):
    scores = {"g": torch.tensor([0.1, 0.2])}
    with pytest.raises(ValueError, match=message):
        most_redundant_within_cost(candidates, scores, taus, costs, 1.0, units)
