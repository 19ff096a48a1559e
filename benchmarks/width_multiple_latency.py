"""What keeping every width at a multiple of k would do to a pruned network's CPU latency, before training one.

    pip install -e ".[deploy]"     # ONNX Runtime and OpenVINO, next to eager PyTorch and TorchScript
    python benchmarks/width_multiple_latency.py bundles/polyp_endoscopy_segmentation \\
        /work/runs/polypgen/seed0/taylorfo/models/model.pt --multiples 8 16 --size 352 352

Vectorised CPU convolutions (oneDNN in ONNX Runtime and OpenVINO, PyTorch's own kernels) work on blocks of 8 or 16
channels, so a pruned layer of 27 channels costs about what one of 32 does, and a network with such widths is slower
than a dense network of the same MACs. This script takes a pruned checkpoint's widths, rounds every prunable group up
to a multiple of each k (never above the unpruned width; weights random: only the architecture is timed), and times
the pruned network, each rounded one and a uniformly narrower dense network of equal MACs for each of them
(``pruning_benchmark.dense_equivalent``), in alternating rounds, batch 1, in every installed runtime. It prints a table
(latency in ms; pruned / dense of equal MACs) and writes it as JSON with ``--out``. The answer says whether
``taylorfo#width_multiple`` is worth a training run: it is what ``docs/taylorfo.md`` reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pruning_benchmark import dense_equivalent, load_model, network_def  # noqa: E402

from monai_pruning.engine import ChannelPruner  # noqa: E402
from monai_pruning.measure.complexity import measure_complexity  # noqa: E402
from monai_pruning.measure.latency import available_runtimes, compare_runtimes, size_label  # noqa: E402


def rounded_widths(widths: dict[str, int], unpruned: dict[str, int], multiple: int) -> dict[str, int]:
    """Every group's width rounded up to a multiple of ``multiple``, capped at its unpruned width."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ValueError(f"rounded_widths: the multiple must be an int >= 1, got {multiple!r}.")
    missing = sorted(set(widths) - set(unpruned))
    if missing:
        raise ValueError(f"rounded_widths: groups {missing} are not groups of the unpruned network.")
    return {name: min(unpruned[name], -(-width // multiple) * multiple) for name, width in widths.items()}


def network_with_widths(bundle: Path, widths: dict[str, int], trace_shape: tuple[int, ...]) -> torch.nn.Module:
    """The bundle's unpruned network cut to ``widths`` (its last channels removed: only the shapes matter here)."""
    network = network_def(bundle)
    pruner = ChannelPruner(network, trace_shape)
    full = pruner.widths()
    unknown = sorted(set(widths) - set(full))
    if unknown:
        raise ValueError(f"network_with_widths: groups {unknown} are not prunable groups of {bundle.name}'s network.")
    pruner.cut({name: range(widths[name], full[name]) for name in widths if widths[name] < full[name]})
    return network


def measure(bundle: Path, checkpoint: Path, multiples: list[int], size: tuple[int, ...],
            runtimes: list[str] | None = None, rounds: int = 5, repeats: int = 10, threads: int = 2) -> dict[str, Any]:
    """
    Latency of the pruned network and of its width-rounded versions, each against its dense network of equal MACs.

    Returns ``{"size": [H, W], "networks": {name: {"widths": ..., "macs": MACs at ``size``, "macs_fraction": of the
    unpruned network, "dense_scale": the dense network's width factor, "runtimes": {runtime: {"latency_s": ...,
    "dense_latency_s": ..., "pruned_over_dense": ...}}}}}``; names: ``"pruned"``, ``"multiple_<k>"``.
    """
    config = ConfigParser()
    config.read_config(str(bundle / "configs" / "inference.json"))
    in_channels = config.get_parsed_content("network_def#in_channels")
    shape = (1, in_channels, *size)
    trace_shape = (2, in_channels, *size)
    unpruned_network = network_def(bundle)
    unpruned_macs = measure_complexity(unpruned_network, shape).macs
    unpruned = ChannelPruner(unpruned_network, trace_shape).widths()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = load_model(str(bundle), str(checkpoint)).float()
    widths = ChannelPruner(pruned, trace_shape).widths()
    networks = {"pruned": (pruned, widths)}
    for multiple in multiples:
        rounded = rounded_widths(widths, unpruned, multiple)
        networks[f"multiple_{multiple}"] = (network_with_widths(bundle, rounded, trace_shape), rounded)
    models: dict[str, torch.nn.Module] = {}
    result: dict[str, Any] = {"size": list(size), "networks": {}}
    for name, (network, group_widths) in networks.items():
        macs = measure_complexity(network, shape).macs
        dense, scale = dense_equivalent(bundle, macs, shape)
        models[name], models[f"dense_{name}"] = network, dense
        result["networks"][name] = {"widths": group_widths, "macs": macs, "macs_fraction": macs / unpruned_macs,
                                    "dense_scale": scale, "runtimes": {}}
    timed = compare_runtimes(models, [shape], runtimes=runtimes or available_runtimes(), rounds=rounds,
                             repeats=repeats, num_threads=threads)
    label = size_label(shape)
    for name, entry in result["networks"].items():
        for runtime, sizes in timed[name].items():
            latency, dense_latency = sizes[label]["latency_s"], timed[f"dense_{name}"][runtime][label]["latency_s"]
            entry["runtimes"][runtime] = {"latency_s": latency, "dense_latency_s": dense_latency,
                                          "pruned_over_dense": latency / dense_latency}
    return result


def markdown_table(result: dict[str, Any]) -> str:
    """One row per network: MACs left, then per runtime its latency and its ratio to the dense network of equal MACs."""
    networks = result["networks"]
    runtimes = list(next(iter(networks.values()))["runtimes"])
    size = "x".join(str(s) for s in result["size"])
    lines = [f"| network ({size}, batch 1) | MACs left | " + " | ".join(
                 f"{runtime}: ms (pruned / dense)" for runtime in runtimes) + " |",
             "|---|---:|" + "---:|" * len(runtimes)]
    for name, entry in networks.items():
        cells = [f"{entry['runtimes'][r]['latency_s'] * 1e3:.1f} ({entry['runtimes'][r]['pruned_over_dense']:.2f})"
                 for r in runtimes]
        lines.append(f"| {name} | {entry['macs_fraction']:.1%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="the bundle folder whose network the checkpoint holds")
    parser.add_argument("checkpoint", type=Path, help="a pruned checkpoint (models/model.pt of a pruning run)")
    parser.add_argument("--multiples", type=int, nargs="+", default=[8], help="width multiples to try (default 8)")
    parser.add_argument("--size", type=int, nargs="+", default=[352, 352], help="spatial input size (default 352 352)")
    parser.add_argument("--runtimes", nargs="+", default=None, help="default: every installed runtime")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--repeats", type=int, default=10, help="timed passes per network and round (default 10)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    for path, what in ((args.bundle / "configs" / "inference.json", "bundle"), (args.checkpoint, "checkpoint")):
        if not path.is_file():
            raise SystemExit(f"width_multiple_latency: {what} file {path} not found.")
    if any(k < 1 for k in args.multiples):
        raise SystemExit(f"width_multiple_latency: --multiples must be ints >= 1, got {args.multiples}.")
    result = measure(args.bundle, args.checkpoint, args.multiples, tuple(args.size), args.runtimes, args.rounds,
                     args.repeats, args.threads)
    print(markdown_table(result), end="")
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
