"""PolypGen benchmark of the polyp bundle: baseline, Sauron, TaylorFO, controls and peers on real colonoscopy frames.

    pip install -e ".[benchmark]"
    python benchmarks/polypgen_benchmark.py --data ../shared/data/polypgen --work /work/runs/polypgen --seeds 0 1 2
    python benchmarks/polypgen_benchmark.py --data ../shared/data/polypgen --work /work/runs/polypgen --seeds 0 1 2 \\
        --report --docs     # evaluate nothing new: measure, compare and write the tables into the bundle's docs

Every run is a real ``python -m monai.bundle run`` of the polyp bundle's configs on a private copy (nothing in the
repository is touched), on one case split made once and saved (``<work>/split/split.json``) and shared by every run,
so only the training seed differs between seeds. Runs are resumable across sessions: the same command skips finished
runs (``done.json``), continues a stopped one from its last checkpoint (``--resume true``), and starts the rest once
the runs they start from are finished, ``--jobs`` at a time (each with ``OMP_NUM_THREADS`` = ``--threads`` / jobs).

Methods per seed (E = ``--epochs``, F = ``--finetune_epochs``), each with its same-seed reference:

- ``baseline``: ``train.json`` for E epochs.
- ``baseline_long``: the baseline fine-tuned F more epochs with TaylorFO's schedule and no pruning
  (``benchmarks/finetune_dense.json``); the reference of everything that starts from the baseline.
- ``sauron``: ``prune_sauron.json`` from scratch for E epochs with the paper's constants; reference ``baseline``.
- ``sauron_scheduled``: the same with the schedule this project recommends for a CPU budget of E epochs
  (:data:`SAURON_SCHEDULE`: thresholds raised after 1 epoch within 20% of the best loss instead of 5 epochs without a
  new best, whether or not the validation Dice is a new best, up to 0.4, pruning stopped at 90% of the MACs
  removed, and no delta_opt regulariser: lambda 0, chosen on validation); reference ``baseline``.
- ``sauron_regularised`` (a labelled variant, run only when ``--methods`` names it): that schedule with the paper's
  regulariser (lambda 0.5), the first recommendation; reference ``baseline``.
- ``taylorfo``: ``prune_taylorfo.json`` from the baseline for F epochs; reference ``baseline_long``.
- ``scratch_sauron`` / ``scratch_taylorfo``: the final pruned architecture (of ``sauron_scheduled``, the Sauron this
  project recommends, and of ``taylorfo``) re-initialised and trained from scratch as long as the pruned run in total
  (E, E + F) with the plain recipe (``benchmarks/scratch_pruned.json``).
- ``random``: the random-pruning control: TaylorFO's schedule from the baseline for F epochs with uniformly random
  channel scores (``TaylorFOPruning(criterion="random")``, seeded by the run's seed, no MAC normalisation) instead of
  the Taylor importance, to TaylorFO's final MACs, with no metric check (a drop must not stop it short of those MACs);
  reference ``baseline_long``.
- ``tp_taylor`` / ``tp_l1`` (peers): Torch-Pruning's Taylor and L1 from the baseline to TaylorFO's final MACs over as
  many epochs as TaylorFO pruned, then fine-tuned to F epochs (``benchmarks/prune_torch_pruning.json``).
- ``weight_taylor``: Torch-Pruning's Taylor criterion (|weight x gradient| of the training loss, GroupTaylor's
  defaults) on our engine, with TaylorFO's schedule from the baseline for F epochs to TaylorFO's final MACs and no
  metric check, as ``random`` (``TaylorFOPruning(criterion="weight_gradient")``): the comparison of that peer's
  criterion where Torch-Pruning's own pipeline does not train; reference ``baseline_long``.

``--report`` then measures every finished run: test Dice per frame (``evaluate.json``), MACs and parameters at the
training size, CPU latency at batch 1 (``--threads`` threads) at the training size and at 352x352 in every runtime of
``--runtimes`` (eager PyTorch, TorchScript, ONNX Runtime, OpenVINO: those installed), timed in alternating rounds
against a dense network of equal MACs (uniformly narrower widths), and the mean paired per-frame Dice difference
against the same-seed reference with a 95% bootstrap interval over seeds and frames. A run's ``fps_352``,
``latency_s`` and ``latency_352_s`` are in its fastest runtime at 352x352 (``runtime``), and so is
``pruned_over_dense_352``; ``runtimes`` holds every runtime and size; ``frame_dice`` the test Dice of every frame,
so each interval can be recomputed from the JSON alone. It also reads how each run of the first seed
trained from its log (MACs left per epoch, validation Dice; unfinished runs too): ``training_curves`` in the JSON, a
table in the ``.md`` and ``benchmark_polypgen_curves.png``, so a peer or control that degrades, or collapses, shows
where. It writes ``benchmark_polypgen.json``, ``.md``, ``.png`` and ``_curves.png`` to ``--work`` (and to the
bundle's ``docs/`` with ``--docs``).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO))

from pruning_benchmark import (  # noqa: E402
    CRITERION_PEERS,
    TAYLORFO_PEERS,
    cli_overrides,
    dense_equivalent,
    history_rows,
    load_model,
    scripted_peak_memory_mb,
    taylorfo_macs_target,
)

from monai_pruning.data import prepare_task_data  # noqa: E402
from monai_pruning.handlers.epoch_progress import read_progress  # noqa: E402
from monai_pruning.handlers.feature_map_comparison import (  # noqa: E402
    networks_from_checkpoints,
    write_feature_map_comparison,
)
from monai_pruning.measure import (  # noqa: E402
    RUNTIME_LATENCY,
    available_runtimes,
    compare_runtimes,
    measure_complexity,
    size_label,
)
from monai_pruning.report.comparison import (  # noqa: E402
    DENSE_RATIO_NOTE,
    RUNTIME_LABELS,
    has_dense_ratios,
    interval_cell,
    markdown_table,
    percent_cell,
    runtime_note,
    runtime_table,
)
from monai_pruning.report import paired_dice  # noqa: E402
from monai_pruning.report.paired_dice import group_means, paired_differences, read_case_scores  # noqa: E402

BUNDLE = "polyp_endoscopy_segmentation"
SOURCE = REPO / "bundles" / BUNDLE
DEPLOY_SIZE = (352, 352)
#: Sauron's schedule for short runs: with the paper's constants (patience 5 epochs, no tolerance, tau up to 0.3) the
#: thresholds first rise late in a run of a hundred or so epochs; this one cut 90% of the MACs of the demo network by
#: epoch 71 to 96 of 300 (polyp docs) and fine-tunes the rest of the run at the final width. On PolypGen, whose
#: validation Dice still rises at epoch 100, a new best validation Dice blocked every rise from epoch 5 to 34 (tau
#: 0.028 of 0.4, 16% of the MACs cut by epoch 40), so the schedule does not consult it (new_best_blocks False, what
#: the original code did in effect).
SAURON_SCHEDULE_REGULARISED = ("--sauron#patience", "1", "--sauron#plateau_tolerance", "0.2", "--sauron#tau_max", "0.4",
                               "--sauron#target_macs_reduction", "0.9", "--sauron#new_best_blocks", "False")
#: The Sauron this project recommends on real frames: the schedule above without the delta_opt regulariser (lambda 0,
#: the paper's own ablation), chosen on seed 0's PolypGen validation Dice (0.525 against 0.323 with the regulariser at
#: epoch 100 of 100; polyp docs, "PolypGen"): with it the network satisfied the regulariser by flattening its maps.
SAURON_SCHEDULE = SAURON_SCHEDULE_REGULARISED + ("--sauron#lam", "0.0")
REAL_DATA_RECIPE = "real_data.json"  # the bundle's training recipe for real frames, chosen on PolypGen validation


@dataclass(frozen=True)
class Plan:
    """How one method is run: its configs, epochs, the run it starts from and the one it is compared with."""

    method: str
    configs: tuple[str, ...]
    epochs: int
    reference: str
    starts_from: str | None = None  # a run whose models/model_baseline.pt this run fine-tunes
    architecture_of: str | None = None  # a pruned run whose architecture this run trains from scratch
    macs_of: str | None = None  # a pruned run whose final MACs (and, for a peer, pruning epochs) this run matches
    overrides: tuple[str, ...] = ()
    peer: bool = False  # a peer's method: Torch-Pruning's pruner, or its criterion on our engine
    extra: bool = False  # a labelled variant run only when --methods names it, not by default
    recipe: tuple[str, ...] = ()  # overlays on train.json in every run of the benchmark, evaluation included

    @property
    def evaluation_configs(self) -> tuple[str, ...]:
        return ("train.json", *self.recipe, "evaluate.json")

    @property
    def torch_pruning(self) -> bool:
        """Whether Torch-Pruning's own pruner runs (its MACs target and steps), not our TaylorFO handler."""
        return "prune_torch_pruning.json" in self.configs

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(n for n in (self.starts_from, self.architecture_of, self.macs_of) if n is not None)


