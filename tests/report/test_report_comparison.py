"""The comparison report: cells and tables shared with the benchmarks, measuring checkpoints, the summary files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner, PruningRecord
from monai_pruning.measure import measure_complexity
from monai_pruning.report.comparison import (
    ModelSummary,
    bundle_network,
    comparison_table,
    count_cell,
    dice_cell,
    has_dense_ratios,
    interval_cell,
    macs_cell,
    main,
    markdown_table,
    measure_models,
    megabytes_cell,
    milliseconds_cell,
    parse_overrides,
    percent_cell,
    read_test_dice,
    runtime_cell,
    runtime_note,
    runtime_speed_ups,
    runtime_table,
    text_table,
    write_summary,
)

REPO = Path(__file__).resolve().parents[2]
SHAPE = (1, 1, 32, 32)


def test_cells_give_the_value_and_its_ratio_to_the_reference_when_there_is_one():
    assert count_cell(1000) == "1,000" and count_cell(250, 1000) == "250 (0.25x)"
    assert macs_cell(400e6) == "400.0 M" and macs_cell(100e6, 400e6) == "100.0 M (0.25x)"
    assert milliseconds_cell(0.008, 0.020) == "8.0 ms (0.40x)" and megabytes_cell(1.5, 3.0) == "1.50 MB (0.50x)"
    assert dice_cell(0.79) == "0.7900" and dice_cell(0.79, 0.80) == "0.7900 (0.99x, -0.0100)"
    several = dice_cell(0.79, 0.80, {"kidney": 0.9, "tumour": 0.68})
    assert several == "0.7900 (0.99x, -0.0100; kidney 0.900, tumour 0.680)"
    assert dice_cell(0.79, per_class={"polyp": 0.79}) == "0.7900"  # one class: nothing to add
    assert interval_cell(0.01, -0.005, 0.02) == "+0.0100 [-0.0050, +0.0200]" and percent_cell(0.755) == "75.5%"


def test_markdown_and_text_tables_hold_the_same_cells_and_refuse_a_row_of_the_wrong_length():
    header, rows = ["model", "MACs"], [["baseline", "7.2 M"], ["a|b", "3.1 M (0.43x)"]]
    assert markdown_table(header, rows) == ["| model | MACs |", "|---|---|", "| baseline | 7.2 M |",
                                            "| a\\|b | 3.1 M (0.43x) |"]
    # columns as wide as their widest cell, two spaces apart: first left-aligned, the others right-aligned
    assert text_table(header, rows) == ["model" + " " * 14 + "MACs", "-" * 8 + "  " + "-" * 13,
                                        "baseline" + " " * 10 + "7.2 M", "a|b" + " " * 7 + "3.1 M (0.43x)"]
    with pytest.raises(ValueError, match="^markdown_table: row 0 has 1 cells, the header 2"):
        markdown_table(header, [["only one"]])


def _timed(ms: float, difference: float = 0.0) -> dict:
    return {"latency_s": ms / 1e3, "fps": 1e3 / ms, "max_abs_difference": difference}


TIMINGS = {
    "baseline": {"eager": {"128x128": _timed(10.0), "352x352": _timed(80.0)},
                 "onnxruntime": {"128x128": _timed(5.0, 2e-6)}},
    "Sauron": {"eager": {"128x128": _timed(5.0), "352x352": _timed(20.0)},
               "onnxruntime": {"128x128": _timed(4.0, 3e-6)}},
    "TaylorFO": {"eager": {"128x128": _timed(8.0)}},
}


def test_runtime_table_gives_every_runtime_and_size_with_fps_and_the_speed_up_in_the_same_runtime_and_size():
    assert runtime_cell(0.0123, 81.3, 0.02583) == "12.3 ms, 81.3 fps (2.10x)"
    assert runtime_cell(2.0, 0.5) == "2000.0 ms, 0.500 fps"  # a whole 3D volume: fps below 1 keeps its digits
    assert runtime_cell(0.0123, 81.3, 0.02583, over_dense=1.049) == "12.3 ms, 81.3 fps (2.10x; 1.05x dense)"
    assert not has_dense_ratios(TIMINGS)
    dense = {"baseline": TIMINGS["baseline"],
             "Sauron": {"eager": {"128x128": {**_timed(5.0), "pruned_over_dense": 1.2}}}}
    assert has_dense_ratios(dense) and runtime_table(dense)[1][1][1] == "5.0 ms, 200.0 fps (2.00x; 1.20x dense)"
    header, rows = runtime_table(TIMINGS)
    assert header == ["model", "PyTorch eager 128x128", "PyTorch eager 352x352", "ONNX Runtime 128x128"]
    assert rows[0] == ["baseline", "10.0 ms, 100.0 fps", "80.0 ms, 12.5 fps", "5.0 ms, 200.0 fps"]
    assert rows[1] == ["Sauron", "5.0 ms, 200.0 fps (2.00x)", "20.0 ms, 50.0 fps (4.00x)", "4.0 ms, 250.0 fps (1.25x)"]
    assert rows[2] == ["TaylorFO", "8.0 ms, 125.0 fps (1.25x)", "", ""]  # not timed there: an empty cell
    assert runtime_table({"baseline": {}}) == ([], []) and runtime_table({}) == ([], [])
    speed_ups = runtime_speed_ups(TIMINGS)
    assert speed_ups["Sauron"]["eager"]["352x352"]["speed_up"] == pytest.approx(4.0)
    assert speed_ups["baseline"]["onnxruntime"]["128x128"] == {**TIMINGS["baseline"]["onnxruntime"]["128x128"],
                                                               "speed_up": 1.0}


def test_runtime_note_gives_each_runtimes_largest_output_difference_and_what_is_not_installed():
    note = runtime_note(TIMINGS, installed=["eager", "torchscript", "onnxruntime"])
    assert note == ("Largest output difference from eager PyTorch: ONNX Runtime 3.0e-06. Not installed here, so not "
                    "timed: OpenVINO (pip install -e \".[deploy]\" adds ONNX Runtime and OpenVINO).")
    assert runtime_note({"baseline": {"eager": {"8x8": _timed(1.0)}}},
                        installed=["eager", "torchscript", "onnxruntime", "openvino"]) == ""


def test_test_dice_is_read_per_class_from_the_mean_row(tmp_path):
    csv_path = tmp_path / "case_metrics.csv"
    csv_path.write_text("case,test_mean_dice_kidney,test_mean_dice_tumour,test_hd95_kidney\n"
                        "case_1,0.7,0.1,3.0\nmean,0.75,0.05,3.5\n")
    assert read_test_dice(csv_path) == {"kidney": 0.75, "tumour": 0.05}
    csv_path.write_text("case,test_mean_dice_polyp\ncase_1,0.7\n")
    with pytest.raises(ValueError, match="no 'mean' row"):
        read_test_dice(csv_path)
    with pytest.raises(FileNotFoundError, match="no evaluation at"):
        read_test_dice(tmp_path / "missing.csv")


def _unet() -> UNet:
    torch.manual_seed(0)
    return UNet(2, 1, 2, (4, 8, 16), (2, 2), num_res_units=1)


def _checkpoints(folder: Path) -> dict[str, Path]:
    """An unpruned checkpoint and one with half of two groups' channels cut."""
    paths = {}
    for name, cut in (("baseline", False), ("pruned", True)):
        network = _unet()
        if cut:
            pruner = ChannelPruner(network, (2, *SHAPE[1:]))
            pruner.cut({group: list(range(pruner.widths()[group] // 2)) for group in list(pruner.prunable_groups)[:2]})
        paths[name] = folder / f"{name}.pt"
        torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, paths[name])
    return paths


def test_measured_models_carry_the_checkpoints_widths_costs_sizes_and_test_dice(tmp_path):
    paths = _checkpoints(tmp_path)
    (tmp_path / "baseline.csv").write_text("case,test_mean_dice_polyp\nmean,0.8\n")
    (tmp_path / "pruned.csv").write_text("case,test_mean_dice_polyp\nmean,0.7\n")
    models = measure_models(_unet, paths, SHAPE, {name: tmp_path / f"{name}.csv" for name in paths},
                            rounds=1, repeats=1, num_threads=1, runtimes=["torchscript"],
                            latency_shapes=[(1, 1, 48, 40)])
    baseline, pruned = models
    assert [m.name for m in models] == ["baseline", "pruned"] and baseline.dice == 0.8 and pruned.dice == 0.7
    assert baseline.macs == measure_complexity(_unet(), SHAPE).macs and pruned.macs < baseline.macs
    assert pruned.params < baseline.params and pruned.checkpoint_mb < baseline.checkpoint_mb
    assert pruned.checkpoint_mb == paths["pruned"].stat().st_size / 2**20 and pruned.latency_s > 0
    assert list(pruned.channels) == list(baseline.channels)  # the same convolutions, in the same order
    assert sum(pruned.channels.values()) < sum(baseline.channels.values())
    # eager always, then the runtimes asked for; the training size first, then the other sizes
    assert {name: list(sizes) for name, sizes in pruned.runtimes.items()} == {"eager": ["32x32", "48x40"],
                                                                             "torchscript": ["32x32", "48x40"]}
    assert pruned.latency_s == pruned.runtimes["eager"]["32x32"]["latency_s"]
    with pytest.raises(ValueError, match="^measure_models: latency size 48 has 1 spatial dimensions, the network's"):
        measure_models(_unet, paths, SHAPE, latency_shapes=[(1, 1, 48)])


def _summary(name: str, params: int, macs: int, dice: float, latency_s: float, megabytes: float) -> ModelSummary:
    return ModelSummary(name, f"{name}.pt", params, macs, latency_s, megabytes, dice, {"polyp": dice},
                        {"conv0": 16 if name == "baseline" else 8, "conv1": 2})


def test_comparison_rows_are_ratios_to_the_first_model_and_the_summary_files_hold_them(tmp_path):
    models = [_summary("baseline", 1000, 400_000_000, 0.80, 0.020, 2.0),
              _summary("TaylorFO", 250, 100_000_000, 0.79, 0.008, 0.5)]
    header, rows = comparison_table(models)
    assert header == ["model", "parameters", "MACs", "test Dice", "CPU latency", "checkpoint"]
    assert rows[0] == ["baseline", "1,000", "400.0 M", "0.8000", "20.0 ms", "2.00 MB"]
    assert rows[1] == ["TaylorFO", "250 (0.25x)", "100.0 M (0.25x)", "0.7900 (0.99x, -0.0100)", "8.0 ms (0.40x)",
                       "0.50 MB (0.25x)"]
    paths = write_summary(models, tmp_path / "report", "demo", notes=["Synthetic data."], measurement="How.")
    page = paths["md"].read_text()
    assert page.startswith("# demo\n\nSynthetic data.\n") and "\n".join(markdown_table(header, rows)) in page
    assert "![" in page and paths["png"].stat().st_size > 0
    assert [m["name"] for m in json.loads(paths["json"].read_text())["models"]] == ["baseline", "TaylorFO"]


def test_overrides_are_id_value_pairs_read_as_python_literals_where_they_are_ones():
    assert parse_overrides(["--roi_size", "[64,64]", "--dataset_dir", "/data/kvasir"]) == {
        "roi_size": [64, 64], "dataset_dir": "/data/kvasir"}
    with pytest.raises(ValueError, match="'--id value' pairs"):
        parse_overrides(["--roi_size"])


def test_the_command_line_measures_bundle_checkpoints_with_the_runs_overrides(tmp_path, capsys, monkeypatch):
    root = tmp_path / "bundle"
    shutil.copytree(REPO / "bundles" / "polyp_endoscopy_segmentation" / "configs", root / "configs")
    overrides = ["--roi_size", "[32,32]", "--network_def#filters", "[4,8,8,16,16]"]
    network_def, shape = bundle_network(root, overrides=parse_overrides(overrides))
    assert shape == (1, 3, 32, 32)
    network = network_def()
    (root / "models").mkdir()
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()},
               root / "models" / "model.pt")
    (root / "eval").mkdir()
    (root / "eval" / "case_metrics.csv").write_text("case,test_mean_dice_polyp\nmean,0.5\n")
    arguments = ["--bundle_root", str(root), "--model", "baseline", "models/model.pt", "eval/case_metrics.csv",
                 "--rounds", "1", "--repeats", "1", "--threads", "1"]
    monkeypatch.setattr("monai_pruning.report.comparison.available_runtimes", lambda: ["eager", "torchscript"])
    main(arguments + ["--latency_size", "64", "48"] + overrides)  # default runtimes: those installed
    output = capsys.readouterr().out
    assert output.splitlines()[2].startswith("baseline") and "batch 1, 32x32" in output
    header = r"^model +PyTorch eager 32x32 +PyTorch eager 64x48 +TorchScript 32x32 +TorchScript 64x48$"
    assert re.search(header, output, re.MULTILINE)
    assert re.search(r"^baseline +[\d.]+ ms, [\d.]+ fps ", output, re.MULTILINE)
    assert "Not installed here, so not timed: ONNX Runtime, OpenVINO" in output
    assert (root / "report" / "summary.md").is_file() and (root / "report" / "summary.png").is_file()
    page = (root / "report" / "summary.md").read_text()
    assert "| model | PyTorch eager 32x32 | PyTorch eager 64x48 | TorchScript 32x32 | TorchScript 64x48 |" in page
    summary = json.loads((root / "report" / "summary.json").read_text())
    assert summary["runtime_note"].startswith("Largest output difference from eager PyTorch: TorchScript ")
    timed = summary["models"][0]["runtimes"]["torchscript"]["64x48"]
    assert timed["speed_up"] == 1.0 and timed["fps"] == pytest.approx(1 / timed["latency_s"])
    with pytest.raises(SystemExit):
        main(arguments + ["--latency_size", "352"] + overrides)
    assert capsys.readouterr().err == "ERROR: --latency_size 352: give one value per spatial dimension (2 here)\n"
    with pytest.raises(SystemExit) as stop:
        main(arguments[:3] + ["missing", "models/none.pt", "eval/case_metrics.csv"] + overrides)
    assert stop.value.code == 1
    assert capsys.readouterr().err == f"ERROR: no checkpoint for missing at {root / 'models' / 'none.pt'}\n"
