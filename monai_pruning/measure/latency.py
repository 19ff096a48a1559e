"""
Wall-clock inference latency of a network: what a pruned model buys on the hospital CPU it is shipped to.

Timings are taken the way a deployed model runs: evaluation mode, ``torch.inference_mode()``, a fixed intra-op
thread count (latency on a CPU depends on it more than on anything else), a fixed-seed random input, a few
untimed warm-up passes (one-off allocations, oneDNN kernel selection, CUDA context), then ``repeats`` timed passes
summarised by their median and 10th/90th percentiles. On CUDA every pass is synchronised so that the time covers
the kernels, not just their launch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from monai_pruning.measure.probe import example_input, probe_forward

__all__ = ["LatencyResult", "measure_latency"]


@dataclass(frozen=True)
class LatencyResult:
    """
    Summary of timed forward passes.

    Attributes:
        median_s: median time of one forward pass, in seconds.
        p10_s: 10th percentile, in seconds (the fast end, little disturbed by other processes).
        p90_s: 90th percentile, in seconds (the slow end; a wide p10-p90 gap means a noisy machine).
        repeats: number of timed passes the statistics are taken over.
        num_threads: intra-op thread count used for the passes.
    """

    median_s: float
    p10_s: float
    p90_s: float
    repeats: int
    num_threads: int


def _check_count(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"measure_latency: {name} must be an int >= {minimum}, got {value!r}.")
    return value


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"measure_latency: device {device!r} is not a valid torch device.") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"measure_latency: device {str(resolved)!r} requested but CUDA is not available.")
    return resolved


def _same_device(tensor_device: torch.device, wanted: torch.device) -> bool:
    if tensor_device.type != wanted.type:
        return False
    if wanted.index is None or tensor_device.index is None:
        return True
    return tensor_device.index == wanted.index


def measure_latency(
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    num_threads: int = 2,
    device: str | torch.device = "cpu",
) -> LatencyResult:
    """
    Time ``repeats`` forward passes of ``module`` after ``warmup`` untimed ones.

    The module is switched to evaluation mode for the measurement and every submodule's train/eval flag is put
    back afterwards; the caller's intra-op thread count is restored too, even when a pass fails. The module is not
    moved: it must already be on ``device``.

    Args:
        module: the network.
        input_shape: full input shape including the batch dimension (a fixed-seed standard-normal tensor is made
            on ``device``), or an example tensor, used as is.
        warmup: untimed passes before timing (>= 0).
        repeats: timed passes (>= 1).
        num_threads: intra-op CPU threads (``torch.set_num_threads``) during the passes (>= 1).
        device: device the module lives on and the input is created on (``"cpu"``, ``"cuda"``, ``"cuda:1"``).

    Raises:
        ValueError: bad counts, an unknown or unavailable device, a module that is not on ``device``, or a
            forward pass that fails for ``input_shape``.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"measure_latency: expected a torch.nn.Module, got {type(module).__name__}.")
    warmup = _check_count(warmup, "warmup", 0)
    repeats = _check_count(repeats, "repeats", 1)
    num_threads = _check_count(num_threads, "num_threads", 1)
    target = _resolve_device(device)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if not _same_device(tensor.device, target):
            raise ValueError(
                f"measure_latency: {name!r} is on {tensor.device} but device={str(target)!r}; "
                "move the module with module.to(device) first."
            )
    x = example_input(module, input_shape, "measure_latency", device=target)
    synchronise = torch.cuda.synchronize if target.type == "cuda" else (lambda: None)

    modes = {sub: sub.training for sub in module.modules()}
    caller_threads = torch.get_num_threads()
    times = np.empty(repeats, dtype=np.float64)
    try:
        torch.set_num_threads(num_threads)
        module.eval()
        with torch.inference_mode():
            for _ in range(warmup):
                probe_forward(module, x, "measure_latency")
            synchronise()
            for i in range(repeats):
                start = time.perf_counter()
                probe_forward(module, x, "measure_latency")
                synchronise()
                times[i] = time.perf_counter() - start
    finally:
        torch.set_num_threads(caller_threads)
        for sub, training in modes.items():
            sub.training = training
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    return LatencyResult(
        median_s=float(median), p10_s=float(p10), p90_s=float(p90), repeats=repeats, num_threads=num_threads
    )
