"""Side-by-side benchmark of a bundle: unpruned baseline, Sauron and TaylorFO, measured in one run.

    python benchmarks/pruning_benchmark.py polyp_endoscopy_segmentation --work /tmp/bench [--epochs 60]

Steps (each a real ``python -m monai.bundle run`` on a private copy of the bundle, so nothing in the repository is
touched): train the baseline for ``--epochs``; train with ``prune_sauron.json`` for the same number of epochs from
scratch; fine-tune the baseline with ``prune_taylorfo.json``; evaluate each final ``models/model.pt`` on the held-out
split.  Then, per model: parameters, MACs (batch 1 at the bundle's ``roi_size``), median CPU latency (batch 1,
``--threads`` threads), checkpoint size on disk, peak inference memory, mean test Dice; and the latency of a dense
network of the same architecture whose widths are scaled uniformly to the pruned MACs.  Ratios are against the
baseline.  Writes ``results.json`` and ``results.md`` (a Markdown table) to ``--work``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monai_pruning.engine import load_pruned_network  # noqa: E402
from monai_pruning.measure import measure_complexity, measure_latency, peak_inference_memory_mb  # noqa: E402


def run_bundle(root: Path, configs: list[str], overrides: list[str], log: Path) -> float:
    """Run one bundle command; returns its wall time in seconds."""
    files = "[" + ",".join(f"'configs/{c}'" for c in configs) + "]"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", files,
               "--meta_file", "configs/metadata.json", *overrides]
    start = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run(command, cwd=root, stdout=out, stderr=subprocess.STDOUT)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)} (see {log})")
    return time.perf_counter() - start


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


def mean_dice(csv_path: Path) -> float:
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    mean_row = next(r for r in rows if r["case"] == "mean")
    dice_columns = [k for k in mean_row if "dice" in k]
    return sum(float(mean_row[k]) for k in dice_columns) / len(dice_columns)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="bundle folder name under bundles/")
    parser.add_argument("--work", required=True, help="scratch folder for the runs and the results")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: the bundle's)")
    parser.add_argument("--finetune_epochs", type=int, default=None, help="TaylorFO fine-tuning epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["baseline", "sauron", "taylorfo"])
    parser.add_argument("--measure_only", action="store_true", help="reuse the runs already in --work")
    args = parser.parse_args()

    source = REPO / "bundles" / args.bundle
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    common = ["--num_epochs", str(args.epochs)] if args.epochs else []
    plans = {
        "baseline": (["train.json"], common, None),
        "sauron": (["train.json", "prune_sauron.json"], common, None),
        "taylorfo": (["train.json", "prune_taylorfo.json"],
                     ["--num_epochs", str(args.finetune_epochs)] if args.finetune_epochs else [], "baseline"),
    }
    results: dict[str, dict[str, Any]] = {}
    roots: dict[str, Path] = {}
    for method in args.methods:
        configs, overrides, starts_from = plans[method]
        root = work / method
        roots[method] = root
        if args.measure_only:
            results[method] = {"train_s": None, "dice": mean_dice(root / "eval" / "case_metrics.csv")}
            continue
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(source, root, ignore=shutil.ignore_patterns("data", "runs", "models", "eval", "predictions"))
        if starts_from is not None:
            (root / "models").mkdir(exist_ok=True)
            shutil.copy(roots[starts_from] / "models" / "model.pt", root / "models" / "model.pt")
        # all runs share the baseline's demo data folder, so the phantoms and the split are identical
        shared = ["--demo_dir", str(work / "data" / "demo")]
        train_s = run_bundle(root, configs, overrides + shared, work / f"{method}_train.log")
        run_bundle(root, ["train.json", "evaluate.json"], shared, work / f"{method}_evaluate.log")
        results[method] = {"train_s": train_s, "dice": mean_dice(root / "eval" / "case_metrics.csv")}

    meta = ConfigParser()
    meta.read_config(str(source / "configs" / "inference.json"))
    in_channels = meta["network_def"]["in_channels"]
    shape = (1, in_channels, *meta["roi_size"])
    for method, root in roots.items():
        checkpoint = root / "models" / "model.pt"
        model = load_model(str(source), str(checkpoint))
        complexity = measure_complexity(model, shape)
        latency = measure_latency(model, shape, repeats=args.repeats, num_threads=args.threads)
        scripted = work / f"{method}.ts"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.save(torch.jit.script(model), str(scripted))
        memory = peak_inference_memory_mb(str(scripted), shape, num_threads=args.threads)
        results[method].update(params=complexity.params, macs=complexity.macs, latency_s=latency.median_s,
                               checkpoint_mb=os.path.getsize(checkpoint) / 2**20, peak_memory_mb=memory)
        if method != "baseline":
            dense, scale = dense_equivalent(source, complexity.macs, shape)
            results[method]["dense_same_macs_latency_s"] = measure_latency(
                dense, shape, repeats=args.repeats, num_threads=args.threads).median_s
            results[method]["dense_width_scale"] = scale
        history = root / "runs" / "pruning" / "pruning_history.json"
        if history.is_file():
            rows = json.loads(history.read_text())
            rows = rows.get("rows", rows) if isinstance(rows, dict) else rows
            times = [r.get("time_s") for r in rows if isinstance(r.get("time_s"), (int, float))]
            if len(times) >= 4:
                results[method]["first_epochs_s"] = sum(times[:2]) / 2
                results[method]["last_epochs_s"] = sum(times[-2:]) / 2

    base = results.get("baseline")
    lines = ["| model | params | MACs | MACs removed | test Dice | Dice - baseline | CPU latency (ms) | speed-up | "
             "dense same-MACs latency (ms) | pruned / dense | checkpoint (MB) | peak inference memory (MB) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for method, r in results.items():
        removed = 1 - r["macs"] / base["macs"] if base else float("nan")
        dense = r.get("dense_same_macs_latency_s")
        lines.append(
            f"| {method} | {r['params']:,} | {r['macs']:,} | {removed:.1%} | {r['dice']:.4f} | "
            f"{r['dice'] - base['dice']:+.4f} | {r['latency_s'] * 1e3:.1f} | {base['latency_s'] / r['latency_s']:.2f}x | "
            f"{dense * 1e3:.1f} | {r['latency_s'] / dense:.2f} | " if dense else
            f"| {method} | {r['params']:,} | {r['macs']:,} | {removed:.1%} | {r['dice']:.4f} | "
            f"{r['dice'] - base['dice']:+.4f} | {r['latency_s'] * 1e3:.1f} | {base['latency_s'] / r['latency_s']:.2f}x | "
            "- | - | "
        )
        lines[-1] += f"{r['checkpoint_mb']:.2f} | {r['peak_memory_mb']:.0f} |"
    (work / "results.json").write_text(json.dumps(results, indent=2))
    (work / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
