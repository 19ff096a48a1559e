"""
Trained models of one bundle side by side: parameters, MACs, test Dice, CPU latency and checkpoint size, each as a
ratio to the first model (the baseline), as a terminal table, a markdown page and a PNG; and a second table of CPU
latency per deployment runtime (eager PyTorch, TorchScript, ONNX Runtime, OpenVINO: those installed) and input size,
with frames per second and the speed-up over the baseline in the same runtime and size.

    python -m monai_pruning.report.comparison --bundle_root bundles/polyp_endoscopy_segmentation \\
        --model baseline models/model_baseline.pt eval/case_metrics.csv \\
        --model TaylorFO models/taylorfo/model.pt eval/taylorfo/case_metrics.csv \\
        --output report [--latency_size 352 352] [--runtimes eager onnxruntime]

writes ``summary.md``, ``summary.png`` and ``summary.json`` in ``report`` and prints the table. Every checkpoint is
loaded into the bundle's ``network_def`` (reshaped by its pruning record) from ``configs/train.json``; config overrides
the runs were made with go after the options, as for ``python -m monai.bundle run`` (``--roi_size "[64,64]"``). The
test Dice is the mean row of the evaluation's ``case_metrics.csv`` (``configs/evaluate.json``). Latency is timed at
batch 1 at the training size (``example_shape``) and at every ``--latency_size``, in every runtime of ``--runtimes``
(default: all installed; ``pip install -e ".[deploy]"`` adds ONNX Runtime and OpenVINO), in alternating rounds.

The table formatting (cells with a ratio to a reference, intervals, markdown and fixed-width tables) is shared with
the benchmark scripts, so every comparison the project prints reads the same way.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from monai.bundle import ConfigParser
from torch import nn

from monai_pruning.engine import load_pruned_network
from monai_pruning.measure import RUNTIME_LATENCY, available_runtimes, compare_runtimes, measure_complexity, size_label
from monai_pruning.report.atomic_file import atomic_write_text
from monai_pruning.report.plots import _check_png_path, _group_colours, _save

__all__ = [
    "DENSE_RATIO_NOTE",
    "ModelSummary",
    "RUNTIME_LABELS",
    "bundle_network",
    "comparison_table",
    "count_cell",
    "dice_cell",
    "difference_cell",
    "has_dense_ratios",
    "interval_cell",
    "layer_channels",
    "macs_cell",
    "markdown_table",
    "measure_models",
    "megabytes_cell",
    "milliseconds_cell",
    "model_runtimes",
    "percent_cell",
    "plot_comparison",
    "ratio_cell",
    "read_test_dice",
    "runtime_cell",
    "runtime_note",
    "runtime_speed_ups",
    "runtime_table",
    "summary_markdown",
    "text_table",
    "write_summary",
]

SUMMARY_MD, SUMMARY_PNG, SUMMARY_JSON = "summary.md", "summary.png", "summary.json"


# --- cells ----------------------------------------------------------------------------------------------------------
def ratio_cell(value: float, reference: float) -> str:
    """``value / reference`` as ``"0.25x"``."""
    return f"{value / reference:.2f}x"


def _with_ratio(text: str, value: float, reference: float | None) -> str:
    return text if reference is None else f"{text} ({ratio_cell(value, reference)})"


def count_cell(value: float, reference: float | None = None) -> str:
    """A count with thousands separators, and its ratio to ``reference`` when given: ``"250 (0.25x)"``."""
    return _with_ratio(f"{value:,.0f}", value, reference)


def macs_cell(macs: float, reference: float | None = None) -> str:
    """Multiply-accumulates in millions, and the ratio to ``reference`` when given: ``"100.0 M (0.25x)"``."""
    return _with_ratio(f"{macs / 1e6:,.1f} M", macs, reference)


def milliseconds_cell(seconds: float, reference: float | None = None) -> str:
    """Seconds shown in milliseconds, with the ratio to ``reference`` (seconds) when given: ``"8.0 ms (0.40x)"``."""
    return _with_ratio(f"{seconds * 1e3:.1f} ms", seconds, reference)


def megabytes_cell(megabytes: float, reference: float | None = None) -> str:
    """A size in MiB (``"1.23 MB"``), with the ratio to ``reference`` (MiB) when given."""
    return _with_ratio(f"{megabytes:.2f} MB", megabytes, reference)


def difference_cell(value: float, reference: float, digits: int = 4) -> str:
    """``value - reference`` with its sign: ``"-0.0100"``."""
    return f"{value - reference:+.{digits}f}"


def dice_cell(dice: float, reference: float | None = None, per_class: Mapping[str, float] | None = None) -> str:
    """
    A Dice score; in brackets its ratio to and difference from ``reference`` when given, and the per-class scores
    when there are several classes: ``"0.7900 (0.99x, -0.0100; kidney 0.900, tumour 0.680)"``.
    """
    parts = []
    if reference is not None:
        parts.append(f"{ratio_cell(dice, reference)}, {difference_cell(dice, reference)}")
    if per_class is not None and len(per_class) > 1:
        parts.append(", ".join(f"{name} {value:.3f}" for name, value in per_class.items()))
    return f"{dice:.4f}" + (f" ({'; '.join(parts)})" if parts else "")


def interval_cell(mean: float, low: float, high: float, digits: int = 4) -> str:
    """A signed estimate with its interval: ``"+0.0100 [-0.0050, +0.0200]"``."""
    return f"{mean:+.{digits}f} [{low:+.{digits}f}, {high:+.{digits}f}]"


def percent_cell(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage: ``0.75`` -> ``"75.0%"``."""
    return f"{fraction:.{digits}%}"


