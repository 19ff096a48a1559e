"""The PolypGen benchmark driver: which runs it plans, in which order they start, how it resumes, what it reports."""

from __future__ import annotations

import ast
import json

import numpy as np
import pytest

from tests.benchmarks.benchmark_scripts import load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("polypgen_benchmark")


def test_every_run_comes_after_the_runs_it_needs_and_the_methods_before_their_controls(bench):
    plans = bench.method_plans(epochs=100, finetune_epochs=60)
    order = list(plans)
    for name, plan in plans.items():
        for needed in plan.needs:
            assert order.index(needed) < order.index(name), (name, needed)
    assert order[:4] == ["baseline", "sauron", "sauron_scheduled", "taylorfo"]
    assert plans["scratch_taylorfo"].epochs == 160 and plans["scratch_sauron"].epochs == 100
    assert plans["taylorfo"].reference == "baseline_long" and plans["sauron"].reference == "baseline"
    assert {name for name, plan in plans.items() if plan.peer} == {"tp_taylor", "tp_l1", "weight_taylor"}
    assert {name for name, plan in plans.items() if plan.torch_pruning} == {"tp_taylor", "tp_l1"}


def test_the_real_data_recipe_lies_over_train_json_in_every_run_and_in_its_evaluation(bench):
    recipe = (bench.REAL_DATA_RECIPE,)
    assert (bench.SOURCE / "configs" / bench.REAL_DATA_RECIPE).is_file()
    plain, with_recipe = bench.method_plans(4, 3), bench.method_plans(4, 3, recipe)
    for name, plan in with_recipe.items():
        assert plan.configs[:2] == ("train.json", bench.REAL_DATA_RECIPE), name
        assert plan.configs[2:] == plain[name].configs[1:], name  # the method's own overlays after it, unchanged
        assert plan.evaluation_configs == ("train.json", bench.REAL_DATA_RECIPE, "evaluate.json"), name
    assert plain["baseline"].evaluation_configs == ("train.json", "evaluate.json")
    assert bench.training_setting("num_epochs", [], recipe) == 100
    assert bench.training_setting("num_epochs", ["num_epochs=7"], recipe) == 7


def test_the_scheduled_sauron_run_is_the_paper_constant_run_with_the_recommended_schedule_on_top(bench, tmp_path):
    plans = bench.method_plans(4, 3)
    paper, scheduled = plans["sauron"], plans["sauron_scheduled"]
    assert scheduled.configs == paper.configs and scheduled.epochs == paper.epochs
    assert scheduled.reference == paper.reference == "baseline" and not scheduled.needs
    run = bench.RunFolder(tmp_path, scheduled, 1)
    overrides = run.overrides({}, tmp_path, [])
    flags = dict(zip(overrides[::2], overrides[1::2]))
    assert flags["--sauron#patience"] == "1" and flags["--sauron#target_macs_reduction"] == "0.9"
    assert "--sauron#patience" not in bench.RunFolder(tmp_path, paper, 1).overrides({}, tmp_path, [])
    assert run.root == tmp_path / "seed1" / "sauron_scheduled"
    # the recommended schedule runs without the regulariser; the labelled variant keeps the paper's lambda
    assert flags["--sauron#lam"] == "0.0"
    values = bench.RunFolder(tmp_path, plans["sauron_regularised"], 1).overrides({}, tmp_path, [])
    regularised = dict(zip(values[::2], values[1::2]))
    assert "--sauron#lam" not in regularised
    assert {k: v for k, v in flags.items() if k != "--sauron#lam"} == regularised


def test_labelled_variants_run_only_when_named(bench):
    plans = bench.method_plans(10, 10)
    assert plans["sauron_regularised"].extra and plans["sauron_regularised"].reference == "baseline"
    default = bench.with_dependencies(bench.default_methods(plans), plans)
    assert "sauron_regularised" not in default and default == [m for m in plans if m != "sauron_regularised"]
    assert bench.with_dependencies(["sauron_regularised"], plans) == ["sauron_regularised", "baseline"]


