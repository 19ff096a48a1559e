"""The benchmark script's reporting: per-class Dice from the evaluation CSV and the ratios of its tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from monai_pruning.engine import ChannelPruner

from tests.benchmarks.benchmark_scripts import BENCHMARKS, load_script


@pytest.fixture(scope="module")
def bench():
    return load_script("pruning_benchmark")


def _row(params: int, macs: float, dice: float, latency_s: float, **extra) -> dict:
    return {"params": params, "macs": macs, "dice": dice, "latency_s": latency_s, "checkpoint_mb": 1.0,
            "peak_memory_mb": 50.0, **extra}


def test_class_dice_reads_every_class_of_the_mean_row_and_mean_dice_averages_them(bench, tmp_path):
    csv_path = tmp_path / "case_metrics.csv"
    csv_path.write_text(
        "case,test_mean_dice_kidney,test_mean_dice_tumour,test_hd95_kidney,test_hd95_tumour\n"
        "case_1,0.7,0.1,3.0,nan\n"
        "mean,0.75,0.05,3.5,nan\n"
    )
    per_class = bench.class_dice(csv_path)
    assert per_class == {"kidney": 0.75, "tumour": 0.05}
    assert bench.mean_dice(per_class) == pytest.approx(0.4)


def test_tables_state_sizes_speed_and_dice_as_ratios_to_the_baseline(bench):
    results = {
        "baseline": _row(1000, 400e6, 0.80, 0.020),
        "taylorfo": _row(250, 100e6, 0.79, 0.008, dense_same_macs_latency_s=0.010,
                         class_dice={"kidney": 0.9, "tumour": 0.68}),
        "sauron": _row(500, 300e6, 0.70, 0.016, plain_iteration_s=0.5, sauron_iteration_s=0.6, overhead=0.2,
                       first_epochs_s=6.0, last_epochs_s=4.0),
    }
    lines = bench.markdown_tables(results)
    baseline, taylorfo, sauron = lines[2:5]
    assert baseline.startswith("| baseline | 1,000 | 400.0 M | 0.0% | 0.8000 |  |  | 20.0 ms | 1.00x |")
    assert "| TaylorFO | 250 (0.25x) | 100.0 M (0.25x) | 75.0% | 0.7900 (kidney 0.900, tumour 0.680) | -0.0100 |" in (
        taylorfo
    )
    assert "| 8.0 ms | 2.50x | 10.0 ms | 0.80 |" in taylorfo
    assert "| 0.500 s / 0.600 s (+20%) |" in "\n".join(lines)
    assert "| 6.0 s / 4.0 s |" in "\n".join(lines)
    assert sauron.count("|") == baseline.count("|")  # no dense column values, but the same number of cells
    assert "| -0.1000 | -0.1000 (baseline) |" in sauron  # Sauron trains from scratch as long as the baseline
    assert "| -0.0100 |  |" in taylorfo  # no unpruned fine-tuning of the baseline was run to compare with


def test_runs_that_fine_tune_the_baseline_are_compared_with_its_unpruned_fine_tuning(bench):
    results = {"baseline": _row(1000, 400e6, 0.80, 0.020), "baseline_ft": _row(1000, 400e6, 0.83, 0.020),
               "taylorfo": _row(250, 100e6, 0.82, 0.008), "tp_l1": _row(250, 100e6, 0.60, 0.008)}
    taylorfo, tp_l1 = bench.markdown_tables(results)[4:6]
    assert "| +0.0200 | -0.0100 (baseline_ft) |" in taylorfo
    assert "| -0.2000 | -0.2300 (baseline_ft) |" in tp_l1


def test_overhead_only_times_plain_and_regularised_iterations_without_training(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pruning_benchmark.py", "polyp_endoscopy_segmentation", "--work", str(tmp_path),
                                      "--overhead_only", "--overhead_iterations", "1", "--overhead_rounds", "1"])
    bench.main()
    cost = json.loads((tmp_path / "overhead.json").read_text())
    assert cost["plain_iteration_s"] > 0 and cost["sauron_iteration_s"] > 0
    assert cost["overhead"] == pytest.approx(cost["sauron_iteration_s"] / cost["plain_iteration_s"] - 1)
    assert "without / with the regulariser and scoring" in capsys.readouterr().out
    assert sorted(path.name for path in tmp_path.iterdir()) == ["overhead.json"]  # nothing trained


def test_untimed_runs_leave_every_timing_cell_empty_and_keep_sizes_and_dice(bench):
    untimed = {"baseline": {"params": 1000, "macs": 400e6, "dice": 0.80, "checkpoint_mb": 1.0},
               "taylorfo": {"params": 250, "macs": 100e6, "dice": 0.79, "checkpoint_mb": 0.5}}
    baseline, taylorfo = bench.markdown_tables(untimed)[2:4]
    assert baseline.startswith("| baseline | 1,000 | 400.0 M | 0.0% | 0.8000 |  |  |  |  |  |  | 1.00 MB |  |")
    assert taylorfo.endswith("| 75.0% | 0.7900 | -0.0100 |  |  |  |  |  | 0.50 MB |  |")


def test_no_latency_measures_sizes_and_dice_of_the_runs_and_times_nothing(bench, tmp_path, monkeypatch):
    work = tmp_path / "work"
    for method, dice in (("baseline", 0.8), ("taylorfo", 0.7)):
        (work / method / "eval").mkdir(parents=True)
        (work / method / "eval" / "case_metrics.csv").write_text(f"case,test_mean_dice_polyp\nmean,{dice}\n")
        (work / method / "models").mkdir()
        (work / method / "models" / "model.pt").write_bytes(b"0" * 2**20)
    widths = {"baseline": 8, "taylorfo": 4}
    monkeypatch.setattr(bench, "load_model", lambda bundle, checkpoint: torch.nn.Conv2d(
        3, widths[Path(checkpoint).parents[1].name], 3, padding=1))

    def timed(*args, **kwargs):
        raise AssertionError("--no_latency timed a model")

    for name in ("measure_latency", "scripted_peak_memory_mb", "compare_runtimes", "sauron_iteration_overhead"):
        monkeypatch.setattr(bench, name, timed)
    monkeypatch.setattr(sys, "argv", ["pruning_benchmark.py", "polyp_endoscopy_segmentation", "--work", str(work),
                                      "--methods", "baseline", "taylorfo", "--measure_only", "--no_latency"])
    bench.main()
    results = json.loads((work / "results.json").read_text())
    assert results["taylorfo"]["macs"] == results["baseline"]["macs"] / 2 > 0
    assert results["taylorfo"]["dice"] == pytest.approx(0.7) and results["baseline"]["checkpoint_mb"] == 1.0
    assert not any("latency_s" in r or "runtimes" in r for r in results.values())
    assert "| 50.0% | 0.7000 |" in (work / "results.md").read_text()


def test_tables_add_the_latency_bound_of_the_narrowest_network_when_measured(bench):
    results = {"baseline": _row(1000, 400e6, 0.80, 0.020, floor_channels=2, floor_macs=4e6, floor_latency_s=0.004)}
    text = "\n".join(bench.markdown_tables(results))
    assert "| every prunable group at 2 channels | 4.0 M | 99.0% | 4.0 ms | 5.00x |" in text
    assert "fastest" not in "\n".join(bench.markdown_tables({"baseline": _row(1000, 400e6, 0.80, 0.020)}))


def test_narrowest_network_leaves_every_prunable_group_at_the_floor_and_still_runs(bench):
    bundle = BENCHMARKS.parent / "bundles" / "polyp_endoscopy_segmentation"
    shape = (1, 3, 64, 64)
    network = bench.narrowest_network(bundle, 3, shape)
    widths = ChannelPruner(network, (2, 3, 64, 64)).widths()
    assert len(widths) > 10 and set(widths.values()) == {3}
    assert network.eval()(torch.zeros(shape)).shape == (1, 2, 64, 64)


def test_runtime_lines_put_the_baseline_first_and_give_each_runtime_and_size_with_the_speed_up_over_it(bench):
    def timed(ms: float) -> dict:
        return {"latency_s": ms / 1e3, "fps": 1e3 / ms, "max_abs_difference": 1e-6}

    results = {  # the runs in the order --methods named them: the baseline need not come first
        "sauron": _row(10, 1e5, 0.79, 0.005, runtimes={"eager": {"128x128": timed(5.0), "352x352": timed(20.0)},
                                                       "onnxruntime": {"128x128": timed(4.0)}}),
        "baseline": _row(100, 1e6, 0.8, 0.01, runtimes={"eager": {"128x128": timed(10.0), "352x352": timed(80.0)},
                                                        "onnxruntime": {"128x128": timed(5.0)}}),
    }
    lines = bench.runtime_lines(results, threads=2)
    assert lines[1].startswith("CPU latency per runtime, batch 1, 2 threads")
    table = lines[3:7]
    assert table[0] == "| model | PyTorch eager 128x128 | PyTorch eager 352x352 | ONNX Runtime 128x128 |"
    assert table[2] == "| baseline | 10.0 ms, 100.0 fps | 80.0 ms, 12.5 fps | 5.0 ms, 200.0 fps |"
    assert table[3] == "| Sauron | 5.0 ms, 200.0 fps (2.00x) | 20.0 ms, 50.0 fps (4.00x) | 4.0 ms, 250.0 fps (1.25x) |"
    assert lines[-1].startswith("Largest output difference from eager PyTorch: ONNX Runtime 1.0e-06.")
    assert bench.runtime_lines({"baseline": _row(100, 1e6, 0.8, 0.01)}, threads=2) == []


def test_fixed_split_is_the_same_for_every_seed_folder_and_the_bundle_reuses_it_under_another_training_seed(
        bench, tmp_path):
    from monai_pruning.data import prepare_task_data

    source = bench.REPO / "bundles" / "kidney_ct_segmentation"
    settings = ["demo_cases=6", "test_fraction=0.34", "val_fraction=0.17"]
    files = [bench.fixed_split(source, tmp_path / name, settings) for name in ("seed0", "seed1")]
    splits = [json.loads(f.read_text()) for f in files]
    assert splits[0]["test"] == splits[1]["test"] and len(splits[0]["test"]) == 2
    # what a run with --seed 1 does: its data step finds the copied split in its output_dir and keeps it
    runs = tmp_path / "run" / "runs"
    runs.mkdir(parents=True)
    (runs / "split.json").write_text(files[1].read_text())
    data = prepare_task_data("kidney", str(tmp_path / "seed1" / "data" / "demo"), output_dir=str(runs), seed=1)
    assert [item["case"] for item in data["test"]] == splits[0]["test"] and data["info"]["split_reused"]
    # the split seed is the bundle's seed after --set: another one gives another split
    other = json.loads(bench.fixed_split(source, tmp_path / "other", settings + ["seed=5"]).read_text())
    assert other["test"] != splits[0]["test"]


def test_seed_and_set_seed_together_are_refused_before_any_run(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["pruning_benchmark.py", "kidney_ct_segmentation", "--work", str(tmp_path),
                                      "--seed", "1", "--set", "seed=2"])
    with pytest.raises(SystemExit):
        bench.main()
    assert "give one of them" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()


def test_run_state_reuses_finished_runs_continues_stopped_ones_and_starts_the_rest_or_the_rerun_ones(bench, tmp_path):
    finished, stopped, copied = tmp_path / "baseline", tmp_path / "taylorfo", tmp_path / "sauron"
    for root in (finished, stopped):
        (root / "runs" / "checkpoints").mkdir(parents=True)
        (root / "runs" / "checkpoints" / "checkpoint_epoch=3.pt").write_bytes(b"")
    (finished / bench.DONE_FILE).write_text("{}")
    copied.mkdir()  # copied, killed before its first epoch checkpoint
    assert bench.run_state(finished, rerun=None, method="baseline") == "reused"
    assert bench.run_state(stopped, rerun=None, method="taylorfo") == "stopped"
    assert bench.run_state(copied, rerun=None, method="sauron") == "new"
    assert bench.run_state(tmp_path / "tp_l1", rerun=None, method="tp_l1") == "new"
    assert bench.run_state(finished, rerun=["baseline"], method="baseline") == "new"
    assert bench.run_state(stopped, rerun=["baseline"], method="taylorfo") == "reused"


def test_a_stopped_method_continues_in_its_folder_and_a_new_one_starts_from_a_fresh_copy(bench, tmp_path,
                                                                                          monkeypatch):
    source = tmp_path / "bundle"
    (source / "configs").mkdir(parents=True)
    (source / "configs" / "train.json").write_text("{}")
    work = tmp_path / "work"
    (work / "baseline" / "models").mkdir(parents=True)
    (work / "baseline" / "models" / "model_baseline.pt").write_bytes(b"baseline weights")
    split_file = work / "split" / "split.json"
    split_file.parent.mkdir()
    split_file.write_text("{}")
    calls = []
    monkeypatch.setattr(bench, "run_bundle", lambda root, configs, overrides, log, append=False:
                        calls.append((root.name, configs, overrides, append)) or 1.5)
    plan = (["train.json", "prune_taylorfo.json"], ["--num_epochs", "4"], "baseline")

    stopped = work / "taylorfo"
    (stopped / "runs" / "checkpoints").mkdir(parents=True)
    (stopped / "runs" / "checkpoints" / "checkpoint_epoch=2.pt").write_bytes(b"epoch 2")
    assert bench.train_method("taylorfo", plan, "stopped", source, work, split_file, ["--seed", "1"]) == 1.5
    assert (stopped / "runs" / "checkpoints" / "checkpoint_epoch=2.pt").read_bytes() == b"epoch 2"  # not copied over
    assert calls[0] == ("taylorfo", plan[0], ["--num_epochs", "4", "--seed", "1", "--resume", "true"], True)
    assert calls[1][:2] == ("taylorfo", ["train.json", "evaluate.json"])
    assert json.loads((stopped / bench.DONE_FILE).read_text()) == {"train_s": 1.5, "resumed": True}

    calls.clear()
    bench.train_method("taylorfo", plan, "new", source, work, split_file, ["--seed", "1"])
    assert not (stopped / "runs" / "checkpoints").exists()  # started again from a fresh copy of the bundle
    assert (stopped / "runs" / "split.json").is_file() and (stopped / "configs" / "train.json").is_file()
    assert (stopped / "models" / "model_baseline.pt").read_bytes() == b"baseline weights"
    assert calls[0][2][-2:] == ["--resume", "false"] and calls[0][3] is False


def test_the_weight_gradient_peer_takes_taylorfos_settings_but_its_own_criterion_and_no_metric_stop(bench):
    overrides = bench.criterion_peer_overrides(
        "weight_taylor", ["taylorfo#tolerance=0.05", "taylorfo#prune_fraction=0.03"]
    )
    pairs = dict(zip(overrides[::2], overrides[1::2]))
    assert pairs == {"--taylorfo#prune_fraction": "0.03", "--taylorfo#criterion": "weight_gradient",
                     "--taylorfo#macs_normalize": "False", "--taylorfo#tolerance": "$None"}
    assert len(overrides) == 2 * len(pairs)  # no id twice on the command line
