"""Side-by-side benchmark of a bundle: unpruned baseline, Sauron, TaylorFO and Torch-Pruning's peers, in one run.

    pip install -e ".[benchmark]"      # adds torch-pruning, for the peers only
    python benchmarks/pruning_benchmark.py polyp_endoscopy_segmentation --work /tmp/bench [--epochs 60]
    # every run on other data, e.g. 48 demo cases instead of the bundle's default: --set demo_cases=48
    # another training seed on the same data and split (one --work per seed; benchmarks/seed_summary.py pairs them):
    python benchmarks/pruning_benchmark.py kidney_ct_segmentation --work /tmp/bench/seed1 --seed 1

Steps (each a real ``python -m monai.bundle run`` on a private copy of the bundle, so nothing in the repository is
touched), all on one case split made once (``<work>/split/split.json``, with the bundle's ``seed`` after ``--set``,
and the demo phantoms written with it) and copied into every run, so ``--seed`` changes the training seed only:
train the baseline for ``--epochs``; train with ``prune_sauron.json`` for the same number of epochs from
scratch; fine-tune the baseline with ``prune_taylorfo.json``, and without pruning (``baseline_ft``, the same schedule:
``benchmarks/finetune_dense.json``); then Torch-Pruning's Taylor (weight x gradient) and L1
pruning of the same baseline with the same schedule, pruned to TaylorFO's final MACs over as many epochs as TaylorFO
took (``benchmarks/prune_torch_pruning.json``), and Torch-Pruning's Taylor criterion on our engine (``weight_taylor``:
TaylorFO's handler and schedule ranking by |weight x gradient|, to TaylorFO's final MACs, no metric stop); evaluate
each final ``models/model.pt`` on the held-out split. Then, per model: parameters, MACs (batch 1 at the bundle's
``roi_size``), median CPU latency (batch 1, ``--threads`` threads), checkpoint size on disk, peak inference memory,
mean test Dice; and the latency of a dense network of the same architecture whose widths are scaled uniformly to the
pruned MACs; for the baseline, the latency of its architecture with every prunable group at ``--floor_channels``
(what no pruning can beat). For Sauron also: the time of a training iteration with and without its regulariser and
scoring at equal (full) width, and its first vs last epoch times. Ratios are against the baseline. Writes
``results.json`` and ``results.md`` to ``--work``.

Deployment runtimes: every model's CPU latency at batch 1 with ``--threads`` threads in eager PyTorch, TorchScript,
ONNX Runtime and OpenVINO (those installed: ``pip install -e ".[deploy]"``), at the training size and at every
``--runtime_size`` (default 352x352 for a 2D bundle, the polyp frames of the TaylorFO paper), every model, runtime and
size in turn over ``--rounds`` alternating rounds, with frames per second and the speed-up over the baseline in the
same runtime, in a table of its own (the comparison report's format).

Resumable: a method trained and evaluated is marked (``<work>/<method>/done.json``) and reused by the next command
on the same ``--work``; a method whose command was stopped while it trained continues from its last epoch checkpoint
(the bundle's ``--resume true``); ``--rerun METHOD ...`` trains those again from the start and reuses the others.
Latencies are measured after the last run, so measure again with ``--measure_only`` on an idle machine; with
``--no_latency`` nothing is timed (seed repeats trained beside other runs: Dice, parameters, MACs and checkpoint sizes
only, which is all ``seed_summary.py`` reads).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import statistics
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Events
from monai.bundle import ConfigParser
from monai.engines import SupervisedTrainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_pruning.engine import ChannelPruner, load_pruned_network  # noqa: E402
from monai_pruning.handlers import SauronPruning  # noqa: E402
from monai_pruning.measure import (  # noqa: E402
    RUNTIME_LATENCY,
    available_runtimes,
    compare_runtimes,
    measure_complexity,
    measure_latency,
    peak_inference_memory_mb,
)
from monai_pruning.report.comparison import (  # noqa: E402
    DENSE_RATIO_NOTE,
    count_cell,
    dice_cell,
    difference_cell,
    has_dense_ratios,
    macs_cell,
    markdown_table,
    megabytes_cell,
    milliseconds_cell,
    parse_overrides,
    percent_cell,
    ratio_cell,
    runtime_note,
    runtime_table,
)


# Torch-Pruning peers: importance and ranking (see benchmarks/torch_pruning_peer.py for why L1 ranks per layer)
PEERS = {"tp_taylor": ("taylor", True), "tp_l1": ("l1", False)}
#: Torch-Pruning's Taylor criterion (|weight x gradient|, GroupTaylor's defaults) on our engine, with TaylorFO's
#: schedule to TaylorFO's final MACs and no metric stop: the issue's fallback where that peer does not train.
CRITERION_PEERS = {"weight_taylor": ("--taylorfo#criterion", "weight_gradient", "--taylorfo#macs_normalize", "False",
                                     "--taylorfo#tolerance", "$None")}
#: The peers driven to TaylorFO's final MACs, with which it is compared at equal MACs in every seed summary.
TAYLORFO_PEERS = (*PEERS, *CRITERION_PEERS)


DONE_FILE = "done.json"  # written into a method's folder once it is trained and evaluated


def run_state(root: Path, rerun: list[str] | None, method: str) -> str:
    """
    What the benchmark does with one method's folder: ``"reused"`` (trained and evaluated by an earlier command, or
    left out of ``--rerun``), ``"stopped"`` (a command was stopped while it trained: continue from its last epoch
    checkpoint) or ``"new"`` (train from the start: no folder yet, or named by ``--rerun``). So a benchmark of
    several hours can be stopped at any point and the same command goes on where it stopped.
    """
    if rerun is not None:
        return "new" if method in rerun else "reused"
    if (root / DONE_FILE).is_file():
        return "reused"
    if any((root / "runs" / "checkpoints").glob("checkpoint_epoch=*.pt")):
        return "stopped"
    return "new"


def run_bundle(root: Path, configs: list[str], overrides: list[str], log: Path, append: bool = False) -> float:
    """
    Run one bundle command (``benchmarks/`` importable, for the peer handler); returns its wall time in seconds.
    ``append``: add to ``log`` (a resumed run) instead of starting it again.
    """
    files = "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
               "--meta_file", "configs/metadata.json", *overrides]
    start = time.perf_counter()
    with open(log, "a" if append else "w") as out:
        if append:
            out.write(f"\n$ {' '.join(command)}\n")
            out.flush()
        paths = [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, paths)))
        result = subprocess.run(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)} (see {log})")
    return time.perf_counter() - start


def train_method(method: str, plan: tuple[list[str], list[str], str | None], state: str, source: Path,
                 work: Path, split_file: Path, shared: list[str]) -> float:
    """
    Train ``method`` in ``<work>/<method>`` and evaluate it on the test split; ``state`` is :func:`run_state`'s:
    ``"new"`` copies the bundle, the benchmark's overlays, the split and the start checkpoint afresh, ``"stopped"``
    continues the run in its folder from its last checkpoint. ``plan`` is (configs, overrides, the method whose
    ``models/model_baseline.pt`` it starts from). Marks the folder done; returns this command's training time (s).
    """
    configs, overrides, starts_from = plan
    root = work / method
    if state == "new":
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("data", "runs", "models", "eval", "predictions"))
        (root / "runs").mkdir()
        shutil.copy(split_file, root / "runs" / split_file.name)  # the bundle reuses it instead of splitting by seed
        for overlay in configs:  # the benchmark's own overlays
            if (REPO / "benchmarks" / overlay).is_file():
                shutil.copy(REPO / "benchmarks" / overlay, root / "configs")
        if starts_from is not None:
            (root / "models").mkdir()
            # the baseline run's own copy of its final weights: what prune_taylorfo.json starts from
            shutil.copy2(work / starts_from / "models" / "model_baseline.pt", root / "models" / "model_baseline.pt")
    if method in PEERS:  # equal MACs and as many pruning epochs as TaylorFO took
        taylor_rows = history_rows(work / "taylorfo")
        overrides = overrides + ["--peer#target_macs", str(taylor_rows[-1]["macs"]),
                                 "--peer#steps", str(max(1, taylor_rows[-1]["steps"]))]
    if method in CRITERION_PEERS:
        overrides = overrides + taylorfo_macs_target(history_rows(work / "taylorfo"))
    resume = ["--resume", "true" if state == "stopped" else "false"]
    train_s = run_bundle(root, configs, overrides + shared + resume, work / f"{method}_train.log",
                         append=state == "stopped")
    run_bundle(root, ["train.json", "evaluate.json"], shared, work / f"{method}_evaluate.log")
    (root / DONE_FILE).write_text(json.dumps({"train_s": train_s, "resumed": state == "stopped"}))
    return train_s


def network_def(bundle: Path, overrides: dict[str, Any] | None = None) -> torch.nn.Module:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    for key, value in (overrides or {}).items():
        parser[key] = value
    return parser.get_parsed_content("network_def")


def load_model(bundle: str, checkpoint: str) -> torch.nn.Module:
    """The bundle's network, reshaped to and loaded from ``checkpoint``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_pruned_network(network_def(Path(bundle)), checkpoint)