def method_plans(epochs: int, finetune_epochs: int, recipe: tuple[str, ...] = ()) -> dict[str, Plan]:
    """
    Every method the benchmark knows, in an order where each run comes after the runs it needs (the order runs
    start in without ``--methods``: the methods before the controls and peers). ``recipe``: config
    files of the bundle's ``configs/`` laid over ``train.json`` in every run (the training recipe for real frames),
    before the method's own overlays.
    """
    train = ("train.json", *recipe)
    finetune = train + ("prune_taylorfo.json",)
    peer = finetune + ("finetune_dense.json", "prune_torch_pruning.json")
    plans = [
        Plan("baseline", train, epochs, "baseline"),
        Plan("sauron", train + ("prune_sauron.json",), epochs, "baseline"),
        Plan("sauron_scheduled", train + ("prune_sauron.json",), epochs, "baseline", overrides=SAURON_SCHEDULE),
        Plan("taylorfo", finetune, finetune_epochs, "baseline_long", "baseline"),
        Plan("baseline_long", finetune + ("finetune_dense.json",), finetune_epochs, "baseline_long", "baseline"),
        Plan("scratch_sauron", train + ("scratch_pruned.json",), epochs, "baseline",
             architecture_of="sauron_scheduled"),
        Plan("scratch_taylorfo", train + ("scratch_pruned.json",), epochs + finetune_epochs, "baseline_long",
             architecture_of="taylorfo"),
        Plan("random", finetune, finetune_epochs, "baseline_long", "baseline", macs_of="taylorfo",
             overrides=("--taylorfo#criterion", "random", "--taylorfo#macs_normalize", "False",
                        "--taylorfo#tolerance", "$None")),
        Plan("tp_taylor", peer, finetune_epochs, "baseline_long", "baseline", macs_of="taylorfo",
             overrides=("--peer#importance", "taylor", "--peer#global_pruning", "True"), peer=True),
        Plan("tp_l1", peer, finetune_epochs, "baseline_long", "baseline", macs_of="taylorfo",
             overrides=("--peer#importance", "l1", "--peer#global_pruning", "False"), peer=True),
        Plan("weight_taylor", finetune, finetune_epochs, "baseline_long", "baseline", macs_of="taylorfo",
             overrides=CRITERION_PEERS["weight_taylor"], peer=True),
        Plan("sauron_regularised", train + ("prune_sauron.json",), epochs, "baseline",
             overrides=SAURON_SCHEDULE_REGULARISED, extra=True),
    ]
    return {plan.method: replace(plan, recipe=tuple(recipe)) for plan in plans}


