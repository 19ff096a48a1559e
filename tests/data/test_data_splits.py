"""Deterministic case-level splits and their JSON file."""

from __future__ import annotations

import json

import pytest

from monai_pruning.data import DatasetError, load_split, split_cases
from monai_pruning.data.splits import check_split_for_processes, save_split

CASES = [f"case_{i:05d}" for i in range(30)]


def test_same_seed_and_cases_give_same_split_in_any_order():
    first = split_cases(CASES, seed=3, val_fraction=0.2, test_fraction=0.1)
    again = split_cases(list(reversed(CASES)), seed=3, val_fraction=0.2, test_fraction=0.1)
    assert first == again


def test_different_seeds_give_different_splits():
    assert split_cases(CASES, 0, 0.2, 0.2)["test"] != split_cases(CASES, 1, 0.2, 0.2)["test"]


def test_split_partitions_cases_with_rounded_fractions():
    split = split_cases(CASES, 0, 0.2, 0.1)
    assert (len(split["training"]), len(split["validation"]), len(split["test"])) == (21, 6, 3)
    assert sorted(sum(split.values(), [])) == sorted(CASES)


def test_adding_a_case_moves_few_cases_between_splits():
    before = split_cases(CASES, 0, 0.2, 0.2)
    after = split_cases(CASES + ["case_99999"], 0, 0.2, 0.2)
    moved = sum(len(set(before[name]) - set(after[name])) for name in before)
    assert moved <= 2


def test_small_positive_fraction_still_gets_one_case():
    split = split_cases(CASES[:3], 0, 0.2, 0.2)
    assert [len(split[name]) for name in ("training", "validation", "test")] == [1, 1, 1]


def test_zero_fraction_leaves_that_split_empty_on_purpose():
    assert split_cases(CASES[:4], 0, 0.25, 0.0)["test"] == []


def test_empty_training_split_names_split_count_and_fractions():
    expected = r"the training split is empty: 2 cases with val_fraction=0.2, test_fraction=0.2"
    with pytest.raises(DatasetError, match=expected):
        split_cases(CASES[:2], 0, 0.2, 0.2)


@pytest.mark.parametrize("val, test", [(-0.1, 0.2), (1.0, 0.0), (0.6, 0.5), ("0.2", 0.1)])
def test_invalid_fractions_are_rejected(val, test):
    with pytest.raises(DatasetError, match="fraction"):
        split_cases(CASES, 0, val, test)


def test_duplicate_case_ids_are_rejected():
    with pytest.raises(DatasetError, match="repeated: 1 \\(case_00000\\)"):
        split_cases(CASES + ["case_00000"], 0, 0.2, 0.2)


def test_saved_split_round_trips_and_keeps_details(tmp_path):
    split = split_cases(CASES, 5, 0.2, 0.2)
    path = tmp_path / "split.json"
    save_split(path, split, {"seed": 5})
    assert load_split(path, CASES) == split
    assert json.loads(path.read_text())["seed"] == 5


def test_saved_split_naming_missing_cases_is_an_error(tmp_path):
    path = tmp_path / "split.json"
    save_split(path, split_cases(CASES, 0, 0.2, 0.2), {})
    with pytest.raises(DatasetError, match=r"names cases that are not in the dataset: 10 \(first 5: case_00020"):
        load_split(path, CASES[:20])


def test_malformed_split_file_is_an_error(tmp_path):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"training": ["a"]}))
    with pytest.raises(DatasetError, match="lacks the lists"):
        load_split(path, ["a"])
    path.write_text("[")
    with pytest.raises(DatasetError, match="cannot read split file"):
        load_split(path, ["a"])


def test_a_validation_split_smaller_than_the_process_count_is_refused_before_training():
    split = split_cases(CASES[:5], seed=0, val_fraction=0.2, test_fraction=0.2)
    assert len(split["validation"]) == 1
    check_split_for_processes(split, 1)  # one process: fine
    with pytest.raises(DatasetError, match=r"validation split has 1 case\(s\) for 2 processes.*raise val_fraction"):
        check_split_for_processes(split, 2)
    check_split_for_processes({**split, "validation": []}, 4)  # no validation at all: nothing to split
    check_split_for_processes(split_cases(CASES, 0, 0.2, 0.2), 4)