def class_dice(csv_path: Path) -> dict[str, float]:
    """Mean test Dice per class (``{"polyp": 0.81}``) from the ``mean`` row of an ``eval/case_metrics.csv``."""
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    mean_row = next(r for r in rows if r["case"] == "mean")
    return {k.rsplit("dice_", 1)[-1]: float(v) for k, v in mean_row.items() if "dice" in k}


def mean_dice(per_class: dict[str, float]) -> float:
    """Mean of :func:`class_dice`'s per-class values: the number the targets are stated in."""
    return sum(per_class.values()) / len(per_class)


def dense_equivalent(bundle: Path, target_macs: int, shape: tuple[int, ...]) -> tuple[torch.nn.Module, float]:
    """The baseline architecture with every width scaled by one factor, chosen so its MACs match ``target_macs``."""
    base = ConfigParser()
    base.read_config(str(bundle / "configs" / "inference.json"))
    filters = base["network_def"]["filters"]
    low, high = 0.01, 1.0
    for _ in range(20):
        mid = (low + high) / 2
        net = network_def(bundle, {"network_def::filters": [max(1, round(f * mid)) for f in filters]})
        if measure_complexity(net, shape).macs > target_macs:
            high = mid
        else:
            low = mid
    scale = (low + high) / 2
    return network_def(bundle, {"network_def::filters": [max(1, round(f * scale)) for f in filters]}), scale


