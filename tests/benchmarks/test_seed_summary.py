"""The summary over training seeds of pruning_benchmark work folders, on fabricated per-case scores (no training)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.benchmarks.benchmark_scripts import load_script

CASES = [f"case_{i:05d}" for i in range(6)]


@pytest.fixture(scope="module")
def summary():
    return load_script("seed_summary")


def _work(root: Path, seed: int, dice: dict[str, dict[str, float]], macs: dict[str, float],
          test: list[str] | None = None) -> Path:
    """A work folder as pruning_benchmark.py leaves it: results.json, split.json and each method's case CSV."""
    work = root / f"seed{seed}"
    (work / "split").mkdir(parents=True)
    (work / "split" / "split.json").write_text(json.dumps({"dataset_dir": str(root / "data"),
                                                           "test": test or sorted(dice["baseline"])}))
    (work / "results.json").write_text(json.dumps({m: {"macs": macs[m]} for m in dice}))
    for method, scores in dice.items():
        (work / method / "eval").mkdir(parents=True)
        lines = ["case,test_mean_dice_kidney,test_mean_dice_tumour"]
        lines += [f"{case},{value - 0.1},{value + 0.1}" for case, value in scores.items()]  # class mean = value
        lines.append(f"mean,{sum(scores.values()) / len(scores)},0.5")
        (work / method / "eval" / "case_metrics.csv").write_text("\n".join(lines) + "\n")
    if seed >= 0:
        (work / "baseline" / "runs").mkdir()
        (work / "baseline" / "runs" / "run_record.json").write_text(json.dumps({"seed": seed}))
    return work


def _baseline(seed: int) -> dict[str, float]:
    # scores that vary from case to case and seed to seed, listed in a different order per seed
    cases = CASES if seed % 2 == 0 else CASES[::-1]
    return {case: 0.5 + 0.05 * CASES.index(case) + 0.01 * seed for case in cases}


def test_a_method_better_by_0_02_on_every_case_gives_mean_0_02_and_a_degenerate_interval(summary, tmp_path):
    works = []
    for seed in range(3):
        base = _baseline(seed)
        sauron = {case: value + 0.02 for case, value in reversed(list(base.items()))}  # paired by case, not order
        works.append(_work(tmp_path, seed, {"baseline": base, "sauron": sauron}, {"baseline": 100.0, "sauron": 10.0}))
    result = summary.summarise(works, resamples=200)
    versus = result["summary"]["sauron"]["dice_vs_reference"]
    assert versus["mean"] == pytest.approx(0.02)
    assert versus["low"] == pytest.approx(0.02) and versus["high"] == pytest.approx(0.02)
    assert versus["excludes_zero"] and versus["seeds"] == 3 and versus["cases"] == len(CASES)
    assert result["summary"]["sauron"]["macs_removed"] == pytest.approx(0.9)
    assert result["summary"]["sauron"]["seeds"] == ["0", "1", "2"]
    assert "dice_vs_reference" not in result["summary"]["baseline"]


def test_taylorfo_is_compared_with_baseline_ft_of_the_same_seed_and_the_interval_reflects_the_spread(summary,
                                                                                                   tmp_path):
    works = []
    for seed in range(3):
        base = _baseline(seed)
        ft = {case: value + 0.03 for case, value in base.items()}
        taylor = {case: value - 0.01 * (seed + 1) for case, value in ft.items()}  # -0.01, -0.02, -0.03 vs ft
        works.append(_work(tmp_path, seed, {"baseline": base, "baseline_ft": ft, "taylorfo": taylor},
                           {"baseline": 100.0, "baseline_ft": 100.0, "taylorfo": 25.0}))
    result = summary.summarise(works, resamples=2000)
    entry = result["summary"]["taylorfo"]
    assert entry["reference"] == "baseline_ft"
    assert entry["dice_vs_reference"]["mean"] == pytest.approx(-0.02)
    assert entry["dice_vs_reference"]["low"] < -0.02 < entry["dice_vs_reference"]["high"]
    assert entry["macs_removed"] == pytest.approx(0.75)
    assert result["summary"]["baseline_ft"]["dice_vs_reference"]["mean"] == pytest.approx(0.03)
    text = summary.markdown(result)
    assert "| taylorfo | baseline_ft | 3 | 75.0% |" in text and "real data" in text


