"""Paired per-case differences against a same-seed reference, and their crossed (seeds x cases) bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from monai_pruning.report.paired_dice import (
    crossed_bootstrap,
    group_means,
    paired_differences,
    paired_interval,
    read_case_scores,
    undefined_cells,
)


def _csv(path, rows, header="case,test_mean_dice_polyp,test_hd95_polyp"):
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_case_scores_average_the_dice_columns_and_leave_out_the_mean_row(tmp_path):
    path = _csv(tmp_path / "m.csv", ["a,0.5,3.0", "b,1.0,0.0", "mean,0.75,1.5"],
                header="case,test_mean_dice_kidney,test_mean_dice_tumor")
    assert read_case_scores(path) == {"a": 1.75, "b": 0.5}
    assert read_case_scores(path, columns=["test_mean_dice_tumor"]) == {"a": 3.0, "b": 0.0}


def test_case_scores_refuse_undefined_and_duplicate_cases(tmp_path):
    with pytest.raises(ValueError, match="case 'b' has an undefined"):
        read_case_scores(_csv(tmp_path / "nan.csv", ["a,0.5,1", "b,nan,1"]))
    with pytest.raises(ValueError, match="case 'a' appears twice"):
        read_case_scores(_csv(tmp_path / "dup.csv", ["a,0.5,1", "a,0.6,1"]))
    with pytest.raises(ValueError, match="no column"):
        read_case_scores(_csv(tmp_path / "none.csv", ["a,1"], header="case,hd95"))


def test_paired_differences_are_per_case_and_refuse_different_case_sets():
    cases, diffs = paired_differences({"b": 0.7, "a": 0.2}, {"a": 0.5, "b": 0.5})
    assert cases == ["a", "b"]
    np.testing.assert_allclose(diffs, [-0.3, 0.2])
    with pytest.raises(ValueError, match="different cases"):
        paired_differences({"a": 1.0}, {"b": 1.0})


def test_a_constant_shift_has_a_zero_width_interval_at_the_shift():
    result = crossed_bootstrap(np.full((3, 50), -0.02), resamples=200)
    assert result.mean == pytest.approx(-0.02)
    assert result.low == pytest.approx(-0.02) and result.high == pytest.approx(-0.02)
    assert result.excludes_zero() and (result.seeds, result.cases) == (3, 50)


def test_paired_interval_pairs_each_seeds_cases_by_name_and_records_plain_data():
    # seed 0: the method is 0.1 above on both cases; seed 1: 0.1 below; the cases come in different orders
    pairs = [({"a": 0.6, "b": 0.9}, {"b": 0.8, "a": 0.5}), ({"b": 0.7, "a": 0.4}, {"a": 0.5, "b": 0.8})]
    result = paired_interval(pairs, resamples=500)
    assert (result.seeds, result.cases) == (2, 2) and result.mean == pytest.approx(0.0)
    record = result.record()
    assert set(record) == {"mean", "low", "high", "confidence", "seeds", "cases", "excludes_zero"}
    assert record["excludes_zero"] is False and record["low"] < 0.0 < record["high"]
    with pytest.raises(ValueError, match="no seed holds both"):
        paired_interval([])
    with pytest.raises(ValueError, match="different cases"):
        paired_interval([({"a": 1.0, "b": 1.0}, {"a": 1.0, "c": 1.0})])


def test_seeds_that_disagree_widen_the_interval_even_when_cases_agree():
    # every case moves the same way within a seed; only the seeds differ: a cases-only bootstrap would give [0, 0]
    differences = np.stack([np.full(40, 0.1), np.full(40, -0.1), np.full(40, 0.0)])
    result = crossed_bootstrap(differences, resamples=2000)
    assert result.mean == pytest.approx(0.0)
    assert result.low < -0.05 and result.high > 0.05
    assert not result.excludes_zero()


def test_noise_around_zero_is_no_measurable_difference_and_a_large_effect_is():
    rng = np.random.default_rng(1)
    noise = rng.normal(0.0, 0.2, size=(3, 300))
    assert not crossed_bootstrap(noise, resamples=1000).excludes_zero()
    assert crossed_bootstrap(noise - 0.1, resamples=1000).excludes_zero()


def test_the_interval_is_reproducible_for_a_seed_and_its_inputs_are_checked():
    values = np.random.default_rng(0).normal(size=(2, 30))
    assert crossed_bootstrap(values, resamples=300, seed=5) == crossed_bootstrap(values, resamples=300, seed=5)
    with pytest.raises(ValueError, match="NaN or infinite"):
        crossed_bootstrap(np.array([[0.1, np.nan]]))
    with pytest.raises(ValueError, match="expected a"):
        crossed_bootstrap(np.zeros(5))


def test_group_means_average_each_centre_and_need_a_centre_for_every_case():
    scores = {"a": 1.0, "b": 0.0, "c": 0.5}
    assert group_means(scores, {"a": "C1", "b": "C1", "c": "C2"}) == {"C1": 0.5, "C2": 0.5}
    with pytest.raises(ValueError, match="no group for cases"):
        group_means(scores, {"a": "C1"})


def test_case_scores_can_average_only_the_defined_classes_and_list_the_undefined_cells(tmp_path):
    path = _csv(tmp_path / "nan.csv", ["a,0.5,nan", "b,0.25,0.75"],
                header="case,test_mean_dice_kidney,test_mean_dice_tumour")
    assert read_case_scores(path, undefined="omit") == {"a": 0.5, "b": 0.5}
    assert undefined_cells(path) == {("a", "test_mean_dice_tumour")}
    with pytest.raises(ValueError, match="case 'a' has an undefined"):
        read_case_scores(_csv(tmp_path / "all_nan.csv", ["a,nan,nan"],
                              header="case,test_mean_dice_kidney,test_mean_dice_tumour"), undefined="omit")
    with pytest.raises(ValueError, match="undefined must be 'refuse' or 'omit'"):
        read_case_scores(path, undefined="skip")