def narrowest_network(bundle: Path, channels: int, shape: tuple[int, ...]) -> torch.nn.Module:
    """
    The baseline architecture with every prunable group cut to ``channels`` (rounded up to whole GroupNorm groups):
    the smallest network filter pruning can leave. Its latency is what no pruning removes (the per-layer cost of
    the convolutions, norms and activations that stay, and of the output heads), a bound on any pruned speed-up.
    """
    network = network_def(bundle)
    pruner = ChannelPruner(network, (2, *shape[1:]), min_channels=channels)
    widths = pruner.widths()
    pruner.cut({name: range(widths[name] - pruner.removable(name), widths[name]) for name in widths})
    return network


class IterationClock:
    """
    Mean wall time of the iterations of every epoch, from ITERATION_STARTED to ITERATION_COMPLETED (attached last,
    so it includes the other handlers' per-iteration work): a handler's tracing when a run starts and its epoch-end
    bookkeeping are per-run and per-epoch costs, not part of an iteration.
    """

    def __init__(self) -> None:
        self.epoch_means: list[float] = []
        self._spans: list[float] = []
        self._start = 0.0

    def attach(self, engine: SupervisedTrainer) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda _: self._spans.clear())
        engine.add_event_handler(Events.ITERATION_STARTED, self._started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._completed)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)

    def _started(self, _: SupervisedTrainer) -> None:
        self._start = time.perf_counter()

    def _completed(self, _: SupervisedTrainer) -> None:
        self._spans.append(time.perf_counter() - self._start)

    def _epoch_completed(self, _: SupervisedTrainer) -> None:
        self.epoch_means.append(statistics.mean(self._spans))


