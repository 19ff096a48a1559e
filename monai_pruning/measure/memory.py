"""
Peak resident memory (RAM) of one CPU inference, measured in a fresh Python process.

A fresh process is the only honest way to measure it: in the caller's process the allocator holds on to memory from
earlier work, and the high-water mark of resident memory can only go up.

What is reported: the peak resident memory after the forward pass minus the resident memory just before the model is
built (or the TorchScript file loaded), i.e. the extra peak RAM that the model's weights, the input, the activations
and any temporary buffers of one forward pass add on top of a Python interpreter with torch (and the builder's own
imports) loaded. That baseline (a few hundred MiB, the same for every model) is left out so that a pruned and an
unpruned model can be compared; add it back for "how much RAM does the machine need".

How the peak is read: on Linux, ``VmHWM`` of ``/proc/self/status``, reset to the current size just before the model is
built (``/proc/self/clear_refs``), so nothing earlier can hide under an older peak. ``resource.getrusage().ru_maxrss``
is not used there because Linux carries it over from the parent across fork and exec: a child started by a process
that once held 1 GiB reports at least 1 GiB. On macOS, where neither ``/proc`` file exists, ``ru_maxrss`` it is, and
memory that fits under the peak reached while importing is not seen. Other platforms are refused.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import types
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from torch import nn

from monai_pruning.measure.probe import validate_shape

__all__ = ["peak_inference_memory_mb"]

# marks the child's result line, so that anything the model prints on stdout cannot be mistaken for it
_RESULT_TAG = "MONAI_PRUNING_PEAK_RSS "

# the child: put the parent's import path in place first, so a builder from any module the caller imported unpickles
_BOOTSTRAP = (
    "import json, sys; sys.path[:0] = json.loads(sys.argv[1]); "
    "from monai_pruning.measure.memory import _child_main; _child_main()"
)


class _JobPickler(pickle.Pickler):
    """Pickler that refuses functions and classes of ``__main__``, which the fresh process cannot import."""

    def reducer_override(self, obj: object) -> object:
        if isinstance(obj, (types.FunctionType, type)) and obj.__module__ == "__main__":
            raise pickle.PicklingError(f"{obj.__qualname__!r} is defined in __main__, which a subprocess cannot import")
        return NotImplemented


def _pickle_job(job: dict) -> bytes:
    buffer = io.BytesIO()
    _JobPickler(buffer).dump(job)
    return buffer.getvalue()


def _status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux), e.g. ``VmHWM`` (peak resident) or ``VmRSS`` (resident)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"peak_inference_memory_mb: /proc/self/status has no {field} field.")


def _reset_peak() -> None:
    """Make the peak resident size equal the current one (Linux >= 4.0); without it the older peak stays."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
                clear_refs.write("5")
        except OSError:
            pass


def _peak_bytes() -> int:
    """Peak resident memory of this process image so far, in bytes."""
    if sys.platform.startswith("linux"):
        return _status_kib("VmHWM") * 1024
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # macOS reports bytes


def _child_main() -> None:
    """Entry point of the measuring process: read the job from stdin, print the resident sizes before and after."""
    job = pickle.loads(sys.stdin.buffer.read())
    import torch

    from monai_pruning.measure.probe import example_input

    torch.set_num_threads(job["num_threads"])
    _reset_peak()
    before = _peak_bytes()
    if job["torchscript"] is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load is deprecated but still works
            module = torch.jit.load(job["torchscript"], map_location="cpu")
    else:
        module = job["builder"]()
        if not isinstance(module, nn.Module):
            raise TypeError(f"the builder returned {type(module).__name__}, not a torch.nn.Module")
    module.eval()
    with torch.inference_mode():
        module(example_input(module, job["input_shape"], "peak_inference_memory_mb", device=torch.device("cpu")))
    after = _peak_bytes()
    print(_RESULT_TAG + json.dumps({"before": before, "after": after}), flush=True)


def peak_inference_memory_mb(
    model: str | os.PathLike | Callable[[], nn.Module],
    input_shape: Sequence[int],
    num_threads: int = 2,
    timeout_s: float = 600.0,
) -> float:
    """
    Extra peak RAM of one CPU forward pass, in MiB (2**20 bytes), measured in a fresh subprocess.

    See the module docstring for exactly what is counted (peak after the pass minus resident size before the model).

    Args:
        model: path to a TorchScript file (``torch.jit.save``), or a picklable callable with no arguments that
            returns the network, e.g. a module-level function or ``functools.partial(UNet, spatial_dims=2, ...)``
            (a lambda, a local function or a function of the ``__main__`` script cannot be sent to the subprocess).
        input_shape: full input shape including the batch dimension; the input is a fixed-seed random tensor.
        num_threads: intra-op CPU threads in the subprocess (oneDNN scratch memory grows with it).
        timeout_s: give up after this many seconds.

    Raises:
        TypeError: ``model`` is an ``nn.Module`` instance (pass the function that builds it instead).
        ValueError: the file does not exist, the builder cannot be pickled, or bad ``input_shape``/``num_threads``.
        RuntimeError: the subprocess failed (its last error line is quoted) or timed out, or the platform is neither
            Linux nor macOS.
    """
    where = "peak_inference_memory_mb"
    if not (sys.platform.startswith("linux") or sys.platform == "darwin"):
        raise RuntimeError(f"{where}: peak memory can be read on Linux and macOS only, not on {sys.platform}.")
    shape = validate_shape(input_shape, where)
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"{where}: num_threads must be an int >= 1, got {num_threads!r}.")
    job: dict = {"input_shape": shape, "num_threads": num_threads, "torchscript": None, "builder": None}
    if isinstance(model, nn.Module):
        raise TypeError(
            f"{where}: got a {type(model).__name__} instance; pass a TorchScript path or a function that builds it."
        )
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise ValueError(f"{where}: TorchScript file not found: {str(path)!r}.")
        job["torchscript"] = str(path.resolve())
    elif callable(model):
        job["builder"] = model
    else:
        raise TypeError(f"{where}: model must be a TorchScript path or a callable, got {type(model).__name__}.")
    try:
        payload = _pickle_job(job)
    except (pickle.PicklingError, AttributeError, TypeError) as err:
        raise ValueError(
            f"{where}: the builder cannot be sent to a subprocess ({err}); "
            "use a function of an importable module or functools.partial of a network class."
        ) from None

    command = [sys.executable, "-c", _BOOTSTRAP, json.dumps([p for p in sys.path if isinstance(p, str)])]
    try:
        done = subprocess.run(command, input=payload, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{where}: the measuring subprocess did not finish within {timeout_s} s.") from None
    stdout = done.stdout.decode(errors="replace")
    results = [line for line in stdout.splitlines() if line.startswith(_RESULT_TAG)]
    if done.returncode != 0 or not results:
        errors = [line for line in done.stderr.decode(errors="replace").splitlines() if line.strip()]
        last = errors[-1].strip() if errors else f"exit code {done.returncode}, no output"
        raise RuntimeError(f"{where}: the measuring subprocess failed: {last}")
    marks = json.loads(results[-1][len(_RESULT_TAG) :])
    return (marks["after"] - marks["before"]) / 2**20
