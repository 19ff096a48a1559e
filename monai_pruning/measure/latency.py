"""
Wall-clock inference latency of a network: what a pruned model buys on the hospital CPU it is shipped to.

Timings are taken the way a deployed model runs: evaluation mode, ``torch.inference_mode()``, a fixed intra-op
thread count (latency on a CPU depends on it more than on anything else), a fixed-seed random input, a few
untimed warm-up passes (one-off allocations, oneDNN kernel selection, CUDA context), then ``repeats`` timed passes
summarised by their median and 10th/90th percentiles. On CUDA every pass is synchronised so that the time covers
the kernels, not just their launch.

The same network can also be timed in the runtimes a collaborator deploys it with, on the CPU, one function per
runtime (:data:`RUNTIME_LATENCY`): eager PyTorch, TorchScript (what ``python -m monai.bundle ckpt_export`` writes),
and the ONNX export (free batch and spatial axes) in ONNX Runtime and OpenVINO (the ``deploy`` extra). Each returns
its timing and its output, so a caller can check that every runtime computes the same thing.
:func:`compare_runtimes` times several networks (a baseline and its pruned versions) in several runtimes and sizes
in alternating rounds, the way a comparison between them should be timed.
"""

from __future__ import annotations

import contextlib
import io
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from monai_pruning.measure.probe import example_input, probe_forward, validate_shape

__all__ = [
    "LatencyResult",
    "RUNTIME_LATENCY",
    "RuntimeLatency",
    "available_runtimes",
    "compare_runtimes",
    "eager_latency",
    "measure_latency",
    "onnxruntime_latency",
    "openvino_latency",
    "size_label",
    "torchscript_latency",
]


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

    @property
    def per_second(self) -> float:
        """Forward passes per second at the median time (frames per second for a batch of one frame)."""
        return 1.0 / self.median_s


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


@dataclass(frozen=True)
class RuntimeLatency:
    """
    Latency of one network in one runtime, on the CPU.

    Attributes:
        runtime: ``"eager"``, ``"torchscript"``, ``"onnxruntime"`` or ``"openvino"``.
        latency: the timed passes (median, percentiles, thread count).
        output: the output of the last timed pass (float32, CPU), to compare runtimes.
        batch: batch size of the input.
    """

    runtime: str
    latency: LatencyResult
    output: torch.Tensor
    batch: int

    @property
    def frames_per_second(self) -> float:
        """Samples (frames, or volumes in 3D) per second at the median time: batch / median seconds."""
        return self.batch / self.latency.median_s


def _cpu_input(module: nn.Module, input_shape: Sequence[int] | torch.Tensor, where: str) -> torch.Tensor:
    if not isinstance(module, nn.Module):
        raise TypeError(f"{where}: expected a torch.nn.Module, got {type(module).__name__}.")
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        if tensor.device.type != "cpu" or (tensor.is_floating_point() and tensor.dtype != torch.float32):
            raise ValueError(f"{where}: {name!r} is {tensor.dtype} on {tensor.device}; the runtimes run float32 on "
                             "the CPU: pass module.float().cpu().")
    x = example_input(module, input_shape, where, device=torch.device("cpu"))
    if x.device.type != "cpu" or x.dtype != torch.float32:
        raise ValueError(f"{where}: the input must be a float32 CPU tensor, got {x.dtype} on {x.device}.")
    return x


def _time_runtime(
    runtime: str, run: Callable[[], torch.Tensor], batch: int, warmup: int, repeats: int, num_threads: int
) -> RuntimeLatency:
    """``warmup`` untimed then ``repeats`` timed calls of ``run`` with torch limited to ``num_threads`` threads."""
    caller_threads = torch.get_num_threads()
    times = np.empty(repeats, dtype=np.float64)
    output = None
    try:
        torch.set_num_threads(num_threads)
        for _ in range(warmup):
            run()
        for i in range(repeats):
            start = time.perf_counter()
            output = run()
            times[i] = time.perf_counter() - start
    finally:
        torch.set_num_threads(caller_threads)
    p10, median, p90 = np.percentile(times, [10, 50, 90])
    result = LatencyResult(float(median), float(p10), float(p90), repeats=repeats, num_threads=num_threads)
    return RuntimeLatency(runtime, result, torch.as_tensor(output).detach().float().cpu(), batch)