def default_methods(plans: dict[str, Plan]) -> list[str]:
    """The methods run without ``--methods``: every plan but the labelled variants (``Plan.extra``)."""
    return [name for name, plan in plans.items() if not plan.extra]


def with_dependencies(methods: list[str], plans: dict[str, Plan]) -> list[str]:
    """
    ``methods`` plus every run they need, then the references they are compared with, in the order runs start:
    each asked-for method as early as its inputs allow, in the order asked (``--methods taylorfo sauron`` trains
    TaylorFO first), and the references nothing needs last.
    """
    for name in methods:
        if name not in plans:
            raise SystemExit(f"unknown method {name!r}: choose from {', '.join(plans)}")
    order: list[str] = []

    def add(name: str) -> None:
        if name not in order:
            for need in plans[name].needs:
                add(need)
            order.append(name)

    for name in methods:
        add(name)
    for name in list(order):
        add(plans[name].reference)
    return order


def fixed_split(data: Path, work: Path, val_fraction: float, test_fraction: float) -> dict:
    """The one case split of every run (made with split seed 0 once, then reused from ``<work>/split``)."""
    return prepare_task_data("polyp", str(data), output_dir=str(work / "split"), seed=0,
                             val_fraction=val_fraction, test_fraction=test_fraction)


class RunFolder:
    """One method and seed: a private copy of the bundle under ``<work>/seed<S>/<method>``."""

    def __init__(self, work: Path, plan: Plan, seed: int) -> None:
        self.plan, self.seed = plan, seed
        self.root = work / f"seed{seed}" / plan.method
        self.log = self.root / "train.log"

    @property
    def done(self) -> bool:
        return (self.root / "done.json").is_file()

    @property
    def model(self) -> Path:
        return self.root / "models" / "model.pt"

    def cases(self) -> Path:
        return self.root / "eval" / "case_metrics.csv"

    def has_checkpoint(self) -> bool:
        return any((self.root / "runs" / "checkpoints").glob("checkpoint_epoch=*.pt"))

    def prepare(self, split_file: Path, runs: dict[str, RunFolder]) -> None:
        """Copy the bundle, the benchmark overlays, the fixed split and the start checkpoint (first launch only)."""
        if self.root.exists():
            return
        partial = self.root.with_name(self.root.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(SOURCE, partial, ignore=shutil.ignore_patterns("data", "runs", "models", "eval", "predictions"))
        for overlay in self.plan.configs:
            if (REPO / "benchmarks" / overlay).is_file():
                shutil.copy(REPO / "benchmarks" / overlay, partial / "configs")
        (partial / "runs").mkdir()
        shutil.copy(split_file, partial / "runs" / split_file.name)
        if self.plan.starts_from is not None:
            (partial / "models").mkdir()
            start = runs[self.plan.starts_from].root / "models" / "model_baseline.pt"
            shutil.copy(start, partial / "models" / "model_baseline.pt")
        os.replace(partial, self.root)

    def overrides(self, runs: dict[str, RunFolder], data: Path, extra: list[str]) -> list[str]:
        values = ["--dataset_dir", str(data), "--seed", str(self.seed), "--num_epochs", str(self.plan.epochs),
                  *self.plan.overrides]
        if self.plan.architecture_of is not None:
            values += ["--architecture_checkpoint", str(runs[self.plan.architecture_of].model)]
        if self.plan.macs_of is not None:
            rows = history_rows(runs[self.plan.macs_of].root)
            if self.plan.torch_pruning:
                pruning_epochs = sum(1 for row in rows if row.get("phase") == "pruning")
                values += ["--peer#target_macs", str(rows[-1]["macs"]), "--peer#steps", str(max(1, pruning_epochs))]
            else:  # our handler from the same start: the same fraction of the starting MACs
                values += taylorfo_macs_target(rows)
        return values + extra


def _bundle(root: Path, configs: list[str], overrides: list[str], log: Path, threads: int) -> None:
    files = "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
               "--meta_file", "configs/metadata.json", *overrides]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "benchmarks"), os.environ.get("PYTHONPATH")])))
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n")
        out.flush()
        result = subprocess.run(command, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{root.parent.name}/{root.name} failed (exit {result.returncode}); see {log}")


def train_and_evaluate(run: RunFolder, runs: dict[str, RunFolder], data: Path, extra: list[str], threads: int) -> None:
    """Train (or continue) one run, evaluate its final model on the test split, then mark it done."""
    resume = ["--resume", "true" if run.has_checkpoint() else "false"]
    start = time.time()
    _bundle(run.root, list(run.plan.configs), run.overrides(runs, data, extra) + resume, run.log, threads)
    _bundle(run.root, list(run.plan.evaluation_configs), ["--dataset_dir", str(data), "--seed", str(run.seed), *extra],
            run.log, threads)
    (run.root / "done.json").write_text(json.dumps({"finished": time.strftime("%Y-%m-%d %H:%M:%S"),
                                                    "last_session_s": round(time.time() - start, 1)}))


def run_all(runs: dict[tuple[int, str], RunFolder], data: Path, split_file: Path, extra: list[str], jobs: int,
            threads: int) -> list[str]:
    """Run every unfinished run once the runs it needs are done, ``jobs`` at a time; returns the failures."""
    by_seed = {seed: {m: r for (s, m), r in runs.items() if s == seed} for seed, _ in runs}
    pending = [key for key, run in runs.items() if not run.done]
    failed: list[str] = []
    active: dict[Future, tuple[int, str]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while pending or active:
            for key in list(pending):
                run = runs[key]
                needs = [by_seed[run.seed][name] for name in run.plan.needs]
                if run.done:  # finished meanwhile by another command on the same work folder
                    pending.remove(key)
                elif any(f"seed{run.seed}/{n.plan.method}" in failed for n in needs):
                    pending.remove(key)
                    failed.append(f"seed{run.seed}/{run.plan.method} (needs a failed run)")
                elif len(active) < jobs and all(n.done for n in needs):
                    pending.remove(key)
                    run.prepare(split_file, by_seed[run.seed])
                    print(f"[{time.strftime('%H:%M:%S')}] start seed {run.seed} {run.plan.method}", flush=True)
                    active[pool.submit(train_and_evaluate, run, by_seed[run.seed], data, extra,
                                       max(1, threads // jobs))] = key
            if not active:
                break
            finished, _ = wait(active, return_when=FIRST_COMPLETED)
            for future in finished:
                seed, method = active.pop(future)
                error = future.exception()
                print(f"[{time.strftime('%H:%M:%S')}] {'FAILED' if error else 'done'} seed {seed} {method}"
                      + (f": {error}" if error else ""), flush=True)
                if error:
                    failed.append(f"seed{seed}/{method}")
    return failed


def training_config(overrides: list[str], recipe: tuple[str, ...] = ()) -> ConfigParser:
    """The polyp ``train.json`` as every run saw it: the bundle's, with the recipe and the ``--set`` overrides."""
    parser = ConfigParser()
    parser.read_config([str(SOURCE / "configs" / name) for name in ("train.json", *recipe)])
    for item in overrides:
        key, _, value = item.partition("=")
        try:
            parser[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parser[key] = value
    return parser


def training_setting(name: str, overrides: list[str], recipe: tuple[str, ...] = ()) -> Any:
    """A value of the polyp ``train.json`` as every run saw it: the bundle's, unless the recipe or ``--set`` set it."""
    return training_config(overrides, recipe).get_parsed_content(name)


def measure_run(run: RunFolder, base_macs: int | None, shape: tuple[int, ...], args: argparse.Namespace) -> dict:
    """
    Parameters, MACs and checkpoint size of a run's final model; its CPU latency in every runtime at the training
    size and at 352x352, and, for a pruned model, that of the dense network of equal MACs, timed alternating with it;
    the extra peak RAM of one TorchScript forward pass at 352x352 (MiB, in a fresh process).
    """
    model = load_model(str(SOURCE), str(run.model))
    complexity = measure_complexity(model, shape)
    deploy_shape = (1, shape[1], *DEPLOY_SIZE)
    row: dict[str, Any] = {"params": complexity.params, "macs": complexity.macs,
                           "checkpoint_mb": os.path.getsize(run.model) / 2**20}
    models = {"model": model}
    if base_macs is not None and complexity.macs < base_macs:
        models["dense"], _ = dense_equivalent(SOURCE, measure_complexity(model, deploy_shape).macs, deploy_shape)
    runtimes = args.runtimes or available_runtimes()
    timings = compare_runtimes(models, [shape, deploy_shape], runtimes, rounds=args.rounds, repeats=args.repeats,
                               num_threads=args.threads)
    train, deploy = size_label(shape), size_label(deploy_shape)
    mine = timings["model"]
    if "dense" in timings:
        for runtime, sizes in mine.items():
            for size, timed in sizes.items():
                timed["pruned_over_dense"] = timed["latency_s"] / timings["dense"][runtime][size]["latency_s"]
    fastest = min(mine, key=lambda runtime: mine[runtime][deploy]["latency_s"])
    row.update(latency_s=mine[fastest][train]["latency_s"], latency_352_s=mine[fastest][deploy]["latency_s"],
               runtime=fastest, fps_352=mine[fastest][deploy]["fps"], runtimes=mine)
    if "dense" in timings:
        row["pruned_over_dense_352"] = mine[fastest][deploy]["pruned_over_dense"]
    with tempfile.TemporaryDirectory() as folder:
        row["peak_memory_352_mb"] = scripted_peak_memory_mb(model, deploy_shape, args.threads,
                                                            Path(folder) / "model.ts")
    return row


def mean_runtimes(runs: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """
    ``{runtime: {size: {"latency_s", "fps"[, "pruned_over_dense"]}}}``: the runs' mean latency (fps at that mean, batch
    1) and mean pruned / dense ratio, per runtime and size, over the runs that were timed there.
    """
    cells: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        for runtime, sizes in run.get("runtimes", {}).items():
            for size, timed in sizes.items():
                cells.setdefault(runtime, {}).setdefault(size, []).append(timed)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for runtime, sizes in cells.items():
        for size, timed in sizes.items():
            latency = float(np.mean([t["latency_s"] for t in timed]))
            cell = {"latency_s": latency, "fps": 1.0 / latency}
            ratios = [t["pruned_over_dense"] for t in timed if "pruned_over_dense" in t]
            if ratios:
                cell["pruned_over_dense"] = float(np.mean(ratios))
            result.setdefault(runtime, {})[size] = cell
    return result


def paired_interval(scores: dict[tuple[int, str], dict[str, float]], method: str, other: str, seeds: list[int],
                    resamples: int) -> dict[str, Any]:
    """``method``'s per-frame Dice minus ``other``'s on the same seeds and frames: mean, 95% bootstrap interval."""
    pairs = [(scores[(s, method)], scores[(s, other)]) for s in seeds]
    return paired_dice.paired_interval(pairs, resamples).record()


def summarise(rows: list[dict], scores: dict[tuple[int, str], dict[str, float]], plans: dict[str, Plan],
              centres: dict[str, str], resamples: int) -> dict[str, dict]:
    """Per method: means over seeds, the paired Dice difference against the reference with its interval, centres."""
    summary: dict[str, dict] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        seeds = [r["seed"] for r in mine]
        reference = plans[method].reference
        entry: dict[str, Any] = {
            "peer": plans[method].peer, "reference": reference, "seeds": seeds,
            "macs_removed": float(np.mean([r["macs_removed"] for r in mine])),
            "test_dice": float(np.mean([r["test_dice"] for r in mine])),
            "test_dice_per_centre": {c: float(np.mean([group_means(scores[(s, method)], centres)[c] for s in seeds]))
                                     for c in sorted(set(centres.values()))},
            "fps_352": float(np.mean([r["fps_352"] for r in mine])),
            "checkpoint_mb": float(np.mean([r["checkpoint_mb"] for r in mine])),
            "peak_memory_352_mb": float(np.mean([r["peak_memory_352_mb"] for r in mine])),
            "runtime": "/".join(sorted({r.get("runtime", "eager") for r in mine})),
            "runtimes": mean_runtimes(mine),
        }
        ratios = [r["pruned_over_dense_352"] for r in mine if "pruned_over_dense_352" in r]
        if ratios:
            entry["pruned_over_dense_352"] = float(np.mean(ratios))
        paired = [s for s in seeds if (s, reference) in scores]
        if method != reference and paired:
            entry["dice_vs_reference"] = paired_interval(scores, method, reference, paired, resamples)
        summary[method] = entry
    return summary


#: Each pruning method against the controls and peers it must be at or above at equal MACs (the issue's targets):
#: its scratch control trains its final architecture from scratch, the others prune to its final MACs.
CONTROLS = {
    "sauron_scheduled": ("scratch_sauron",),
    "taylorfo": ("scratch_taylorfo", "random", *TAYLORFO_PEERS),
}


def versus_controls(scores: dict[tuple[int, str], dict[str, float]], resamples: int) -> list[dict]:
    """
    Per method and control of :data:`CONTROLS`, the mean paired per-frame Dice difference (method - control) over the
    seeds where both finished, with its 95% bootstrap interval over seeds and frames: whether the method is at or
    above the control, beyond the noise or not.
    """
    rows = []
    for method, controls in CONTROLS.items():
        for control in controls:
            seeds = sorted(seed for seed, name in scores if name == method and (seed, control) in scores)
            if not seeds:
                continue
            rows.append({"method": method, "control": control,
                         **paired_interval(scores, method, control, seeds, resamples), "seeds": seeds})
    return rows


def markdown(result: dict) -> str:
    header = ["method", "reference", "seeds", "MACs removed", "test Dice", "Dice vs reference [95% CI]",
              "pruned / dense (352)", "frames/s (352, fastest runtime)", "checkpoint", "peak RAM (352)"]
    rows = []
    for method, s in result["summary"].items():
        versus = s.get("dice_vs_reference")
        rows.append([
            method + (" (peer)" if s["peer"] else ""),
            s["reference"],
            str(len(s["seeds"])),
            percent_cell(s["macs_removed"]),
            f"{s['test_dice']:.4f}",
            (interval_cell(versus["mean"], versus["low"], versus["high"]) if versus
             else "(reference)" if s["reference"] == method else f"({s['reference']} not finished)"),
            f"{s['pruned_over_dense_352']:.2f}" if "pruned_over_dense_352" in s else "",
            f"{s['fps_352']:.1f} ({', '.join(RUNTIME_LABELS.get(r, r) for r in s['runtime'].split('/'))})",
            f"{s['checkpoint_mb']:.2f} MB",
            f"{s['peak_memory_352_mb']:.0f} MB",
        ])
    centres = sorted({c for s in result["summary"].values() for c in s["test_dice_per_centre"]})
    per_centre = [[method, *(f"{s['test_dice_per_centre'][c]:.3f}" for c in centres)]
                  for method, s in result["summary"].items()]
    lines = [f"PolypGen test frames: {result['test_frames']}, resolution {result['resolution'][0]}x"
             f"{result['resolution'][1]}; Dice vs reference: mean paired per-frame difference against the same-seed "
             "reference, 95% bootstrap interval over seeds and frames.", "",
             *markdown_table(header, rows), "", *markdown_table(["method", *centres], per_centre)]
    against = result.get("versus_controls") or []
    if against:
        lines += ["", "Each method against its controls and peers at equal MACs (mean paired per-frame Dice "
                  "difference, method - control, 95% bootstrap interval over seeds and frames):", "",
                  *markdown_table(["method", "control", "seeds", "Dice difference [95% CI]", "beyond the noise"],
                                  [[r["method"], r["control"], str(len(r["seeds"])),
                                    interval_cell(r["mean"], r["low"], r["high"]),
                                    "yes" if r["excludes_zero"] else "no"] for r in against])]
    timings = {method: s["runtimes"] for method, s in result["summary"].items() if s.get("runtimes")}
    runtime_header, runtime_rows = runtime_table(timings)
    if runtime_header:
        lines += ["", f"CPU latency per runtime, batch 1, {result.get('threads', 2)} threads, mean over seeds (in "
                  "brackets: the speed-up over the first row in the same runtime and size):", "",
                  *markdown_table(runtime_header, runtime_rows)]
        lines += ["", DENSE_RATIO_NOTE] if has_dense_ratios(timings) else []
        note = result.get("runtime_note", "")
        lines += ["", note] if note else []
    curves = result.get("training_curves") or {}
    if curves.get("runs"):
        lines += ["", *curves_markdown(curves["seed"], curves["runs"])]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in result["summary"]:
        mine = [r for r in result["runs"] if r["method"] == method]
        points = left.scatter([r["macs_removed"] for r in mine], [r["test_dice"] for r in mine], label=method)
        versus = result["summary"][method].get("dice_vs_reference")
        if versus:
            x = result["summary"][method]["macs_removed"]
            spread = [[versus["mean"] - versus["low"]], [versus["high"] - versus["mean"]]]
            right.errorbar([x], [versus["mean"]], yerr=spread,
                           fmt="o", capsize=4, color=points.get_facecolor()[0], label=method)
    left.set(xlabel="MACs removed", ylabel="test Dice (one point per seed)", title="PolypGen test frames")
    right.axhline(0.0, color="grey", lw=0.8)
    right.axhline(-0.01, color="grey", lw=0.8, ls="--")
    right.set(xlabel="MACs removed (mean over seeds)", ylabel="Dice vs same-seed reference",
              title="paired difference, 95% interval")
    left.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


#: The validation epochs the training table shows (the real-data recipe validates every 5 epochs).
CURVE_EPOCHS = (5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)


def tensorboard_validation(folder: Path, tag: str = "val_mean_dice") -> list[list[float]]:
    """``[[epoch, value], ...]`` of ``tag`` in the TensorBoard files of ``folder`` (the last value of an epoch wins)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[int, float] = {}
    for events in sorted(folder.glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            values.update({int(e.step): float(e.value) for e in accumulator.Scalars(tag)})
    return [[epoch, values[epoch]] for epoch in sorted(values)]


def training_curves(runs: dict[tuple[int, str], RunFolder], seed: int) -> dict[str, dict]:
    """
    How each run of ``seed`` trained, unfinished runs included, from the progress lines of its log: ``{method:
    {"done", "starts_from", "epochs": [...], "macs_left": [fraction of the unpruned MACs per epoch], "validation":
    [[epoch, Dice], ...]}}``. A run whose log has no progress lines (one trained before the bundle logged them, such
    as seed 0's baseline) gives its validation Dice from its TensorBoard files and no MACs.
    """
    curves = {}
    for (run_seed, method), run in runs.items():
        if run_seed != seed or not run.root.is_dir():
            continue
        rows = read_progress(run.log.read_text(errors="replace").splitlines()) if run.log.is_file() else []
        if rows:
            validation = [[r["epoch"], r["metric"]] for r in rows if r["metric"] is not None
                          and r["metric_epoch"] == r["epoch"]]
            epochs, macs_left = [r["epoch"] for r in rows], [r["macs_left"] for r in rows]
        else:
            validation, epochs, macs_left = tensorboard_validation(run.root / "runs"), [], []
        if validation or epochs:
            curves[method] = {"done": run.done, "starts_from": run.plan.starts_from, "epochs": epochs,
                              "macs_left": macs_left, "validation": validation}
    return curves


def curves_markdown(seed: int, curves: dict[str, dict]) -> list[str]:
    """Validation Dice of each run at the epochs of :data:`CURVE_EPOCHS`, with the MACs left then (runs validated)."""
    columns = [e for e in CURVE_EPOCHS if any(e in dict(c["validation"]) for c in curves.values())]
    rows = []
    for method, curve in curves.items():
        dice, macs = dict(curve["validation"]), dict(zip(curve["epochs"], curve["macs_left"]))
        cells = [(f"{dice[e]:.3f}" + (f" ({100 * macs[e]:.0f}%)" if macs.get(e) is not None else "")) if e in dice
                 else "" for e in columns]
        start = f", from {curve['starts_from']}" if curve["starts_from"] else ""
        if any(cells):
            rows.append([f"{method}{start}{'' if curve['done'] else ' (unfinished)'}", *cells])
    return [f"Validation Dice during training, seed {seed} (in brackets: MACs left, % of the unpruned network; runs "
            "from the baseline count their epochs from its end):", "",
            *markdown_table(["run", *(str(e) for e in columns)], rows)]


def plot_curves(seed: int, curves: dict[str, dict], path: Path) -> None:
    """MACs left and validation Dice over the epochs, runs from the baseline beside runs trained from scratch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = {"fine-tuned from the baseline": [m for m, c in curves.items() if c["starts_from"]],
             "trained from scratch": [m for m, c in curves.items() if not c["starts_from"]]}
    fig, axes = plt.subplots(2, 2, figsize=(11, 6.5), sharex="col")
    for column, (title, methods) in enumerate(sides.items()):
        macs_axis, dice_axis = axes[0][column], axes[1][column]
        for method in methods:
            curve = curves[method]
            label = method if curve["done"] else f"{method} (unfinished)"
            line, = dice_axis.plot(*zip(*curve["validation"]), marker=".", label=label) if curve["validation"] \
                else dice_axis.plot([], [], label=label)
            if curve["epochs"]:
                macs_axis.plot(curve["epochs"], [None if v is None else 100 * v for v in curve["macs_left"]],
                               color=line.get_color(), label=label)
        macs_axis.set(ylabel="MACs left (%)", title=f"seed {seed}, {title}", ylim=(0, 105))
        dice_axis.set(xlabel="epoch", ylabel="validation Dice")
        dice_axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def comparison_frame(split: dict, overrides: list[str], recipe: tuple[str, ...] = ()) -> tuple[str, torch.Tensor]:
    """The first test frame (in case order) with a polyp, preprocessed as validation preprocesses it."""
    preprocessing = training_config(overrides, recipe).get_parsed_content("validate#preprocessing")
    for item in sorted(split["test"], key=lambda entry: entry["case"]):
        sample = preprocessing(dict(item))
        if sample["label"].sum() > 0:
            return item["case"], torch.as_tensor(sample["image"])
    raise SystemExit("no test frame with a polyp to compare feature maps on")


COMPARED = ("baseline", "sauron_scheduled", "sauron_regularised", "sauron", "taylorfo")
#: The layers whose maps the bundle's docs show (the work folder's page draws all 22): the first encoder block at full
#: resolution, the deepest encoder block, and the last decoder block, whose maps feed the output head.
DOC_LAYERS = ("input_block.conv2.conv", "downsamples.2.conv2.conv", "upsamples.3.conv_block.conv2.conv")


def comparison_runs(runs: dict[tuple[int, str], RunFolder], seeds: list[int]) -> tuple[int, list[str]] | None:
    """
    The seed and the methods of the feature-map comparison: the first seed whose baseline, TaylorFO and at least one
    Sauron run (the scheduled one, the paper's constants, or both) are finished; None if no seed has them yet.
    """
    for seed in seeds:
        finished = [m for m in COMPARED if (seed, m) in runs and runs[(seed, m)].done]
        if {"baseline", "taylorfo"} <= set(finished) and {"sauron", "sauron_scheduled"} & set(finished):
            return seed, finished
    return None


def write_comparisons(runs: dict[tuple[int, str], RunFolder], split: dict, args: argparse.Namespace,
                      outputs: list[Path]) -> None:
    """Feature maps of the baseline and each finished pruning method of one seed (:func:`comparison_runs`)."""
    chosen = comparison_runs(runs, args.seeds)
    if chosen is None:
        print("feature map comparison skipped: no seed has finished baseline, Sauron and TaylorFO runs")
        return
    seed, methods = chosen
    case, image = comparison_frame(split, args.all_set, tuple(args.recipe))
    parser = ConfigParser()
    parser.read_config(str(SOURCE / "configs" / "inference.json"))
    networks = networks_from_checkpoints(parser.get_parsed_content("network_def"),
                                         {m: runs[(seed, m)].model for m in methods})
    for folder in outputs:
        page = write_feature_map_comparison(networks, image, folder / "feature_maps_polypgen",
                                            title=f"PolypGen test frame {case}, seed {seed}",
                                            layers=DOC_LAYERS if folder == SOURCE / "docs" else None)
        print(f"feature map comparison: {page}")


def add_dice_vs_reference(rows: list[dict], scores: dict[tuple[int, str], dict[str, float]],
                          plans: dict[str, Plan]) -> None:
    """Each run's mean paired per-frame Dice difference against its same-seed reference, once every run is read."""
    for row in rows:
        seed, method = row["seed"], row["method"]
        reference = plans[method].reference
        if method != reference and (seed, reference) in scores:
            _, differences = paired_differences(scores[(seed, method)], scores[(seed, reference)])
            row["dice_vs_reference"] = float(differences.mean())


def report(runs: dict[tuple[int, str], RunFolder], plans: dict[str, Plan], split: dict,
           args: argparse.Namespace) -> dict:
    """Measure every finished run and compare each with its same-seed reference."""
    warnings.filterwarnings("ignore", message="input's size at dim=1 does not match num_features")
    roi = tuple(training_setting("roi_size", args.all_set, tuple(args.recipe)))
    shape = (1, 3, *roi)
    centres = {item["case"]: item["centre"] for item in split["test"]}
    scores: dict[tuple[int, str], dict[str, float]] = {}
    rows: list[dict] = []
    base_macs: dict[int, int] = {}
    for (seed, method), run in sorted(runs.items(), key=lambda kv: (kv[0][0], list(plans).index(kv[0][1]))):
        if not run.done:
            print(f"not finished, left out: seed {seed} {method}")
            continue
        scores[(seed, method)] = read_case_scores(run.cases())
        row = {"method": method, "peer": plans[method].peer, "seed": seed,
               **measure_run(run, base_macs.get(seed), shape, args)}
        if method == "baseline":
            base_macs[seed] = row["macs"]
        row["macs_removed"] = 1.0 - row["macs"] / base_macs[seed] if seed in base_macs else None
        row["test_dice"] = float(np.mean(list(scores[(seed, method)].values())))
        # the evidence behind every paired interval, kept with the report: the run folders (checkpoints) are too
        # large to publish and need not outlive the machine they trained on
        row["frame_dice"] = scores[(seed, method)]
        rows.append(row)
        print(f"measured seed {seed} {method}: Dice {row['test_dice']:.4f}, MACs {row['macs'] / 1e6:.1f} M", flush=True)
    add_dice_vs_reference(rows, scores, plans)
    result = {"test_frames": len(split["test"]), "resolution": list(roi), "deploy_resolution": list(DEPLOY_SIZE),
              "threads": args.threads, "epochs": args.epochs, "finetune_epochs": args.finetune_epochs,
              "empty_frames": "Dice 1 when nothing is predicted, 0 for any predicted polyp (ignore_empty=false)",
              "runs": rows, "summary": summarise(rows, scores, plans, centres, args.resamples),
              "versus_controls": versus_controls(scores, args.resamples),
              "training_curves": {"seed": args.seeds[0], "runs": training_curves(runs, args.seeds[0])}}
    result["runtime_note"] = runtime_note({f"{r['seed']}/{r['method']}": r["runtimes"] for r in rows})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the PolypGen folder (data_C1 .. data_C6)")
    parser.add_argument("--work", required=True, help="folder for the runs and the results (resumable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=None, help="started in this order, each after the runs it "
                        "needs, their references last (default: every method but the labelled variants, which run "
                        "only when named: sauron_regularised)")
    parser.add_argument("--epochs", type=int, default=100, help="baseline / Sauron training epochs")
    parser.add_argument("--finetune_epochs", type=int, default=100, help="epochs of runs that start from the baseline")
    parser.add_argument("--val_fraction", type=float, default=0.2)
    parser.add_argument("--test_fraction", type=float, default=0.2)
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at the same time")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all (training and latency)")
    parser.add_argument("--recipe", nargs="*", default=[REAL_DATA_RECIPE], metavar="FILE",
                        help="config files of the bundle's configs/ laid over train.json in every run (default: "
                             f"{REAL_DATA_RECIPE}, the recipe for real frames; none: --recipe)")
    parser.add_argument("--set", dest="all_set", action="append", default=[], metavar="ID=VALUE",
                        help="config override for every run (repeatable), e.g. --set roi_size=[160,160]")
    parser.add_argument("--method_set", action="append", default=[], metavar="METHOD:ID=VALUE",
                        help="config override for one method's runs (repeatable), e.g. "
                             "--method_set sauron:sauron#target_macs_reduction=0.9")
    parser.add_argument("--report", action="store_true", help="train nothing; measure and compare finished runs")
    parser.add_argument("--feature_maps", action="store_true", help="train and time nothing; only write the feature "
                        "map comparison of one seed's baseline, Sauron and TaylorFO on a test frame")
    parser.add_argument("--docs", action="store_true", help="with --report or --feature_maps: also write the results "
                        "into the bundle's docs/ (benchmark_polypgen.json/.md/.png, feature_maps_polypgen/)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating latency rounds")
    parser.add_argument("--runtimes", nargs="+", default=None, choices=list(RUNTIME_LATENCY),
                        help="runtimes to time every model in (default: all installed here)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per latency round")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    args = parser.parse_args()

    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = Path(args.data).resolve()
    for name in args.recipe:
        if not (SOURCE / "configs" / name).is_file():
            raise SystemExit(f"--recipe {name}: no such file in {SOURCE / 'configs'}")
    plans = method_plans(args.epochs, args.finetune_epochs, tuple(args.recipe))
    methods = with_dependencies(args.methods or default_methods(plans), plans)
    split = fixed_split(data, work, args.val_fraction, args.test_fraction)
    split_file = Path(split["info"]["split_file"])
    for item in args.method_set:
        method, _, override = item.partition(":")
        if method not in plans or "=" not in override:
            raise SystemExit(f"--method_set {item!r}: expected METHOD:ID=VALUE with METHOD one of {', '.join(plans)}")
        plan = plans[method]
        plans[method] = replace(plan, overrides=plan.overrides + tuple(cli_overrides([override])))
    runs = {(seed, m): RunFolder(work, plans[m], seed) for seed in args.seeds for m in methods}
    outputs = [work] + ([SOURCE / "docs"] if args.docs else [])
    if args.feature_maps:
        write_comparisons(runs, split, args, outputs)
        return
    if not args.report:
        failed = run_all(runs, data, split_file, cli_overrides(args.all_set), args.jobs, args.threads)
        if failed:
            raise SystemExit(f"failed runs: {', '.join(failed)}")
        print("every run finished; measure and compare with --report")
        return
    result = report(runs, plans, split, args)
    for folder in outputs:
        (folder / "benchmark_polypgen.json").write_text(json.dumps(result, indent=2) + "\n")
        (folder / "benchmark_polypgen.md").write_text(markdown(result))
        plot(result, folder / "benchmark_polypgen.png")
        plot_curves(result["training_curves"]["seed"], result["training_curves"]["runs"],
                    folder / "benchmark_polypgen_curves.png")
    write_comparisons(runs, split, args, outputs)
    print(markdown(result))


if __name__ == "__main__":
    main()
