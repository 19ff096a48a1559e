"""Engine demo: cut half of every prunable channel group of a MONAI UNet and measure what it buys.

Run with ``python -m monai_pruning.engine_demo``.  Which channels go is decided by the L1 norm of the producing
convolutions' filters (smallest first), so the run is deterministic; the point is the surgery and the measurement,
not the choice.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner
from monai_pruning.measure import measure_complexity, measure_latency


def _filter_norms(pruner: ChannelPruner, name: str) -> torch.Tensor:
    """Summed L1 norm of each channel's filters over the group's producers."""
    modules = dict(pruner.network.named_modules())
    norms = torch.zeros(pruner.prunable_groups[name].size)
    for producer in pruner.prunable_groups[name].producers:
        weight = modules[producer].weight.detach()
        out_dim = 1 if isinstance(modules[producer], torch.nn.modules.conv._ConvTransposeNd) else 0
        norms += weight.abs().transpose(0, out_dim).flatten(1).sum(1)
    return norms


def halve_every_group(pruner: ChannelPruner) -> dict[str, list[int]]:
    """The weakest half of each prunable group (whole blocks where GroupNorm requires them)."""
    removals = {}
    for name, group in pruner.prunable_groups.items():
        count = min(group.size // 2, pruner.removable(name)) // group.unit * group.unit
        order = torch.argsort(_filter_norms(pruner, name), stable=True).tolist()
        removals[name] = sorted(order[:count]) if group.unit == 1 else sorted(
            {c // group.unit * group.unit + k for c in order[: count // group.unit] for k in range(group.unit)})
    return removals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="input height and width in pixels")
    parser.add_argument("--repeats", type=int, default=20, help="timed forward passes per latency measurement")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for the latency measurement")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    network = UNet(2, 1, 2, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2)
    shape = (1, 1, args.size, args.size)
    before = measure_complexity(network, shape)
    latency_before = measure_latency(network, shape, repeats=args.repeats, num_threads=args.threads)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruner = ChannelPruner(network, (2, 1, 64, 64))
    widths_before = pruner.widths()
    removed = pruner.cut(halve_every_group(pruner))
    after = measure_complexity(network, shape)
    latency_after = measure_latency(network, shape, repeats=args.repeats, num_threads=args.threads)

    print(f"MONAI UNet 2D, input {tuple(shape)}, {len(widths_before)} prunable channel groups, "
          f"{sum(removed.values())} of {sum(widths_before.values())} channels removed")
    print(f"{'':<22}{'before':>14}{'after':>14}{'after/before':>14}")
    print(f"{'parameters':<22}{before.params:>14,}{after.params:>14,}{after.params / before.params:>14.3f}")
    print(f"{'MACs':<22}{before.macs:>14,}{after.macs:>14,}{after.macs / before.macs:>14.3f}")
    print(f"{'CPU latency (median)':<22}{latency_before.median_s * 1e3:>12.1f}ms{latency_after.median_s * 1e3:>12.1f}ms"
          f"{latency_after.median_s / latency_before.median_s:>14.3f}")
    print(f"latency: {args.threads} threads, {args.repeats} timed passes after warm-up, torch.inference_mode")


if __name__ == "__main__":
    main()