def _eval_module_call(module: nn.Module, x: torch.Tensor, where: str) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return probe_forward(module, x, where)

    return run


def _checked_counts(warmup: int, repeats: int, num_threads: int, where: str) -> None:
    for value, name, minimum in ((warmup, "warmup", 0), (repeats, "repeats", 1), (num_threads, "num_threads", 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{where}: {name} must be an int >= {minimum}, got {value!r}.")


def eager_latency(
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    num_threads: int = 2,
) -> RuntimeLatency:
    """
    Eager PyTorch on the CPU, in evaluation mode under ``torch.inference_mode()`` (every submodule's train/eval flag
    is put back afterwards).

    Args:
        module: the network, float32 on the CPU.
        input_shape: ``(B, C, *spatial)`` of a fixed-seed random input, or the input tensor itself.
        warmup: untimed passes first (>= 0).
        repeats: timed passes (>= 1).
        num_threads: intra-op CPU threads during the passes (>= 1).
    """
    where = "eager_latency"
    _checked_counts(warmup, repeats, num_threads, where)
    x = _cpu_input(module, input_shape, where)
    modes = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        return _time_runtime("eager", _eval_module_call(module, x, where), x.shape[0], warmup, repeats, num_threads)
    finally:
        for sub, training in modes.items():
            sub.training = training


def torchscript_latency(
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    num_threads: int = 2,
) -> RuntimeLatency:
    """
    The network as ``python -m monai.bundle ckpt_export`` ships it (``torch.jit.script`` of the evaluation-mode
    network, not frozen), on the CPU. The profiling executor specialises the graph during the first passes, so keep
    ``warmup`` at 2 or more. Arguments as :func:`eager_latency`.
    """
    where = "torchscript_latency"
    _checked_counts(warmup, repeats, num_threads, where)
    x = _cpu_input(module, input_shape, where)
    modes = {sub: sub.training for sub in module.modules()}
    try:
        module.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit.script is deprecated in torch >= 2.10; ckpt_export uses it
            scripted = torch.jit.script(module)
        return _time_runtime(
            "torchscript", _eval_module_call(scripted, x, where), x.shape[0], warmup, repeats, num_threads
        )
    finally:
        for sub, training in modes.items():
            sub.training = training


def _onnx_latency(
    runtime: str,
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int,
    repeats: int,
    num_threads: int,
    onnx_file: str | None,
) -> RuntimeLatency:
    from monai_pruning.deploy import export_onnx, load_runtime  # the deploy extra, imported only when asked for

    where = f"{runtime}_latency"
    _checked_counts(warmup, repeats, num_threads, where)
    x = _cpu_input(module, input_shape, where)
    array = x.numpy()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(onnx_file) if onnx_file is not None else export_onnx(module, Path(folder) / "model.onnx", x.shape)
        run_array = load_runtime(path, runtime, num_threads)

        def run() -> torch.Tensor:
            return torch.from_numpy(run_array(array))

        return _time_runtime(runtime, run, x.shape[0], warmup, repeats, num_threads)


def onnxruntime_latency(
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    num_threads: int = 2,
    onnx_file: str | None = None,
) -> RuntimeLatency:
    """
    ONNX Runtime (CPU execution provider, all graph optimisations, ``num_threads`` intra-op threads) on the ONNX
    export of ``module`` with free batch and spatial axes (:func:`monai_pruning.deploy.export_onnx`, into a temporary
    file), or on ``onnx_file`` when given (``module`` then only gives the input's dtype). Needs the ``deploy`` extra.
    Other arguments as :func:`eager_latency`.
    """
    return _onnx_latency("onnxruntime", module, input_shape, warmup, repeats, num_threads, onnx_file)


def openvino_latency(
    module: nn.Module,
    input_shape: Sequence[int] | torch.Tensor,
    warmup: int = 5,
    repeats: int = 20,
    num_threads: int = 2,
    onnx_file: str | None = None,
) -> RuntimeLatency:
    """
    OpenVINO on the CPU (latency hint, float32 precision, ``num_threads`` threads) on the same ONNX export as
    :func:`onnxruntime_latency`. Needs the ``deploy`` extra.
    """
    return _onnx_latency("openvino", module, input_shape, warmup, repeats, num_threads, onnx_file)


#: the timing function of every runtime, by name
RUNTIME_LATENCY: dict[str, Callable[..., RuntimeLatency]] = {
    "eager": eager_latency,
    "torchscript": torchscript_latency,
    "onnxruntime": onnxruntime_latency,
    "openvino": openvino_latency,
}


def available_runtimes() -> list[str]:
    """The runtimes of :data:`RUNTIME_LATENCY` whose packages are installed here (eager and TorchScript always)."""
    import importlib.util

    names = ["eager", "torchscript"]
    if importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxscript") is not None:
        names += [name for name in ("onnxruntime", "openvino") if importlib.util.find_spec(name) is not None]
    return names


def size_label(shape: Sequence[int]) -> str:
    """``(1, 3, 352, 352)`` -> ``"352x352"``: the spatial size of a batch-first input shape, as timings are keyed."""
    return "x".join(str(int(v)) for v in shape[2:])


def _script(module: nn.Module) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit.script is deprecated in torch >= 2.10; ckpt_export uses it
        return torch.jit.script(module)


def _quiet_export(module: nn.Module, path: Path, shape: Sequence[int]) -> Path:
    """:func:`monai_pruning.deploy.export_onnx` without the exporter's progress lines and registry warnings."""
    from monai_pruning.deploy import export_onnx  # the deploy extra, imported only when asked for

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return export_onnx(module, path, shape)
    finally:
        exporter_log.setLevel(level)


def compare_runtimes(
    models: Mapping[str, nn.Module],
    shapes: Sequence[Sequence[int]],
    runtimes: Sequence[str] | None = None,
    rounds: int = 3,
    repeats: int = 10,
    num_threads: int = 2,
    warmup: int = 2,
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """
    CPU latency of every network in every runtime at every input size, timed in alternating rounds.

    Each network is scripted once (TorchScript) and exported once to ONNX with free batch and spatial axes (shared by
    ONNX Runtime and OpenVINO, loaded once each). Then ``rounds`` rounds each time every runtime x size x network in
    turn (``warmup`` untimed then ``repeats`` timed passes, ``num_threads`` threads), so that a change of the
    machine's load during the measurement hits all networks alike; a network's latency is the median of its round
    medians. The networks run in evaluation mode (their train/eval flags are put back afterwards) on the same
    fixed-seed inputs; each runtime's output is compared with eager PyTorch's once.

    Args:
        models: ``{name: network}``, float32 on the CPU, e.g. a baseline and its pruned versions.
        shapes: input shapes ``(B, C, *spatial)``, e.g. the training size and a deployment size, batch 1; the
            spatial sizes must differ.
        runtimes: names from :data:`RUNTIME_LATENCY`; None: every runtime installed here (:func:`available_runtimes`).
        rounds: alternating rounds (>= 1).
        repeats: timed passes per network, runtime, size and round (>= 1).
        num_threads: CPU threads of every runtime (>= 1).
        warmup: untimed passes before each timed block (>= 0; TorchScript specialises its graph during the first
            passes at a size, so keep it at 2 or more).

    Returns:
        ``{name: {runtime: {"HxW": {"latency_s": seconds, "fps": samples per second, "max_abs_difference": largest
        absolute difference of the output from eager PyTorch's}}}}``, in the order of ``models``, ``runtimes`` and
        ``shapes``.

    Raises:
        ValueError: bad counts, no models or shapes, a repeated size, an unknown or uninstalled runtime, a network not
            float32 on the CPU, or a forward pass that fails at a size.
    """
    where = "compare_runtimes"
    _checked_counts(warmup, repeats, num_threads, where)
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"{where}: rounds must be an int >= 1, got {rounds!r}.")
    if not models:
        raise ValueError(f"{where}: no models to time.")
    if isinstance(runtimes, str):
        raise ValueError(f"{where}: `runtimes` must be a list of runtime names, got the string {runtimes!r}.")
    installed = available_runtimes()
    names = list(dict.fromkeys(runtimes)) if runtimes is not None else installed
    for runtime in names:
        if runtime not in RUNTIME_LATENCY:
            raise ValueError(f"{where}: unknown runtime {runtime!r}; choose from {', '.join(RUNTIME_LATENCY)}.")
        if runtime not in installed:
            raise ValueError(f"{where}: runtime {runtime!r} is not installed here; "
                             'pip install -e ".[deploy]" adds it.')
    if not names or not shapes:
        raise ValueError(f"{where}: no {'runtimes' if not names else 'shapes'} to time.")
    checked = [validate_shape(shape, where) for shape in shapes]
    labels = [size_label(shape) for shape in checked]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{where}: every shape needs its own spatial size, got {labels}.")

    modes = {sub: sub.training for module in models.values() for sub in module.modules()}
    try:
        inputs: dict[str, dict[str, torch.Tensor]] = {}
        expected: dict[str, dict[str, torch.Tensor]] = {}
        for name, module in models.items():
            module.eval()
            inputs[name] = {label: _cpu_input(module, shape, where) for label, shape in zip(labels, checked)}
            with torch.inference_mode():
                expected[name] = {label: torch.as_tensor(probe_forward(module, x, where)).float()
                                  for label, x in inputs[name].items()}
        with tempfile.TemporaryDirectory() as folder:
            runners = _runners(models, names, checked[0], Path(folder), num_threads, where)
            times: dict[tuple[str, str, str], list[float]] = {}
            differences: dict[tuple[str, str, str], float] = {}
            for _ in range(rounds):
                for runtime in names:
                    for label in labels:
                        for name in models:
                            x = inputs[name][label]
                            run = runners[(name, runtime)]
                            timed = _time_runtime(runtime, lambda: run(x), x.shape[0], warmup, repeats, num_threads)
                            key = (name, runtime, label)
                            times.setdefault(key, []).append(timed.latency.median_s)
                            if key not in differences:
                                gap = (timed.output - expected[name][label]).abs().max()
                                differences[key] = float(gap)
    finally:
        for sub, training in modes.items():
            sub.training = training
    result: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name in models:
        for runtime in names:
            for label in labels:
                key = (name, runtime, label)
                latency = statistics.median(times[key])
                result.setdefault(name, {}).setdefault(runtime, {})[label] = {
                    "latency_s": latency,
                    "fps": inputs[name][label].shape[0] / latency,
                    "max_abs_difference": differences[key],
                }
    return result


def _runners(
    models: Mapping[str, nn.Module],
    runtimes: Sequence[str],
    example_shape: tuple[int, ...],
    folder: Path,
    num_threads: int,
    where: str,
) -> dict[tuple[str, str], Callable[[torch.Tensor], torch.Tensor]]:
    """Per network and runtime, a function from a CPU input to the output: scripted and exported once per network."""
    runners: dict[tuple[str, str], Callable[[torch.Tensor], torch.Tensor]] = {}
    for index, (name, module) in enumerate(models.items()):
        onnx_file = None
        for runtime in runtimes:
            if runtime in ("eager", "torchscript"):
                network = module if runtime == "eager" else _script(module)

                def run_module(x: torch.Tensor, network: nn.Module = network) -> torch.Tensor:
                    with torch.inference_mode():
                        return probe_forward(network, x, where)

                runners[(name, runtime)] = run_module
                continue
            from monai_pruning.deploy import load_runtime

            if onnx_file is None:
                onnx_file = _quiet_export(module, folder / f"model_{index}.onnx", example_shape)
            run_array = load_runtime(onnx_file, runtime, num_threads)

            def run_exported(x: torch.Tensor, run_array: Callable = run_array) -> torch.Tensor:
                return torch.from_numpy(run_array(x.numpy()))

            runners[(name, runtime)] = run_exported
    return runners