def test_asking_for_one_method_brings_the_runs_it_needs(bench):
    plans = bench.method_plans(10, 10)
    assert bench.with_dependencies(["tp_l1"], plans) == ["baseline", "taylorfo", "tp_l1", "baseline_long"]
    assert bench.with_dependencies(["scratch_sauron"], plans) == ["sauron_scheduled", "scratch_sauron", "baseline"]
    assert bench.with_dependencies(list(plans), plans) == list(plans)  # the labelled variants too, when named
    with pytest.raises(SystemExit, match="unknown method 'magic'"):
        bench.with_dependencies(["magic"], plans)


def test_runs_start_in_the_order_the_methods_were_asked_for_after_their_inputs_and_before_references(bench):
    plans = bench.method_plans(10, 10)
    asked = bench.with_dependencies(["sauron_scheduled", "taylorfo", "sauron"], plans)
    assert asked == ["sauron_scheduled", "baseline", "taylorfo", "sauron", "baseline_long"]
    assert bench.with_dependencies(["taylorfo", "sauron_scheduled"], plans) == ["baseline", "taylorfo",
                                                                              "sauron_scheduled", "baseline_long"]


def test_controls_and_peers_take_their_architecture_and_macs_from_the_run_they_match(bench, tmp_path):
    plans = bench.method_plans(4, 3)
    runs = {name: bench.RunFolder(tmp_path, plans[name], 1) for name in plans}
    pruning = runs["taylorfo"].root / "runs" / "pruning"
    pruning.mkdir(parents=True)
    rows = [{"phase": "pruning", "macs": 900}, {"phase": "pruning", "macs": 500}, {"phase": "finetune", "macs": 500}]
    (pruning / "pruning_history.json").write_text(json.dumps(rows))
    peer = runs["tp_l1"].overrides(runs, tmp_path / "data", ["--x", "1"])
    assert peer[peer.index("--peer#target_macs") + 1] == "500" and peer[peer.index("--peer#steps") + 1] == "2"
    assert peer[peer.index("--num_epochs") + 1] == "3" and peer[peer.index("--seed") + 1] == "1"
    assert peer[-2:] == ["--x", "1"]
    scratch = runs["scratch_taylorfo"].overrides(runs, tmp_path / "data", [])
    assert scratch[scratch.index("--architecture_checkpoint") + 1] == str(runs["taylorfo"].model)
    assert scratch[scratch.index("--num_epochs") + 1] == "7"


@pytest.mark.parametrize("method", ["random", "weight_taylor"])
def test_criteria_on_our_engine_prune_from_the_baseline_with_taylorfos_schedule_to_taylorfos_final_macs(
    bench, tmp_path, method
):
    plans = bench.method_plans(4, 3)
    plan = plans[method]
    assert plan.configs == plans["taylorfo"].configs and plan.epochs == 3 and not plan.torch_pruning
    assert (plan.starts_from, plan.reference, plan.macs_of) == ("baseline", "baseline_long", "taylorfo")
    assert bench.with_dependencies([method], plans) == ["baseline", "taylorfo", method, "baseline_long"]
    runs = {name: bench.RunFolder(tmp_path, plans[name], 2) for name in plans}
    pruning = runs["taylorfo"].root / "runs" / "pruning"
    pruning.mkdir(parents=True)
    rows = [{"phase": "pruning", "macs": 900, "macs_ratio": 0.9},
            {"phase": "finetune", "macs": 230, "macs_ratio": 0.23}]
    (pruning / "pruning_history.json").write_text(json.dumps(rows))
    values = runs[method].overrides(runs, tmp_path / "data", [])
    assert "--peer#target_macs" not in values and values[values.index("--seed") + 1] == "2"
    assert float(values[values.index("--taylorfo#target_macs_reduction") + 1]) == pytest.approx(0.77)


@pytest.mark.parametrize("method, criterion", [("random", "random"), ("weight_taylor", "weight_gradient")])
def test_criterion_overrides_make_the_bundles_taylorfo_handler_rank_by_them_without_a_metric_stop(
    bench, method, criterion
):
    from monai.bundle import ConfigParser

    from monai_pruning.handlers import TaylorFOPruning

    parser = ConfigParser()
    parser.read_config([str(bench.SOURCE / "configs" / name) for name in bench.method_plans(4, 3)[method].configs])
    overrides = list(bench.method_plans(4, 3)[method].overrides) + ["--taylorfo#target_macs_reduction", "0.77"]
    for key, value in zip(overrides[::2], overrides[1::2]):  # as the bundle CLI reads them: Python literals
        try:
            parser[key[2:]] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser[key[2:]] = value
    names = ("criterion", "macs_normalize", "tolerance", "target_macs_reduction", "prune_fraction", "min_channels")
    kwargs = {name: parser.get_parsed_content(f"pruning_handler#{name}") for name in names}
    handler = TaylorFOPruning(**kwargs)
    assert handler.criterion == criterion and not handler.macs_normalize and handler.tolerance is None
    assert handler.target_macs_reduction == pytest.approx(0.77)
    assert handler.prune_fraction == parser.get_parsed_content("taylorfo#prune_fraction")