def runtime_cell(latency_s: float, fps: float, reference_s: float | None = None,
                 over_dense: float | None = None) -> str:
    """
    Latency in milliseconds and samples per second, with the speed-up ``reference_s / latency_s`` when a reference
    latency is given: ``"12.3 ms, 81.3 fps (2.10x)"`` (below 1 fps, three decimals: a whole 3D volume); with
    ``over_dense`` (the latency over that of a dense network of equal MACs) after a semicolon:
    ``"12.3 ms, 81.3 fps (2.10x; 1.05x dense)"``.
    """
    rate = f"{fps:.1f}" if fps >= 1 else f"{fps:.3f}"
    text = f"{latency_s * 1e3:.1f} ms, {rate} fps"
    brackets = [] if reference_s is None else [ratio_cell(reference_s, latency_s)]
    if over_dense is not None:
        brackets.append(f"{over_dense:.2f}x dense")
    return f"{text} ({'; '.join(brackets)})" if brackets else text


#: said under a runtime table whose cells give :func:`runtime_cell`'s ``over_dense``
DENSE_RATIO_NOTE = ("\"x dense\": the model's latency over that of a dense network of equal MACs (uniformly narrower "
                    "widths), timed alternating with it in the same runtime and size; 1.00x: the uneven widths pruning "
                    "left cost no speed.")


def has_dense_ratios(timings: RuntimeTimings) -> bool:
    """Whether any model was timed against a dense network of equal MACs (cells with ``pruned_over_dense``)."""
    return any("pruned_over_dense" in cell for runtimes in timings.values() for sizes in runtimes.values()
               for cell in sizes.values())


# --- tables ---------------------------------------------------------------------------------------------------------
def _checked(header: Sequence[str], rows: Sequence[Sequence[str]], where: str) -> list[list[str]]:
    cells = [[str(cell) for cell in header]]
    for index, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"{where}: row {index} has {len(row)} cells, the header {len(header)}.")
        cells.append([str(cell) for cell in row])
    return cells


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a markdown table (``|`` in a cell is escaped); every row must have a cell per header column."""
    cells = _checked(header, rows, "markdown_table")
    escaped = [[cell.replace("|", "\\|") for cell in line] for line in cells]
    lines = ["| " + " | ".join(escaped[0]) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(line) + " |" for line in escaped[1:]]


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a fixed-width table for a terminal: first column left-aligned, the others right-aligned."""
    cells = _checked(header, rows, "text_table")
    widths = [max(len(line[column]) for line in cells) for column in range(len(header))]

    def render(line: list[str]) -> str:
        rest = [cell.rjust(width) for cell, width in zip(line[1:], widths[1:])]
        return "  ".join([line[0].ljust(widths[0]), *rest]).rstrip()

    return [render(cells[0]), "  ".join("-" * width for width in widths), *(render(line) for line in cells[1:])]