def test_the_table_says_synthetic_when_the_split_names_a_phantom_folder(summary, tmp_path):
    (tmp_path / "data").mkdir()
    from monai_pruning.data.demo_data import PHANTOM_MARKER

    (tmp_path / "data" / PHANTOM_MARKER).write_text("")
    works = [_work(tmp_path, seed, {"baseline": _baseline(seed), "sauron": _baseline(seed)},
                   {"baseline": 100.0, "sauron": 50.0}) for seed in range(2)]
    assert summary.markdown(summary.summarise(works, resamples=50)).startswith("SYNTHETIC demo phantoms")


def test_folders_with_different_test_cases_fail_with_one_line(summary, tmp_path, capsys):
    first = _work(tmp_path, 0, {"baseline": _baseline(0)}, {"baseline": 100.0})
    other = {f"case_{i:05d}": 0.5 for i in range(1, 7)}
    second = _work(tmp_path, 1, {"baseline": other}, {"baseline": 100.0})
    with pytest.raises(SystemExit) as raised:
        summary.main([str(first), str(second), "--out", str(tmp_path / "out")])
    message = str(raised.value)
    assert "\n" not in message and "other test cases" in message and "case_00006" in message
    assert not (tmp_path / "out").exists()


def test_a_missing_case_metrics_csv_fails_with_one_line_naming_it(summary, tmp_path):
    work = _work(tmp_path, 0, {"baseline": _baseline(0), "sauron": _baseline(0)}, {"baseline": 100.0, "sauron": 5.0})
    (work / "sauron" / "eval" / "case_metrics.csv").unlink()
    with pytest.raises(SystemExit, match=r"sauron/eval/case_metrics.csv: missing") as raised:
        summary.main([str(work), "--out", str(tmp_path / "out")])
    assert "\n" not in str(raised.value)


def test_a_method_evaluated_on_other_cases_than_the_split_fails(summary, tmp_path):
    scores = _baseline(0)
    work = _work(tmp_path, 0, {"baseline": scores}, {"baseline": 100.0}, test=sorted(scores)[:-1])
    with pytest.raises(summary.SummaryError, match="not the test cases"):
        summary.summarise([work])


def test_two_folders_of_the_same_training_seed_are_refused(summary, tmp_path):
    first = _work(tmp_path / "a", 0, {"baseline": _baseline(0)}, {"baseline": 100.0})
    second = _work(tmp_path / "b", 0, {"baseline": _baseline(0)}, {"baseline": 100.0})
    with pytest.raises(summary.SummaryError, match="training seed 0 appears in more than one folder"):
        summary.summarise([first, second])


def test_taylorfo_is_compared_case_by_case_with_each_peer_on_the_seeds_where_both_ran(summary, tmp_path):
    works = []
    for seed in range(3):
        base = _baseline(seed)
        methods = {"baseline": base, "taylorfo": {c: v - 0.01 for c, v in base.items()}}
        macs = {"baseline": 100.0, "taylorfo": 25.0}
        if seed < 2:  # the L1 peer ran on two seeds only
            methods["tp_l1"] = {c: v - 0.05 for c, v in base.items()}
            macs["tp_l1"] = 24.0
        works.append(_work(tmp_path, seed, methods, macs))
    result = summary.summarise(works, resamples=200)
    assert len(result["versus_peers"]) == 1  # no tp_taylor in any folder
    versus = result["versus_peers"][0]
    assert (versus["method"], versus["peer"], versus["seeds"]) == ("taylorfo", "tp_l1", ["0", "1"])
    assert versus["mean"] == pytest.approx(0.04) and versus["excludes_zero"] and versus["cases"] == len(CASES)
    assert "| taylorfo | tp_l1 | 2 | +0.0400 [+0.0400, +0.0400] | yes |" in summary.markdown(result)


def _kits_csv(path: Path, rows: dict[str, tuple[float, float]]) -> None:
    """A KiTS-style evaluation CSV: cases named after their image file, case_XXXXX/imaging; NaN where undefined."""
    lines = ["case,test_mean_dice_kidney,test_mean_dice_tumour"]
    lines += [f"{case}/imaging,{kidney},{tumour}" for case, (kidney, tumour) in rows.items()]
    path.write_text("\n".join(lines) + "\n")