def sauron_iteration_overhead(bundle: Path, iterations: int, rounds: int, threads: int,
                              compile: bool = False) -> dict[str, float]:
    """
    Seconds per training iteration of the dense baseline network, with and without Sauron's regulariser and its
    delta_prune scoring on every batch, at equal (full) width: the thresholds are held at 0 so nothing is cut.

    Both trainers run the bundle's network, loss and optimizer on the same random batches of ``example_shape``;
    they alternate for ``rounds`` epochs of ``iterations`` iterations (after one untimed warm-up epoch), on batches
    of the training batch size (``batch_size`` x ``num_samples`` crops, at ``example_shape``), and the medians of
    the per-epoch mean iteration times (:class:`IterationClock`) are reported, so slow drifts of the machine's load
    affect both alike. With ``compile``, Sauron's terms run through ``torch.compile`` (inductor); the compilation
    falls in the untimed warm-up epoch, and ``warmup_extra_s`` (its Sauron epoch less the plain one) reports it.
    """
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "train.json"))
    per_batch = parser["batch_size"] * (parser["num_samples"] if "num_samples" in parser else 1)  # crops per image
    shape = [per_batch, *parser.get_parsed_content("example_shape")[1:]]
    classes = parser["network_def"]["out_channels"]
    generator = torch.Generator().manual_seed(0)
    batch = {"image": torch.randn(shape, generator=generator),
             "label": torch.randint(0, classes, (shape[0], 1, *shape[2:]), generator=generator).float()}
    data = [batch] * iterations
    base_network = network_def(bundle)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)

    def trainer(with_sauron: bool) -> SupervisedTrainer:
        network = copy.deepcopy(base_network).train()
        handlers = [SauronPruning(tau_start=0.0, tau_max=0.0, example_shape=shape, plot=False, compile=compile)
                    ] if with_sauron else []
        engine = SupervisedTrainer(device=torch.device("cpu"), max_epochs=1, train_data_loader=data, network=network,
                                   optimizer=torch.optim.AdamW(network.parameters(), lr=1e-4),
                                   loss_function=parser.get_parsed_content("loss"), train_handlers=handlers)
        engine.logger.setLevel("WARNING")
        return engine

    clocks = {False: IterationClock(), True: IterationClock()}
    try:
        engines = {flag: trainer(flag) for flag in (False, True)}
        warmup_s = {}
        for flag, engine in engines.items():
            start = time.perf_counter()
            engine.run()  # warm-up epoch, not timed (with compile: the compilation happens here)
            warmup_s[flag] = time.perf_counter() - start
            clocks[flag].attach(engine)
        for _ in range(rounds):
            for engine in engines.values():
                engine.state.max_epochs += 1
                engine.run()
    finally:
        torch.set_num_threads(previous_threads)
    plain, sauron = (statistics.median(clocks[flag].epoch_means) for flag in (False, True))
    return {"plain_iteration_s": plain, "sauron_iteration_s": sauron, "overhead": sauron / plain - 1.0,
            "compiled": compile, "warmup_extra_s": warmup_s[True] - warmup_s[False]}