def test_runs_start_once_their_inputs_are_done_finished_runs_are_skipped_and_failures_propagate(bench, tmp_path,
                                                                                               monkeypatch):
    plans = bench.method_plans(2, 2)
    methods = bench.with_dependencies(["taylorfo", "sauron_scheduled", "scratch_sauron"], plans)
    runs = {(0, m): bench.RunFolder(tmp_path, plans[m], 0) for m in methods}
    started: list[str] = []

    def fake_prepare(self, split_file, by_method):
        self.root.mkdir(parents=True, exist_ok=True)

    def fake_train(run, by_method, data, extra, threads):
        assert all(by_method[name].done for name in run.plan.needs)
        started.append(run.plan.method)
        if run.plan.method == "sauron_scheduled":
            raise RuntimeError("diverged")
        (run.root / "done.json").write_text("{}")

    monkeypatch.setattr(bench.RunFolder, "prepare", fake_prepare)
    monkeypatch.setattr(bench, "train_and_evaluate", fake_train)
    runs[(0, "baseline")].root.mkdir(parents=True)
    (runs[(0, "baseline")].root / "done.json").write_text("{}")  # finished in an earlier session
    failed = bench.run_all(runs, tmp_path, tmp_path / "split.json", [], jobs=2, threads=2)
    assert "baseline" not in started
    assert set(started) == {"baseline_long", "sauron_scheduled", "taylorfo"}
    assert sorted(failed) == ["seed0/sauron_scheduled", "seed0/scratch_sauron (needs a failed run)"]



def test_a_run_another_command_finished_meanwhile_is_not_started_again(bench, tmp_path, monkeypatch):
    plans = bench.method_plans(2, 2)
    runs = {(0, m): bench.RunFolder(tmp_path, plans[m], 0) for m in bench.with_dependencies(["taylorfo"], plans)}
    started: list[str] = []

    def fake_train(run, by_method, data, extra, threads):
        started.append(run.plan.method)
        for finished in (run, runs[(0, "baseline_long")]):  # the reference finished elsewhere while this one trained
            finished.root.mkdir(parents=True, exist_ok=True)
            (finished.root / "done.json").write_text("{}")

    monkeypatch.setattr(bench.RunFolder, "prepare", lambda self, split_file, by_method: None)
    monkeypatch.setattr(bench, "train_and_evaluate", fake_train)
    runs[(0, "baseline")].root.mkdir(parents=True)
    (runs[(0, "baseline")].root / "done.json").write_text("{}")
    assert bench.run_all(runs, tmp_path, tmp_path / "split.json", [], jobs=1, threads=1) == []
    assert started == ["taylorfo"]

def _scores(rng, offset: float) -> dict[str, float]:
    return {f"f{i}": float(np.clip(0.7 + offset + rng.normal(0, 0.1), 0, 1)) for i in range(40)}


