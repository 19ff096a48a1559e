"""Summary over training seeds of several ``pruning_benchmark.py`` work folders (one per seed, one split).

    python benchmarks/seed_summary.py /tmp/kidney/seed0 /tmp/kidney/seed1 /tmp/kidney/seed2 --out /tmp/kidney

Per method, over the folders that hold it: the seeds, the mean fraction of the baseline's MACs removed and the mean
test Dice (per case: the mean over classes of ``<work>/<method>/eval/case_metrics.csv``, a class whose Dice is
undefined for the case, NaN, left out: the 3D bundles' ``ignore_empty`` for a class absent from its ground truth;
the NaN cells must be the same as the baseline's), per class (``results.json``), and "Dice vs reference":
the per-case Dice difference against the same-seed reference (Sauron and baseline_ft: the baseline; TaylorFO and the
Torch-Pruning peers, which start from the baseline: baseline_ft, trained as long), averaged over cases and seeds,
with a 95% crossed bootstrap interval over seeds and cases (``monai_pruning.report.paired_dice``); and TaylorFO
against each Torch-Pruning peer, case by case on the seeds where both ran (TaylorFO minus the peer, with the same
interval), for "at or above every peer" and where the intervals overlap. Writes
``seed_summary.json`` and ``seed_summary.md`` to ``--out``; the table says whether the cases are synthetic phantoms.
Every folder must hold ``results.json`` (the benchmark's measurement), ``split/split.json`` and the same test cases.

``seed_summary.json`` also keeps what the summary was computed from (``runs``: per seed, each method's MACs, Dice per
class and Dice per test case), so a published summary is evidence that outlives the work folders: ``--from_summary``
recomputes the table and intervals from such a file alone (other ``--resamples``, or after a change to this script)::

    python benchmarks/seed_summary.py --from_summary docs/seed_summary_demo.json --out /tmp/again
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from monai_pruning.data.demo_data import is_phantom_dataset  # noqa: E402
from monai_pruning.report.comparison import interval_cell, markdown_table, percent_cell  # noqa: E402
from monai_pruning.report.paired_dice import paired_interval, read_case_scores, undefined_cells  # noqa: E402
from pruning_benchmark import REFERENCES as PRUNED_REFERENCES  # noqa: E402
from pruning_benchmark import TAYLORFO_PEERS  # noqa: E402

# each method's same-seed reference: the dense model trained as long from the same start (the pruned methods' as
# pruning_benchmark.py tables them; the baseline fine-tuned without pruning is compared with the baseline)
REFERENCES = {"baseline": "baseline", "baseline_ft": "baseline", **PRUNED_REFERENCES}
# the peers each pruning method is compared with at equal MACs (pruning_benchmark.py drives them to TaylorFO's MACs)
PEER_COMPARISONS = {"taylorfo": TAYLORFO_PEERS}


class SummaryError(ValueError):
    """A work folder that cannot be summarised with the others; the message is one line naming it."""


def split_case_names(case_ids: Iterable[str], test: Iterable[str]) -> dict[str, str]:
    """
    Each evaluation case id -> the split's name for it. ``CaseMetricsReport`` names a case after its image file,
    lengthened by its folder where file names repeat (KiTS: ``case_00001/imaging``, every image being
    ``imaging.nii.gz``); the split names the case (``case_00001``). An id that is not a split case is named by its
    first folder if that one is; otherwise it is left as it is (and then fails the test-case check).
    """
    cases = set(test)
    return {case: case if case in cases or case.split("/")[0] not in cases else case.split("/")[0]
            for case in case_ids}


def read_work(work: Path) -> dict[str, Any]:
    """One seed's folder: its methods' MACs (from ``results.json``), per-case test Dice, test cases and data kind."""
    results_file, split_file = work / "results.json", work / "split" / "split.json"
    for needed in (results_file, split_file):
        if not needed.is_file():
            raise SummaryError(f"{work}: no {needed.relative_to(work)} (run pruning_benchmark.py with --work {work})")
    results = json.loads(results_file.read_text())
    split = json.loads(split_file.read_text())
    if "baseline" not in results or "macs" not in results["baseline"]:
        raise SummaryError(f"{results_file}: no measured baseline (its MACs are what 'MACs removed' is relative to)")
    scores: dict[str, dict[str, float]] = {}
    undefined: dict[str, set[tuple[str, str]]] = {}
    for method in ["baseline", *(m for m in results if m != "baseline")]:
        csv_path = work / method / "eval" / "case_metrics.csv"
        if not csv_path.is_file():
            raise SummaryError(f"{csv_path}: missing (the test Dice per case of {method})")
        read = read_case_scores(csv_path, undefined="omit")
        name = split_case_names(read, split["test"])
        scores[method] = {name[case]: value for case, value in read.items()}
        if set(scores[method]) != set(split["test"]):
            raise SummaryError(f"{csv_path}: its cases are not the test cases of {split_file}")
        undefined[method] = {(name[case], column) for case, column in undefined_cells(csv_path)}
        if undefined[method] != undefined["baseline"]:
            differing = sorted(undefined[method] ^ undefined["baseline"])[:3]
            raise SummaryError(f"{csv_path}: its undefined (NaN) Dice cells differ from the baseline's, e.g. "
                               f"{differing}: were both evaluated with the same ignore_empty?")
    record = work / "baseline" / "runs" / "run_record.json"
    return {"work": str(work), "seed": json.loads(record.read_text())["seed"] if record.is_file() else None,
            "synthetic": is_phantom_dataset(Path(split["dataset_dir"])), "test": sorted(split["test"]),
            # only what the summary reads: results.json also holds timings and paths of that machine
            "results": {method: {key: measured[key] for key in ("macs", "class_dice") if key in measured}
                        for method, measured in results.items() if method in scores},
            "scores": scores}


def read_summary_runs(summary_file: Path) -> list[dict[str, Any]]:
    """The per-seed runs a ``seed_summary.json`` was computed from (its ``runs``), to summarise them again."""
    try:
        runs = json.loads(Path(summary_file).read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SummaryError(f"{summary_file}: not a seed_summary.json with its runs ({error!r})") from None
    for run in runs:
        missing = [key for key in ("work", "seed", "synthetic", "test", "results", "scores") if key not in run]
        if missing or "baseline" not in run["scores"]:
            raise SummaryError(f"{summary_file}: run {run.get('work')} lacks {missing or ['the baseline scores']}")
    return runs


def _interval(runs: list[dict[str, Any]], method: str, other: str, resamples: int) -> dict[str, Any]:
    """``method``'s per-case Dice minus ``other``'s over ``runs`` (one per seed), with its interval, as plain data."""
    return paired_interval([(run["scores"][method], run["scores"][other]) for run in runs], resamples).record()


def summarise(works: list[Path], resamples: int = 10000) -> dict[str, Any]:
    """The summary of ``works`` (one folder per training seed); raises :class:`SummaryError` on a mismatch."""
    if not works:
        raise SummaryError("no work folders given")
    return summarise_runs([read_work(Path(w)) for w in works], resamples)


def summarise_runs(runs: list[dict[str, Any]], resamples: int = 10000) -> dict[str, Any]:
    """The summary of per-seed runs as :func:`read_work` returns them (or a summary's ``runs``), with those runs."""
    if not runs:
        raise SummaryError("no runs to summarise")
    first = runs[0]
    for run in runs[1:]:
        if run["test"] != first["test"]:
            only_here = sorted(set(run["test"]) - set(first["test"]))[:3]
            only_there = sorted(set(first["test"]) - set(run["test"]))[:3]
            raise SummaryError(f"{run['work']}: other test cases than {first['work']} (only here {only_here}, "
                               f"only there {only_there}): make every seed's runs on the same --set data settings")
    seeds = [run["seed"] for run in runs]
    repeated = sorted({s for s in seeds if s is not None and seeds.count(s) > 1})
    if repeated:
        raise SummaryError(f"training seed {repeated[0]} appears in more than one folder: "
                           f"{[str(r['work']) for r in runs if r['seed'] == repeated[0]]}")
    labels = [str(run["seed"]) if run["seed"] is not None else Path(run["work"]).name for run in runs]
    summary: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(m for run in runs for m in run["results"]):
        mine = [(label, run) for label, run in zip(labels, runs) if method in run["scores"]]
        reference = REFERENCES.get(method, "baseline")
        entry: dict[str, Any] = {
            "reference": reference, "seeds": [label for label, _ in mine],
            "macs_removed": float(np.mean([1.0 - run["results"][method]["macs"] / run["results"]["baseline"]["macs"]
                                           for _, run in mine])),
            "test_dice": float(np.mean([np.mean(list(run["scores"][method].values())) for _, run in mine])),
        }
        per_class = [run["results"][method].get("class_dice") for _, run in mine]
        if all(per_class) and len({tuple(c) for c in per_class}) == 1:
            entry["class_dice"] = {name: float(np.mean([c[name] for c in per_class])) for name in per_class[0]}
        paired = [run for _, run in mine if reference in run["scores"]]
        if method != reference and paired:
            entry["dice_vs_reference"] = _interval(paired, method, reference, resamples)
        summary[method] = entry
    versus_peers = []
    for method, peers in PEER_COMPARISONS.items():
        for peer in peers:
            both = [(label, run) for label, run in zip(labels, runs) if {method, peer} <= set(run["scores"])]
            if both:
                versus_peers.append({"method": method, "peer": peer,
                                     **_interval([run for _, run in both], method, peer, resamples),
                                     "seeds": [label for label, _ in both]})
    return {"synthetic": all(run["synthetic"] for run in runs), "test_cases": len(first["test"]),
            "works": [run["work"] for run in runs], "summary": summary, "versus_peers": versus_peers,
            "runs": runs}


def markdown(result: dict[str, Any]) -> str:
    """The summary as a markdown table with a heading line saying what the data and the interval are."""
    classes = any(len(s.get("class_dice", {})) > 1 for s in result["summary"].values())
    header = ["method", "reference", "seeds", "MACs removed", "test Dice", *(["per class"] if classes else []),
              "Dice vs reference [95% CI]", "interval excludes 0"]
    rows = []
    for method, s in result["summary"].items():
        versus = s.get("dice_vs_reference")
        per_class = ", ".join(f"{name} {value:.3f}" for name, value in s.get("class_dice", {}).items())
        rows.append([method, s["reference"], str(len(s["seeds"])), percent_cell(s["macs_removed"]),
                     f"{s['test_dice']:.4f}", *([per_class] if classes else []),
                     interval_cell(versus["mean"], versus["low"], versus["high"]) if versus else "(reference)",
                     ("yes" if versus["excludes_zero"] else "no") if versus else ""])
    data = ("SYNTHETIC demo phantoms, not real scans" if result["synthetic"] else "real data")
    lines = [f"{data}; {result['test_cases']} test cases, the same in every seed; test Dice: per case the mean over "
             "its classes with a defined Dice (the 3D bundles leave a class absent from a case's ground truth "
             "undefined), averaged over cases and seeds; per class: the evaluation's mean per class, averaged over "
             "seeds; Dice vs reference: mean paired per-case Dice difference against the same-seed reference, 95% "
             "bootstrap interval over seeds and cases.",
             "", *markdown_table(header, rows)]
    if result.get("versus_peers"):
        lines += ["", "Each method against its peers (mean paired per-case Dice difference, method - peer, 95% "
                  "bootstrap interval over seeds and cases):", "",
                  *markdown_table(["method", "peer", "seeds", "Dice difference [95% CI]", "interval excludes 0"],
                                  [[v["method"], v["peer"], str(len(v["seeds"])),
                                    interval_cell(v["mean"], v["low"], v["high"]),
                                    "yes" if v["excludes_zero"] else "no"] for v in result["versus_peers"]])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("works", nargs="*", type=Path, help="pruning_benchmark.py --work folders, one per seed")
    parser.add_argument("--from_summary", type=Path, metavar="JSON",
                        help="summarise the runs kept in an earlier seed_summary.json instead of work folders")
    parser.add_argument("--out", type=Path, required=True, help="folder for seed_summary.json and seed_summary.md")
    parser.add_argument("--resamples", type=int, default=10000, help="bootstrap resamples")
    args = parser.parse_args(argv)
    if bool(args.works) == bool(args.from_summary):
        parser.error("give the work folders or --from_summary, one of the two")
    try:
        if args.from_summary:
            result = summarise_runs(read_summary_runs(args.from_summary), resamples=args.resamples)
        else:
            result = summarise(args.works, resamples=args.resamples)
    except (SummaryError, ValueError) as error:
        raise SystemExit(f"seed_summary: {error}") from None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seed_summary.json").write_text(json.dumps(result, indent=2))
    text = markdown(result)
    (args.out / "seed_summary.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