def test_kits_case_ids_pair_with_the_split_and_a_class_absent_from_a_case_is_left_out_of_its_mean(summary, tmp_path):
    work = _work(tmp_path, 0, {"baseline": _baseline(0), "sauron": _baseline(0)},
                 {"baseline": 100.0, "sauron": 50.0})
    no_tumour = CASES[0]
    base = {case: (0.8, float("nan") if case == no_tumour else 0.2) for case in CASES}
    pruned = {case: (0.7, float("nan") if case == no_tumour else 0.2) for case in CASES}
    _kits_csv(work / "baseline" / "eval" / "case_metrics.csv", base)
    _kits_csv(work / "sauron" / "eval" / "case_metrics.csv", pruned)
    results = {"baseline": {"macs": 100.0, "class_dice": {"kidney": 0.8, "tumour": 0.2}},
               "sauron": {"macs": 50.0, "class_dice": {"kidney": 0.7, "tumour": 0.2}}}
    (work / "results.json").write_text(json.dumps(results))
    result = summary.summarise([work], resamples=200)
    assert set(summary.read_work(work)["scores"]["sauron"]) == set(CASES)  # case_00000/imaging -> case_00000
    # the case without a tumour scores its kidney alone (0.8 vs 0.7), the others the mean of both (0.5 vs 0.45)
    assert result["summary"]["baseline"]["test_dice"] == pytest.approx((0.8 + 5 * 0.5) / 6)
    assert result["summary"]["sauron"]["dice_vs_reference"]["mean"] == pytest.approx((-0.1 + 5 * -0.05) / 6)
    assert result["summary"]["sauron"]["class_dice"] == {"kidney": 0.7, "tumour": 0.2}
    assert "| sauron | baseline | 1 | 50.0% | 0.4917 | kidney 0.700, tumour 0.200 |" in summary.markdown(result)


def test_a_method_whose_undefined_dice_cells_differ_from_the_baselines_is_refused(summary, tmp_path):
    work = _work(tmp_path, 0, {"baseline": _baseline(0), "sauron": _baseline(0)},
                 {"baseline": 100.0, "sauron": 50.0})
    _kits_csv(work / "baseline" / "eval" / "case_metrics.csv",
              {case: (0.8, float("nan") if case == CASES[0] else 0.2) for case in CASES})
    _kits_csv(work / "sauron" / "eval" / "case_metrics.csv", {case: (0.8, 0.0) for case in CASES})  # ignore_empty off
    with pytest.raises(summary.SummaryError, match="undefined \\(NaN\\) Dice cells differ from the baseline's"):
        summary.summarise([work], resamples=200)


def test_the_written_summary_keeps_its_runs_and_recomputes_the_same_table_without_the_work_folders(summary, tmp_path):
    works = []
    for seed in range(3):
        base = _baseline(seed)
        taylorfo = {case: value - 0.01 * (seed + 1) for case, value in base.items()}
        works.append(_work(tmp_path / "works", seed, {"baseline": base, "baseline_ft": base, "taylorfo": taylorfo},
                           {"baseline": 100.0, "baseline_ft": 100.0, "taylorfo": 30.0}))
    summary.main([*map(str, works), "--out", str(tmp_path / "first"), "--resamples", "300"])
    written = json.loads((tmp_path / "first" / "seed_summary.json").read_text())
    assert [run["seed"] for run in written["runs"]] == [0, 1, 2]
    assert written["runs"][2]["scores"]["taylorfo"]["case_00001"] == pytest.approx(0.5 + 0.05 + 0.02 - 0.03)
    assert written["runs"][0]["results"]["taylorfo"] == {"macs": 30.0}
    shutil.rmtree(tmp_path / "works")  # the evidence must outlive the work folders
    summary.main(["--from_summary", str(tmp_path / "first" / "seed_summary.json"), "--out", str(tmp_path / "again"),
                  "--resamples", "300"])
    again = json.loads((tmp_path / "again" / "seed_summary.json").read_text())
    assert again == written
    assert (tmp_path / "again" / "seed_summary.md").read_text() == (tmp_path / "first" / "seed_summary.md").read_text()
    assert again["summary"]["taylorfo"]["dice_vs_reference"]["mean"] == pytest.approx(-0.02)


def test_a_summary_file_without_its_runs_is_refused_with_one_line(summary, tmp_path):
    old = tmp_path / "seed_summary.json"
    old.write_text(json.dumps({"summary": {}, "works": []}))  # written before the runs were kept
    with pytest.raises(SystemExit) as raised:
        summary.main(["--from_summary", str(old), "--out", str(tmp_path / "out")])
    assert "\n" not in str(raised.value) and "not a seed_summary.json with its runs" in str(raised.value)


def test_work_folders_and_a_summary_file_together_or_neither_are_a_usage_error(summary, tmp_path):
    work = _work(tmp_path, 0, {"baseline": _baseline(0)}, {"baseline": 100.0})
    for argv in ([str(work), "--from_summary", "x.json"], []):
        with pytest.raises(SystemExit) as raised:
            summary.main([*argv, "--out", str(tmp_path / "out")])
        assert raised.value.code == 2