def test_summary_pairs_each_method_with_its_same_seed_reference_over_seeds_and_frames(bench):
    plans = bench.method_plans(2, 2)
    rng = np.random.default_rng(0)
    scores, rows = {}, []
    for seed in (0, 1, 2):
        scores[(seed, "baseline")] = _scores(rng, 0.0)
        scores[(seed, "sauron")] = {k: v - 0.05 for k, v in scores[(seed, "baseline")].items()}
        for method, removed in (("baseline", 0.0), ("sauron", 0.9)):
            rows.append({"method": method, "seed": seed, "macs_removed": removed, "fps_352": 10.0,
                         "checkpoint_mb": 8.0 - 6.0 * removed, "peak_memory_352_mb": 200.0 - 100.0 * removed + seed,
                         "test_dice": float(np.mean(list(scores[(seed, method)].values())))})
    centres = {f"f{i}": "C1" if i < 20 else "C2" for i in range(40)}
    summary = bench.summarise(rows, scores, plans, centres, resamples=300)
    versus = summary["sauron"]["dice_vs_reference"]
    assert versus["mean"] == pytest.approx(-0.05) and versus["seeds"] == 3 and versus["cases"] == 40
    assert versus["low"] == pytest.approx(-0.05) and versus["high"] == pytest.approx(-0.05) and versus["excludes_zero"]
    assert "dice_vs_reference" not in summary["baseline"]
    assert set(summary["sauron"]["test_dice_per_centre"]) == {"C1", "C2"}
    table = bench.markdown({"test_frames": 40, "resolution": [128, 128], "summary": summary})
    assert "| sauron | baseline | 3 | 90.0% |" in table and "-0.0500 [-0.0500, -0.0500]" in table
    assert summary["sauron"]["peak_memory_352_mb"] == pytest.approx(111.0)  # mean over the seeds
    assert "| 2.60 MB | 111 MB |" in table and "| 8.00 MB | 201 MB |" in table  # checkpoint, peak RAM
    assert "| baseline | baseline | 3 | 0.0% | 0.7" in table and "| (reference) |" in table
    unpaired = {key: value for key, value in scores.items() if key[1] == "sauron"}  # the baseline still training
    alone = bench.summarise([row for row in rows if row["method"] == "sauron"], unpaired, plans, centres, resamples=10)
    assert "| (baseline not finished) |" in bench.markdown({"test_frames": 40, "resolution": [128, 128],
                                                           "summary": alone})



def test_each_method_is_compared_with_its_controls_on_the_seeds_where_both_finished(bench):
    rng = np.random.default_rng(2)
    scores = {}
    for seed in (0, 1):
        scores[(seed, "sauron_scheduled")] = _scores(rng, 0.0)
        scores[(seed, "scratch_sauron")] = {k: v - 0.03 for k, v in scores[(seed, "sauron_scheduled")].items()}
    scores[(0, "taylorfo")] = _scores(rng, 0.0)
    scores[(0, "random")] = {k: v + 0.02 for k, v in scores[(0, "taylorfo")].items()}
    scores[(1, "random")] = _scores(rng, 0.0)  # seed 1's TaylorFO not finished: seed 0 only
    rows = bench.versus_controls(scores, resamples=200)
    assert [(r["method"], r["control"], r["seeds"]) for r in rows] == [
        ("sauron_scheduled", "scratch_sauron", [0, 1]), ("taylorfo", "random", [0])]
    assert rows[0]["mean"] == pytest.approx(0.03) and rows[0]["excludes_zero"]
    assert rows[1]["mean"] == pytest.approx(-0.02) and rows[1]["high"] == pytest.approx(-0.02)
    table = bench.markdown({"test_frames": 40, "resolution": [128, 128], "summary": {}, "versus_controls": rows})
    assert "| sauron_scheduled | scratch_sauron | 2 | +0.0300 [+0.0300, +0.0300] | yes |" in table
    assert "| taylorfo | random | 1 | -0.0200 [-0.0200, -0.0200] | yes |" in table
    assert "against its controls" not in bench.markdown({"test_frames": 40, "resolution": [128, 128], "summary": {}})