def scripted_peak_memory_mb(model: torch.nn.Module, shape: tuple[int, ...], threads: int, path: Path) -> float:
    """
    Extra peak RAM (MiB) of one CPU forward pass of ``model`` at ``shape`` as a collaborator runs it: scripted
    (TorchScript, what ``ckpt_export`` ships), saved to ``path``, then loaded and run in a fresh process
    (:func:`monai_pruning.measure.peak_inference_memory_mb`).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in torch >= 2.10; ckpt_export uses it
        torch.jit.save(torch.jit.script(model), str(path))
    return peak_inference_memory_mb(str(path), shape, num_threads=threads)


def runtime_lines(results: dict[str, dict[str, Any]], threads: int) -> list[str]:
    """
    The per-runtime latency table of the measured models (the baseline first: every speed-up is over it, in the same
    runtime and size) with its heading and note, in the comparison report's format; no lines without timings.
    """
    ordered = {"baseline": results["baseline"], **results} if "baseline" in results else results
    timings = {LABELS.get(method, method): r["runtimes"] for method, r in ordered.items() if r.get("runtimes")}
    header, rows = runtime_table(timings)
    if not header:
        return []
    notes = ([DENSE_RATIO_NOTE] if has_dense_ratios(timings) else []) + [runtime_note(timings)]
    return ["", f"CPU latency per runtime, batch 1, {threads} threads (in brackets: the speed-up over the baseline in "
            "the same runtime and size):", "", *markdown_table(header, rows),
            *(line for note in notes if note for line in ("", note))]


def history_rows(root: Path) -> list[dict[str, Any]]:
    history = root / "runs" / "pruning" / "pruning_history.json"
    if not history.is_file():
        return []
    rows = json.loads(history.read_text())
    return rows.get("rows", rows) if isinstance(rows, dict) else rows


LABELS = {"baseline": "baseline", "sauron": "Sauron", "taylorfo": "TaylorFO", "baseline_ft": "baseline_ft (unpruned)",
          "tp_taylor": "Torch-Pruning Taylor", "tp_l1": "Torch-Pruning L1",
          "weight_taylor": "Torch-Pruning's Taylor criterion, our engine"}
# The unpruned network trained as long as each method in all: the runs that fine-tune the baseline are compared with
# its fine-tuning without pruning; Sauron trains from scratch as long as the baseline.
REFERENCES = {"sauron": "baseline", "taylorfo": "baseline_ft", "tp_taylor": "baseline_ft", "tp_l1": "baseline_ft",
              "weight_taylor": "baseline_ft"}


def markdown_tables(results: dict[str, dict[str, Any]]) -> list[str]:
    """
    The comparison table and, with a Sauron run, its training-cost table. Every ratio is against ``baseline``:
    parameters and MACs as fractions of it, speed-up as its latency over the model's, "pruned / dense" as the
    model's latency over that of a uniformly narrower dense network of the same MACs (1.0: pruning lost no speed
    to uneven widths; the timing columns are left empty for runs measured with ``--no_latency``). "Dice vs trained
    as long" compares each pruned model with its unpruned reference of the same total training (:data:`REFERENCES`;
    ``baseline_ft`` for the runs that fine-tune the baseline, when it was run).
    """
    base = results["baseline"]
    header = ["model", "parameters", "MACs", "MACs removed", "test Dice", "Dice vs baseline", "Dice vs trained as long",
              "CPU latency", "speed-up", "dense net of equal MACs", "pruned / dense", "checkpoint",
              "peak inference memory"]
    rows = []
    for method, r in results.items():
        first = method == "baseline"
        dense = r.get("dense_same_macs_latency_s")
        timed = "latency_s" in r and "latency_s" in base  # not with --no_latency
        reference = REFERENCES.get(method)
        rows.append([
            LABELS.get(method, method),
            count_cell(r["params"], None if first else base["params"]),
            macs_cell(r["macs"], None if first else base["macs"]),
            percent_cell(1 - r["macs"] / base["macs"]),
            dice_cell(r["dice"], per_class=r.get("class_dice")),
            "" if first else difference_cell(r["dice"], base["dice"]),
            f"{difference_cell(r['dice'], results[reference]['dice'])} ({reference})" if reference in results else "",
            milliseconds_cell(r["latency_s"]) if timed else "",
            ratio_cell(base["latency_s"], r["latency_s"]) if timed else "",
            milliseconds_cell(dense) if dense else "",
            f"{r['latency_s'] / dense:.2f}" if dense else "",
            megabytes_cell(r["checkpoint_mb"]),
            f"{r['peak_memory_mb']:.0f} MB" if timed else "",
        ])
    lines = markdown_table(header, rows)
    if "floor_latency_s" in base:
        lines += [""] + markdown_table(
            ["the fastest any filter pruning can reach", "MACs", "MACs removed", "CPU latency", "speed-up"],
            [[f"every prunable group at {base['floor_channels']} channels", macs_cell(base["floor_macs"]),
              percent_cell(1 - base["floor_macs"] / base["macs"]), milliseconds_cell(base["floor_latency_s"]),
              ratio_cell(base["latency_s"], base["floor_latency_s"])]])
    sauron = results.get("sauron", {})
    cost = []
    if "overhead" in sauron:
        cost.append(["training iteration without / with the regulariser and scoring, full width",
                     f"{sauron['plain_iteration_s']:.3f} s / {sauron['sauron_iteration_s']:.3f} s "
                     f"({sauron['overhead']:+.0%})"])
    if "first_epochs_s" in sauron:
        cost.append(["mean of the first 2 / last 2 epochs",
                     f"{sauron['first_epochs_s']:.1f} s / {sauron['last_epochs_s']:.1f} s"])
    if cost:
        lines += [""] + markdown_table(["Sauron training cost", "measured"], cost)
    return lines


def fixed_split(source: Path, work: Path, items: list[str]) -> Path:
    """
    Make the one case split of every run, with the data settings of the bundle's ``train.json`` after the ``--set``
    ``items`` (its ``seed`` is the split seed), into ``<work>/split/split.json`` (kept if already there), with the demo
    phantoms in ``<work>/data/demo``; returns the file. Runs with other training seeds on the same settings get the
    same phantoms and the same split, so their per-case scores pair up.
    """
    parser = ConfigParser()
    parser.read_config(str(source / "configs" / "train.json"))
    parser["bundle_root"] = str(source)
    parser["demo_dir"] = str(work / "data" / "demo")
    for key, value in parse_overrides(cli_overrides(items)).items():
        parser[key] = value
    parser["data#output_dir"] = str(work / "split")
    parser.get_parsed_content("data")  # the bundle's own call of prepare_task_data, writing the split there
    return work / "split" / "split.json"


def cli_overrides(items: list[str]) -> list[str]:
    """``["a#b=1", ...]`` -> ``["--a#b", "1", ...]``, the form ``python -m monai.bundle run`` takes."""
    return [part for item in items for part in ("--" + item).split("=", 1)]


def taylorfo_macs_target(rows: list[dict[str, Any]]) -> list[str]:
    """
    The override that prunes our TaylorFO handler, from the same start, to the fraction of the starting MACs a pruned
    run removed in the end (``rows``: its pruning history): how a criterion on our engine matches TaylorFO's MACs.
    """
    return ["--taylorfo#target_macs_reduction", repr(1.0 - float(rows[-1]["macs_ratio"]))]


def criterion_peer_overrides(method: str, taylorfo_set: list[str]) -> list[str]:
    """
    The bundle overrides of a :data:`CRITERION_PEERS` run: TaylorFO's ``--taylorfo_set`` settings (its schedule), but
    the criterion's own ranking and stop, which win over any ``--taylorfo_set`` of the same id.
    """
    forced = CRITERION_PEERS[method]
    ids = set(forced[::2])
    kept = [item for item in taylorfo_set if "--" + item.split("=", 1)[0] not in ids]
    return cli_overrides(kept) + list(forced)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="bundle folder name under bundles/")
    parser.add_argument("--work", required=True, help="scratch folder for the runs and the results")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the bundle's)")
    parser.add_argument("--finetune_epochs", type=int, default=None, help="TaylorFO fine-tuning epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30,
                        help="timed passes per latency (the per-runtime table: split over --rounds rounds)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating rounds of the per-runtime latency (every model, runtime and size in turn)")
    parser.add_argument("--methods", nargs="+",
                        default=["baseline", "sauron", "taylorfo", "baseline_ft", *PEERS, *CRITERION_PEERS])
    parser.add_argument("--seed", type=int, default=None,
                        help="training seed of every run (default: the bundle's); the data split stays that of the "
                             "bundle's seed, so runs with different --seed share their test cases")
    parser.add_argument("--set", dest="all_set", action="append", default=[], metavar="ID=VALUE",
                        help="config override for every run and evaluation (repeatable), e.g. --set demo_cases=48")
    parser.add_argument("--sauron_set", action="append", default=[], metavar="ID=VALUE",
                        help="config override for the Sauron run only (repeatable), "
                             "e.g. --sauron_set sauron#patience=2")
    parser.add_argument("--taylorfo_set", action="append", default=[], metavar="ID=VALUE",
                        help="config override for the TaylorFO run only (repeatable), "
                             "e.g. --taylorfo_set taylorfo#tolerance=0.05")
    parser.add_argument("--floor_channels", type=int, default=2,
                        help="width of every prunable group in the narrowest network timed as the latency bound "
                             "(default 2, the handlers' min_channels)")
    parser.add_argument("--runtimes", nargs="+", default=None, choices=sorted(RUNTIME_LATENCY),
                        help="deployment runtimes to time every model in (default: all installed)")
    parser.add_argument("--runtime_size", action="append", default=None, metavar="HxW[xD]",
                        help="a size besides the training size to time the runtimes at (repeatable; default "
                             "352x352 for a 2D bundle, none for 3D)")
    parser.add_argument("--overhead_iterations", type=int, default=6, help="iterations per timed overhead round")
    parser.add_argument("--overhead_rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true",
                        help="with --overhead_only: Sauron's regulariser and scoring through torch.compile")
    parser.add_argument("--measure_only", action="store_true", help="train nothing: measure the runs in --work")
    parser.add_argument("--no_latency", action="store_true",
                        help="time nothing: Dice, parameters, MACs and checkpoint sizes only (seed repeats on a "
                             "machine busy with other runs, where timings would mean nothing; time afterwards "
                             "with --measure_only on the idle machine)")
    parser.add_argument("--overhead_only", action="store_true",
                        help="only time Sauron's regulariser and scoring per training iteration (no training); "
                             "writes overhead.json in --work")
    parser.add_argument("--rerun", nargs="+", default=None, metavar="METHOD",
                        help="train and evaluate these methods again from the start, reuse the other runs in --work "
                             "as they are")
    args = parser.parse_args()
    # Torch-Pruning leaves num_features of affine-free InstanceNorms at the old width; harmless, but it warns per call
    warnings.filterwarnings("ignore", message="input's size at dim=1 does not match num_features")

    source = REPO / "bundles" / args.bundle
    if args.seed is not None and any(item.partition("=")[0] == "seed" for item in args.all_set):
        parser.error("--seed sets the training seed and --set seed=... the split's too: give one of them")
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if args.overhead_only:
        cost = sauron_iteration_overhead(source, args.overhead_iterations, args.overhead_rounds, args.threads,
                                         compile=args.compile)
        (work / "overhead.json").write_text(json.dumps(cost, indent=2))
        print(f"{args.bundle}: training iteration without / with the regulariser and scoring, full width"
              f"{', compiled' if args.compile else ''}: {cost['plain_iteration_s']:.3f} s / "
              f"{cost['sauron_iteration_s']:.3f} s ({cost['overhead']:+.0%}); warm-up epoch with Sauron "
              f"{cost['warmup_extra_s']:+.1f} s (compilation, if any)")
        return
    common = ["--num_epochs", str(args.epochs)] if args.epochs else []
    finetune = ["--num_epochs", str(args.finetune_epochs)] if args.finetune_epochs else []
    if any(method in PEERS for method in args.methods):
        try:
            import torch_pruning  # noqa: F401
        except ImportError:
            raise SystemExit(
                'the Torch-Pruning peers need `pip install -e ".[benchmark]"` (or leave them out of --methods)'
            )
    plans = {
        "baseline": (["train.json"], common, None),
        "sauron": (["train.json", "prune_sauron.json"], common + cli_overrides(args.sauron_set), None),
        "taylorfo": (["train.json", "prune_taylorfo.json"], finetune + cli_overrides(args.taylorfo_set), "baseline"),
    }
    plans["baseline_ft"] = (["train.json", "prune_taylorfo.json", "finetune_dense.json"], finetune, "baseline")
    for peer, (importance, global_pruning) in PEERS.items():
        plans[peer] = (["train.json", "prune_taylorfo.json", "finetune_dense.json", "prune_torch_pruning.json"],
                       finetune + ["--peer#importance", importance, "--peer#global_pruning", str(global_pruning)],
                       "baseline")
    for method in CRITERION_PEERS:
        plans[method] = (["train.json", "prune_taylorfo.json"],
                         finetune + criterion_peer_overrides(method, args.taylorfo_set), "baseline")
    results: dict[str, dict[str, Any]] = {}
    roots: dict[str, Path] = {}
    training = (["--seed", str(args.seed)] if args.seed is not None else [])
    split_file = None if args.measure_only else fixed_split(source, work, args.all_set)
    # all runs share the demo data folder and the split file, so the phantoms and the split are identical
    shared = ["--demo_dir", str(work / "data" / "demo"), *cli_overrides(args.all_set), *training]
    for method in args.methods:
        roots[method] = work / method
        state = "reused" if args.measure_only else run_state(roots[method], rerun=args.rerun, method=method)
        train_s = None if state == "reused" else train_method(method, plans[method], state, source, work,
                                                                  split_file, shared)
        results[method] = {"train_s": train_s}

    meta = ConfigParser()
    meta.read_config(str(source / "configs" / "inference.json"))
    in_channels = meta.get_parsed_content("network_def#in_channels")
    shape = (1, in_channels, *meta.get_parsed_content("roi_size"))
    sizes = args.runtime_size if args.runtime_size is not None else (["352x352"] if len(shape) == 4 else [])
    runtime_shapes = [shape] + [(1, in_channels, *(int(v) for v in size.split("x"))) for size in sizes]
    runtimes = args.runtimes or available_runtimes()
    models: dict[str, torch.nn.Module] = {}
    for method, root in roots.items():
        per_class = class_dice(root / "eval" / "case_metrics.csv")
        results[method].update(dice=mean_dice(per_class), class_dice=per_class)
        checkpoint = root / "models" / "model.pt"
        model = load_model(str(source), str(checkpoint))
        models[method] = model
        complexity = measure_complexity(model, shape)
        results[method].update(params=complexity.params, macs=complexity.macs,
                               checkpoint_mb=os.path.getsize(checkpoint) / 2**20)
        times = [r.get("time_s") for r in history_rows(root) if isinstance(r.get("time_s"), (int, float))]
        if method == "sauron" and len(times) >= 6:  # epochs with validation take longer: compare whole pairs
            results[method]["first_epochs_s"] = sum(times[:2]) / 2
            results[method]["last_epochs_s"] = sum(times[-2:]) / 2
        if args.no_latency:
            continue
        latency = measure_latency(model, shape, repeats=args.repeats, num_threads=args.threads)
        memory = scripted_peak_memory_mb(model, shape, args.threads, work / f"{method}.ts")
        results[method].update(latency_s=latency.median_s, peak_memory_mb=memory)
        if method == "baseline":
            narrowest = narrowest_network(source, args.floor_channels, shape)
            results[method].update(
                floor_channels=args.floor_channels, floor_macs=measure_complexity(narrowest, shape).macs,
                floor_latency_s=measure_latency(narrowest, shape, repeats=args.repeats,
                                                num_threads=args.threads).median_s)
        if method != "baseline" and "baseline" in results and complexity.macs < results["baseline"].get("macs", 0):
            dense, scale = dense_equivalent(source, complexity.macs, shape)
            results[method]["dense_same_macs_latency_s"] = measure_latency(
                dense, shape, repeats=args.repeats, num_threads=args.threads).median_s
            results[method]["dense_width_scale"] = scale

    timings = {} if args.no_latency else compare_runtimes(
        models, runtime_shapes, runtimes, rounds=args.rounds, repeats=max(1, args.repeats // args.rounds),
        num_threads=args.threads)
    for method, timed in timings.items():
        results[method]["runtimes"] = timed
    if "sauron" in results and not args.no_latency:
        results["sauron"].update(
            sauron_iteration_overhead(source, args.overhead_iterations, args.overhead_rounds, args.threads)
        )
    (work / "results.json").write_text(json.dumps(results, indent=2))
    if "baseline" not in results:  # the tables are ratios to the baseline
        print(f"{work / 'results.json'} written; no baseline run in {work} for the tables: copy one in (a folder "
              "'baseline') and run again with --methods baseline ... --measure_only")
        return
    lines = markdown_tables(results) + runtime_lines(results, args.threads)
    (work / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