#: how the runtimes of :data:`monai_pruning.measure.RUNTIME_LATENCY` are named in tables
RUNTIME_LABELS = {"eager": "PyTorch eager", "torchscript": "TorchScript", "onnxruntime": "ONNX Runtime",
                  "openvino": "OpenVINO"}

#: ``{model: {runtime: {"HxW": {"latency_s": ..., "fps": ...}}}}``, as :func:`monai_pruning.measure.compare_runtimes`
#: returns it
RuntimeTimings = Mapping[str, Mapping[str, Mapping[str, Mapping[str, float]]]]


def runtime_table(timings: RuntimeTimings) -> tuple[list[str], list[list[str]]]:
    """
    Header and rows of the per-runtime latency table: a row per model, a column per runtime and size the first model
    (the baseline) was timed in, each cell :func:`runtime_cell` with the speed-up over the baseline in the same runtime
    at the same size (a pruned model that keeps its speed-up in every runtime shows the same ratio in each column) and,
    where the timings hold one, ``pruned_over_dense`` (see :data:`DENSE_RATIO_NOTE`). A cell the model was not timed in
    is empty. No columns (``([], [])``) when the baseline has no timings.
    """
    if not timings:
        return [], []
    base = next(iter(timings.values()))
    columns = [(runtime, size) for runtime, sizes in base.items() for size in sizes]
    if not columns:
        return [], []
    rows = []
    for index, (name, runtimes) in enumerate(timings.items()):
        cells = [name]
        for runtime, size in columns:
            timed = runtimes.get(runtime, {}).get(size)
            reference = None if index == 0 else base[runtime][size]["latency_s"]
            cells.append("" if timed is None else runtime_cell(timed["latency_s"], timed["fps"], reference,
                                                                timed.get("pruned_over_dense")))
        rows.append(cells)
    header = ["model", *(f"{RUNTIME_LABELS.get(runtime, runtime)} {size}" for runtime, size in columns)]
    return header, rows


def runtime_speed_ups(timings: RuntimeTimings) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """A copy of ``timings`` with ``"speed_up"`` in every cell: the first model's latency over this model's."""
    base = next(iter(timings.values()), {})
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name, runtimes in timings.items():
        for runtime, sizes in runtimes.items():
            for size, timed in sizes.items():
                cell = dict(timed)
                reference = base.get(runtime, {}).get(size)
                if reference is not None:
                    cell["speed_up"] = reference["latency_s"] / timed["latency_s"]
                result.setdefault(name, {}).setdefault(runtime, {})[size] = cell
    return result


def runtime_note(timings: RuntimeTimings, installed: Sequence[str] | None = None) -> str:
    """
    One line under the runtime table: how far each runtime's output was from eager PyTorch's (largest absolute
    difference over the models and sizes, where measured), and which runtimes are not installed here (``installed``;
    None: :func:`monai_pruning.measure.available_runtimes`) with how to get them.
    """
    installed = available_runtimes() if installed is None else list(installed)
    largest: dict[str, float] = {}
    for runtimes in timings.values():
        for runtime, sizes in runtimes.items():
            for timed in sizes.values():
                if runtime != "eager" and "max_abs_difference" in timed:
                    largest[runtime] = max(largest.get(runtime, 0.0), timed["max_abs_difference"])
    parts = []
    if largest:
        parts.append("Largest output difference from eager PyTorch: " + ", ".join(
            f"{RUNTIME_LABELS.get(runtime, runtime)} {value:.1e}" for runtime, value in largest.items()) + ".")
    missing = [RUNTIME_LABELS.get(runtime, runtime) for runtime in RUNTIME_LATENCY if runtime not in installed]
    if missing:
        parts.append(f"Not installed here, so not timed: {', '.join(missing)} (pip install -e \".[deploy]\" adds "
                     "ONNX Runtime and OpenVINO).")
    return " ".join(parts)