def test_a_run_is_timed_in_every_runtime_and_reports_its_fastest_with_the_dense_ratio_in_that_runtime(
    bench, tmp_path, monkeypatch
):
    import argparse

    import torch
    from monai.networks.nets import DynUNet

    def tiny(filters: list[int]) -> torch.nn.Module:
        torch.manual_seed(0)
        return DynUNet(2, 3, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=filters, norm_name="instance")

    run = bench.RunFolder(tmp_path, bench.method_plans(2, 2)["taylorfo"], 0)
    run.model.parent.mkdir(parents=True)
    run.model.write_bytes(b"0" * 1024)
    dense_calls = []

    def dense(source, macs, shape):
        dense_calls.append((macs, shape))
        return tiny([6, 12, 12]), 0.75

    monkeypatch.setattr(bench, "load_model", lambda bundle, checkpoint: tiny([4, 8, 8]))
    monkeypatch.setattr(bench, "dense_equivalent", dense)
    monkeypatch.setattr(bench, "DEPLOY_SIZE", (48, 48))  # the 352x352 frame, smaller
    args = argparse.Namespace(runtimes=["eager", "torchscript"], rounds=2, repeats=2, threads=1)
    row = bench.measure_run(run, 10**12, (1, 3, 32, 32), args)
    assert dense_calls[0][1] == (1, 3, 48, 48)  # equal MACs at the deployment size
    assert list(row["runtimes"]) == ["eager", "torchscript"]
    fastest = min(row["runtimes"], key=lambda name: row["runtimes"][name]["48x48"]["latency_s"])
    timed = row["runtimes"][fastest]
    assert row["runtime"] == fastest and row["fps_352"] == timed["48x48"]["fps"]
    assert row["latency_352_s"] == timed["48x48"]["latency_s"] and row["latency_s"] == timed["32x32"]["latency_s"]
    assert row["pruned_over_dense_352"] == timed["48x48"]["pruned_over_dense"] > 0
    assert all("pruned_over_dense" in cell for sizes in row["runtimes"].values() for cell in sizes.values())
    baseline = bench.measure_run(run, None, (1, 3, 32, 32), args)  # nothing to compare a baseline with
    assert "pruned_over_dense_352" not in baseline and len(dense_calls) == 1
    assert 0 < row["peak_memory_352_mb"] < 2048 and row["checkpoint_mb"] == pytest.approx(1024 / 2**20)


def test_the_report_tables_every_runtime_as_the_mean_over_seeds_with_the_speed_up_over_the_baseline(bench):
    plans = bench.method_plans(2, 2)
    rng = np.random.default_rng(1)
    scores, rows = {}, []
    for seed, (base_ms, pruned_ms) in enumerate([(10.0, 4.0), (14.0, 6.0)]):
        for method, ms, removed in (("baseline", base_ms, 0.0), ("sauron", pruned_ms, 0.5)):
            scores[(seed, method)] = _scores(rng, 0.0)
            timed = {"latency_s": ms / 1e3, "fps": 1e3 / ms, **({"pruned_over_dense": 1.1} if removed else {})}
            rows.append({"method": method, "seed": seed, "macs_removed": removed, "fps_352": 1e3 / ms,
                         "runtime": "onnxruntime", "test_dice": 0.7, "checkpoint_mb": 1.0, "peak_memory_352_mb": 50.0,
                         "runtimes": {"onnxruntime": {"352x352": timed}}})
    centres = {f"f{i}": "C1" for i in range(40)}
    summary = bench.summarise(rows, scores, plans, centres, resamples=50)
    assert summary["sauron"]["runtime"] == "onnxruntime"
    assert summary["sauron"]["runtimes"]["onnxruntime"]["352x352"]["latency_s"] == pytest.approx(0.005)
    assert summary["sauron"]["runtimes"]["onnxruntime"]["352x352"]["pruned_over_dense"] == pytest.approx(1.1)
    table = bench.markdown({"test_frames": 40, "resolution": [128, 128], "threads": 2, "summary": summary,
                            "runtime_note": "Not installed here, so not timed: OpenVINO."})
    assert "| baseline | 12.0 ms, 83.3 fps |" in table
    assert "| sauron | 5.0 ms, 200.0 fps (2.40x; 1.10x dense) |" in table
    assert bench.DENSE_RATIO_NOTE in table
    assert "| 208.3 (ONNX Runtime) |" in table  # frames/s at 352x352 in the fastest runtime, mean over seeds
    assert table.rstrip().endswith("Not installed here, so not timed: OpenVINO.")


def test_feature_map_comparison_takes_the_first_seed_with_a_baseline_taylorfo_and_a_sauron_run(bench, tmp_path):
    plans = bench.method_plans(2, 2)
    runs = {(seed, m): bench.RunFolder(tmp_path, plans[m], seed) for seed in (0, 1) for m in plans}

    def finish(seed, *methods):
        for method in methods:
            runs[(seed, method)].root.mkdir(parents=True)
            (runs[(seed, method)].root / "done.json").write_text("{}")

    finish(0, "baseline", "sauron", "sauron_scheduled")
    assert bench.comparison_runs(runs, [0, 1]) is None  # no TaylorFO yet
    finish(1, "baseline", "taylorfo", "sauron")
    assert bench.comparison_runs(runs, [0, 1]) == (1, ["baseline", "sauron", "taylorfo"])
    finish(0, "taylorfo")
    assert bench.comparison_runs(runs, [0, 1]) == (0, ["baseline", "sauron_scheduled", "sauron", "taylorfo"])


def _progress_log(path, rows) -> None:
    from monai_pruning.handlers.epoch_progress import LOGGER_NAME, progress_line

    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"2026-12-06 12:00:00,000 - {LOGGER_NAME} - INFO - " + progress_line(
        epoch, 10, 0.3, "val_mean_dice", dice, dice_epoch, macs, 1.0, 1.0) for epoch, dice, dice_epoch, macs in rows]
    path.write_text("\n".join(["$ python -m monai.bundle run ...", *lines]) + "\n")


def test_training_curves_read_every_started_run_of_the_seed_from_its_log_or_tensorboard(bench, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    plans = bench.method_plans(10, 10)
    runs = {(s, m): bench.RunFolder(tmp_path, plans[m], s)
            for s in (0, 1) for m in bench.with_dependencies(["taylorfo", "tp_l1"], plans)}
    # TaylorFO, finished, resumed after epoch 6 from its epoch-5 checkpoint: epoch 6 is logged twice
    _progress_log(runs[(0, "taylorfo")].log, [(5, 0.60, 5, 0.80), (6, 0.60, 5, 0.70), (6, 0.60, 5, 0.75),
                                              (10, 0.62, 10, 0.25)])
    (runs[(0, "taylorfo")].root / "done.json").write_text("{}")
    _progress_log(runs[(0, "tp_l1")].log, [(5, 0.55, 5, 0.90)])  # not finished
    _progress_log(runs[(1, "taylorfo")].log, [(5, 0.10, 5, 0.10)])  # another seed
    writer = SummaryWriter(str(runs[(0, "baseline")].root / "runs"))  # a log without progress lines
    for epoch, dice in ((5, 0.3), (10, 0.5)):
        writer.add_scalar("val_mean_dice", dice, epoch)
    writer.close()
    runs[(0, "baseline")].log.write_text("evaluation only\n")

    curves = bench.training_curves(runs, 0)
    assert set(curves) == {"baseline", "taylorfo", "tp_l1"}  # baseline_long has not started
    taylorfo = curves["taylorfo"]
    assert taylorfo["done"] and taylorfo["starts_from"] == "baseline"
    assert taylorfo["epochs"] == [5, 6, 10] and taylorfo["macs_left"] == [0.8, 0.75, 0.25]
    assert taylorfo["validation"] == [[5, 0.6], [10, 0.62]]  # epoch 6 shows epoch 5's validation again
    assert not curves["tp_l1"]["done"]
    assert curves["baseline"] == {"done": False, "starts_from": None, "epochs": [], "macs_left": [],
                                  "validation": [[5, pytest.approx(0.3)], [10, pytest.approx(0.5)]]}

    table = "\n".join(bench.curves_markdown(0, curves))
    assert "| run | 5 | 10 |" in table
    assert "| taylorfo, from baseline | 0.600 (80%) | 0.620 (25%) |" in table
    assert "| tp_l1, from baseline (unfinished) | 0.550 (90%) |  |" in table
    assert "| baseline (unfinished) | 0.300 | 0.500 |" in table
    curves["random"] = {"done": False, "starts_from": "baseline", "epochs": [1], "macs_left": [0.95], "validation": []}
    assert "random" not in "\n".join(bench.curves_markdown(0, curves))  # nothing validated yet: no row
    bench.plot_curves(0, curves, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_every_run_gets_its_paired_difference_whatever_the_order_its_reference_was_read_in(bench):
    plans = bench.method_plans(2, 2)
    scores = {(0, "baseline"): {"a": 0.5, "b": 0.7}, (0, "taylorfo"): {"a": 0.4, "b": 0.9},
              (0, "baseline_long"): {"a": 0.6, "b": 0.6}}
    rows = [{"seed": 0, "method": m} for m in ("baseline", "taylorfo", "baseline_long")]  # the reference read last
    bench.add_dice_vs_reference(rows, scores, plans)
    assert "dice_vs_reference" not in rows[0] and "dice_vs_reference" not in rows[2]
    assert rows[1]["dice_vs_reference"] == pytest.approx(((0.4 - 0.6) + (0.9 - 0.6)) / 2)