# --- measuring ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSummary:
    """
    One trained model as the comparison reports it.

    Attributes:
        name: the label shown (``"baseline"``, ``"TaylorFO"``).
        checkpoint: path of its checkpoint.
        params: parameter count.
        macs: multiply-accumulates of one forward pass at batch 1 and the bundle's input size.
        latency_s: median CPU latency at batch 1, in seconds (eager PyTorch).
        checkpoint_mb: checkpoint size on disk, MiB.
        dice: mean test Dice over the classes, or None without an evaluation.
        class_dice: test Dice per class.
        channels: output channels of every convolution, in the network's module order.
        runtimes: CPU latency per runtime and input size at batch 1, ``{runtime: {"HxW": {"latency_s", "fps",
            "max_abs_difference"}}}`` (:func:`monai_pruning.measure.compare_runtimes`).
    """

    name: str
    checkpoint: str
    params: int
    macs: int
    latency_s: float
    checkpoint_mb: float
    dice: float | None = None
    class_dice: dict[str, float] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    runtimes: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)


def read_test_dice(csv_path: str | os.PathLike) -> dict[str, float]:
    """
    Test Dice per class (``{"polyp": 0.81}``) from the ``mean`` row of an evaluation's ``case_metrics.csv``: every
    column whose name holds ``dice``, named by what follows ``dice_`` (``test_mean_dice_polyp`` -> ``polyp``).

    Raises:
        FileNotFoundError: no such file (the model was not evaluated).
        ValueError: the file has no ``mean`` row or no Dice column.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation at {path}: run configs/evaluate.json for this model first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    mean_row = next((row for row in rows if row.get("case") == "mean"), None)
    if mean_row is None:
        raise ValueError(f"{path} has no 'mean' row (expected the CaseMetricsReport layout)")
    scores = {key.rsplit("dice_", 1)[-1]: float(value) for key, value in mean_row.items() if key and "dice" in key}
    if not scores:
        raise ValueError(f"{path} has no Dice column")
    return scores


def layer_channels(network: nn.Module) -> dict[str, int]:
    """Output channels of every convolution of ``network``, by module name, in module order."""
    return {name: int(module.out_channels) for name, module in network.named_modules()
            if isinstance(module, nn.modules.conv._ConvNd)}


def measure_models(
    network_def: Callable[[], nn.Module],
    checkpoints: Mapping[str, str | os.PathLike],
    input_shape: Sequence[int],
    case_metrics: Mapping[str, str | os.PathLike] | None = None,
    rounds: int = 3,
    repeats: int = 10,
    num_threads: int = 2,
    runtimes: Sequence[str] = ("eager",),
    latency_shapes: Sequence[Sequence[int]] = (),
) -> list[ModelSummary]:
    """
    Load and measure every checkpoint, in the order given (the first is the reference of every ratio).

    Latency (:func:`monai_pruning.measure.compare_runtimes`): ``rounds`` rounds, each timing every model in every
    runtime at every size in turn (``repeats`` passes after 2 warm-up ones, on the CPU, ``num_threads`` threads,
    batch 1), and the median of each model's round medians: a change in the machine's load during the measurement
    hits all models alike. ``latency_s`` is eager PyTorch's at ``input_shape`` (always timed).

    Args:
        network_def: builds a fresh, unpruned network of the bundle (each checkpoint's record reshapes it).
        checkpoints: ``{name: path}`` of bundle checkpoints (``{"pruning": record, "model": weights}``).
        input_shape: ``(1, channels, *spatial)``: the input the MACs and latency are taken at.
        case_metrics: ``{name: case_metrics.csv}`` of the models' test evaluations; a model without one has no Dice.
        rounds, repeats, num_threads: the latency measurement (each >= 1).
        runtimes: runtimes to time besides eager PyTorch (names of :data:`monai_pruning.measure.RUNTIME_LATENCY`).
        latency_shapes: input shapes to time besides ``input_shape`` (e.g. ``(1, 3, 352, 352)``, a whole frame).
    """
    for value, name in ((rounds, "rounds"), (repeats, "repeats"), (num_threads, "num_threads")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"measure_models: {name} must be an int >= 1, got {value!r}.")
    if not checkpoints:
        raise ValueError("measure_models: no checkpoints to measure.")
    shape = tuple(int(v) for v in input_shape)
    shapes = {size_label(shape): shape}
    for extra in latency_shapes:
        extra = tuple(int(v) for v in extra)
        if len(extra) != len(shape):
            raise ValueError(f"measure_models: latency size {size_label(extra) or extra} has {len(extra) - 2} spatial "
                             f"dimensions, the network's input {len(shape) - 2}.")
        shapes.setdefault(size_label(extra), extra)
    timed_runtimes = ["eager", *(runtime for runtime in runtimes if runtime != "eager")]
    networks: dict[str, nn.Module] = {}
    for name, path in checkpoints.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # trace warnings of an unprunable group say nothing about a loaded model
            networks[name] = load_pruned_network(network_def(), path).float().cpu()
    timings = compare_runtimes(networks, list(shapes.values()), timed_runtimes, rounds=rounds, repeats=repeats,
                               num_threads=num_threads, warmup=2)
    summaries = []
    for name, network in networks.items():
        cost = measure_complexity(network, shape)
        class_dice = read_test_dice(case_metrics[name]) if case_metrics and case_metrics.get(name) else {}
        summaries.append(ModelSummary(
            name=name,
            checkpoint=str(checkpoints[name]),
            params=cost.params,
            macs=cost.macs,
            latency_s=timings[name]["eager"][size_label(shape)]["latency_s"],
            checkpoint_mb=os.path.getsize(checkpoints[name]) / 2**20,
            dice=sum(class_dice.values()) / len(class_dice) if class_dice else None,
            class_dice=class_dice,
            channels=layer_channels(network),
            runtimes=timings[name],
        ))
    return summaries


# --- the comparison -------------------------------------------------------------------------------------------------
COMPARISON_HEADER = ("model", "parameters", "MACs", "test Dice", "CPU latency", "checkpoint")


def comparison_table(models: Sequence[ModelSummary]) -> tuple[list[str], list[list[str]]]:
    """
    Header and rows of the comparison: every value of a model after the first with its ratio to the first (the
    baseline) in brackets; the test Dice also with its difference, and per class when there are several.
    """
    if not models:
        raise ValueError("comparison_table: no models.")
    base = models[0]
    rows = []
    for index, model in enumerate(models):
        first = index == 0
        if model.dice is None:
            dice = "-"
        else:
            reference = None if first or base.dice is None else base.dice
            dice = dice_cell(model.dice, reference, model.class_dice)
        rows.append([
            model.name,
            count_cell(model.params, None if first else base.params),
            macs_cell(model.macs, None if first else base.macs),
            dice,
            milliseconds_cell(model.latency_s, None if first else base.latency_s),
            megabytes_cell(model.checkpoint_mb, None if first else base.checkpoint_mb),
        ])
    return list(COMPARISON_HEADER), rows


def measurement_note(input_shape: Sequence[int], num_threads: int, rounds: int, repeats: int) -> str:
    """What the numbers are: the ratio convention, the input the MACs and latency are taken at, how latency is timed."""
    return (f"Ratios in brackets are to the first row (the baseline); test Dice also as a difference. MACs and CPU "
            f"latency at batch 1, {size_label(input_shape)}; latency: eager PyTorch, {num_threads} threads, median "
            f"of {rounds} rounds of {repeats} passes, every model, runtime and size in turn, on this machine under its "
            "load at the time.")


RUNTIME_HEADING = ("CPU latency per runtime and input size, batch 1 (in brackets: the speed-up over the first row in "
                   "the same runtime and size):")


def model_runtimes(models: Sequence[ModelSummary]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """``{model name: its runtime timings}``, the input of :func:`runtime_table`."""
    return {model.name: model.runtimes for model in models}


def summary_markdown(models: Sequence[ModelSummary], title: str, notes: Sequence[str], measurement: str,
                     image: str | None = SUMMARY_PNG, installed: Sequence[str] | None = None) -> str:
    """
    The markdown page: title, notes (one paragraph each), the table, how it was measured, the per-runtime latency
    table with its note (when the models were timed in runtimes; ``installed`` as :func:`runtime_note`), the
    checkpoints, the image.
    """
    header, rows = comparison_table(models)
    lines = [f"# {title}", ""]
    for note in notes:
        lines += [note, ""]
    lines += markdown_table(header, rows)
    lines += ["", measurement]
    runtime_header, runtime_rows = runtime_table(model_runtimes(models))
    if runtime_header:
        note = runtime_note(model_runtimes(models), installed)
        lines += ["", RUNTIME_HEADING, "", *markdown_table(runtime_header, runtime_rows)] + (["", note] if note else [])
    lines += ["", "Checkpoints:", ""]
    lines += [f"- {model.name}: `{model.checkpoint}`" for model in models]
    if image is not None:
        lines += ["", f"![test Dice against MACs, and channels per layer]({image})"]
    return "\n".join(lines) + "\n"


def plot_comparison(models: Sequence[ModelSummary], path: str | os.PathLike, title: str | None = None) -> Path:
    """
    Two panels: test Dice against MACs, each model labelled with its CPU latency; and the output channels of every
    convolution (in network order) of each model, the first (baseline) as grey bars.
    """
    destination = _check_png_path(path, "plot_comparison")
    if not models:
        raise ValueError("plot_comparison: no models.")
    figure = Figure(figsize=(13, 4.8), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=[1, 1.6])
    colours = ["grey"] + _group_colours(max(len(models) - 1, 1))
    for model, colour in zip(models, colours):
        if model.dice is None:
            continue
        left.scatter([model.macs / 1e6], [model.dice], color=colour, s=50, zorder=3)
        left.annotate(f"{model.name}\n{model.latency_s * 1e3:.1f} ms", (model.macs / 1e6, model.dice),
                      xytext=(6, 4), textcoords="offset points", fontsize="small")
    left.set(xlabel="MACs per image (millions)", ylabel="test Dice", title="test Dice vs MACs (label: CPU latency)")
    left.set_xlim(left=0)
    left.margins(x=0.25, y=0.25)
    left.grid(True, alpha=0.3)

    layers = list(models[0].channels)
    positions = range(len(layers))
    right.bar(positions, [models[0].channels[name] for name in layers], color="lightgrey", label=models[0].name)
    for model, colour in zip(models[1:], colours[1:]):
        right.plot(positions, [model.channels.get(name, float("nan")) for name in layers], color=colour,
                   marker="o", markersize=3, linewidth=1.2, label=model.name)
    right.set_xticks(list(positions), layers, rotation=90, fontsize=6)
    right.set(ylabel="output channels", title="channels per convolution, before and after pruning")
    right.legend(fontsize="small")
    right.grid(True, axis="y", alpha=0.3)
    if title:
        figure.suptitle(title)
    return _save(figure, destination, "plot_comparison")


def write_summary(models: Sequence[ModelSummary], output_dir: str | os.PathLike, title: str,
                  notes: Sequence[str] = (), measurement: str = "",
                  installed: Sequence[str] | None = None) -> dict[str, Path]:
    """
    Write ``summary.md``, ``summary.png`` and ``summary.json`` (the measured values; every runtime timing also with
    its ``speed_up`` over the first model, and the runtime note) to ``output_dir``.
    """
    folder = Path(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"png": plot_comparison(models, folder / SUMMARY_PNG, title=title)}
    page = summary_markdown(models, title, notes, measurement, installed=installed)
    paths["md"] = atomic_write_text(folder / SUMMARY_MD, page)
    speed_ups = runtime_speed_ups(model_runtimes(models))
    content = {"title": title, "notes": list(notes), "measurement": measurement,
               "runtime_note": runtime_note(model_runtimes(models), installed),
               "models": [{**asdict(model), "runtimes": speed_ups.get(model.name, {})} for model in models]}
    paths["json"] = atomic_write_text(folder / SUMMARY_JSON, json.dumps(content, indent=2) + "\n")
    return paths


# --- command line ---------------------------------------------------------------------------------------------------
def _override_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_overrides(tokens: Sequence[str]) -> dict[str, Any]:
    """``["--roi_size", "[64,64]", ...]`` -> ``{"roi_size": [64, 64]}``: config overrides as ``monai.bundle`` takes."""
    if len(tokens) % 2 or any(not token.startswith("--") for token in tokens[::2]):
        raise ValueError(f"config overrides must come as '--id value' pairs, got {' '.join(tokens)!r}")
    return {key[2:]: _override_value(value) for key, value in zip(tokens[::2], tokens[1::2])}


def bundle_network(bundle_root: str | os.PathLike, config_file: str = "configs/train.json",
                   overrides: Mapping[str, Any] | None = None) -> tuple[Callable[[], nn.Module], tuple[int, ...]]:
    """
    The bundle's ``network_def`` (a function building a fresh one) and its batch-1 input shape (``example_shape``),
    read from ``config_file`` in ``bundle_root`` with ``overrides`` applied.
    """
    root = Path(bundle_root)
    parser = ConfigParser()
    parser.read_config(str(root / config_file))
    parser["bundle_root"] = str(root)
    parser.update(dict(overrides or {}))
    shape = tuple(int(v) for v in parser.get_parsed_content("example_shape"))
    return (lambda: parser.get_parsed_content("network_def", lazy=False)), (1, *shape[1:])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--bundle_root", required=True, help="the bundle folder; other paths are relative to it")
    parser.add_argument("--model", nargs=3, action="append", required=True, metavar=("NAME", "CHECKPOINT", "CSV"),
                        help="a model: its label, checkpoint and evaluation case_metrics.csv (repeat; first: baseline)")
    parser.add_argument("--output", default="report", help="folder for summary.md/.png/.json (default: report)")
    parser.add_argument("--title", default=None, help="page title (default: the bundle folder's name)")
    parser.add_argument("--note", action="append", default=[], help="a paragraph above the table (repeatable)")
    parser.add_argument("--config_file", default="configs/train.json", help="config with network_def, example_shape")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the latency (default 2)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating latency rounds (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per round (default 10)")
    parser.add_argument("--runtimes", nargs="+", choices=list(RUNTIME_LATENCY), default=None,
                        help="runtimes to time the latency in (default: all installed here; eager PyTorch always)")
    parser.add_argument("--latency_size", nargs="+", type=int, action="append", default=[], metavar="N",
                        help="an input size to time besides the training size, one value per spatial dimension "
                             "(repeatable), e.g. --latency_size 352 352")
    args, rest = parser.parse_known_args(argv)
    root = Path(args.bundle_root)
    try:
        network_def, shape = bundle_network(root, args.config_file, parse_overrides(rest))
        for size in args.latency_size:
            if len(size) != len(shape) - 2:
                raise ValueError(f"--latency_size {' '.join(map(str, size))}: give one value per spatial dimension "
                                 f"({len(shape) - 2} here)")
        checkpoints = {name: root / checkpoint for name, checkpoint, _ in args.model}
        for name, path in checkpoints.items():
            if not path.is_file():
                raise FileNotFoundError(f"no checkpoint for {name} at {path}")
        metrics = {name: root / csv_file for name, _, csv_file in args.model}
        runtimes = args.runtimes if args.runtimes is not None else available_runtimes()
        models = measure_models(network_def, checkpoints, shape, metrics, args.rounds, args.repeats, args.threads,
                                runtimes=runtimes, latency_shapes=[shape[:2] + tuple(s) for s in args.latency_size])
    except (FileNotFoundError, ValueError) as err:
        parser.exit(1, f"ERROR: {err}\n")
    title = args.title or root.resolve().name
    measurement = measurement_note(shape, args.threads, args.rounds, args.repeats)
    paths = write_summary(models, root / args.output, title, args.note, measurement)
    header, rows = comparison_table(models)
    print("\n".join(text_table(header, rows)))
    print(measurement)
    runtime_header, runtime_rows = runtime_table(model_runtimes(models))
    if runtime_header:
        print(f"\n{RUNTIME_HEADING}")
        print("\n".join(text_table(runtime_header, runtime_rows)))
        note = runtime_note(model_runtimes(models))
        if note:
            print(note)
    print(f"summary: {paths['md']} (figure {paths['png'].name}, values {paths['json'].name})")


if __name__ == "__main__":
    main(sys.argv[1:])
