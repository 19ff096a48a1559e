"""
An exported ONNX file run by ONNX Runtime or OpenVINO behind the ``nn.Module`` interface, so that MONAI's inferers
and evaluators (sliding windows, post-processing, writers) use it unchanged in place of the PyTorch network.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["RUNTIMES", "DeployDependencyError", "OnnxNetwork", "load_runtime"]

#: runtimes an exported file can run in, with the package each needs
RUNTIMES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}


class DeployDependencyError(ImportError):
    """A runtime's package is not installed (it comes with the ``deploy`` extra)."""


def _import(runtime: str, where: str):
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return onnxruntime
        import openvino

        return openvino
    except ImportError:
        raise DeployDependencyError(
            f"{where}: runtime {runtime!r} needs the {RUNTIMES[runtime]} package: pip install \"monai-pruning[deploy]\"."
        ) from None


def _check_threads(num_threads: int, where: str) -> int:
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 0:
        raise ValueError(f"{where}: `num_threads` must be an int >= 0 (0: the runtime's default), got {num_threads!r}.")
    return num_threads


def load_runtime(
    filepath: str | os.PathLike, runtime: str = "onnxruntime", num_threads: int = 0
) -> Callable[[np.ndarray], np.ndarray]:
    """
    Load an ONNX file into ``runtime`` on the CPU and return a function from a float32 input array to the first
    output array.

    ONNX Runtime runs with all graph optimisations, ``num_threads`` intra-op threads and one inter-op thread.
    OpenVINO runs with the latency hint and float32 inference precision: on CPUs with bfloat16 units (AMX) its
    default would compute in bfloat16, whose outputs differ from PyTorch's by about 0.1 on a segmentation network's
    logits instead of 1e-4.

    Args:
        filepath: the ``.onnx`` file (e.g. written by ``python -m monai.bundle onnx_export``).
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        num_threads: CPU threads per inference; 0: the runtime's default (all cores).
    """
    where = "load_runtime"
    if runtime not in RUNTIMES:
        raise ValueError(f"{where}: `runtime` must be one of {sorted(RUNTIMES)}, got {runtime!r}.")
    num_threads = _check_threads(num_threads, where)
    path = Path(filepath)
    if not path.is_file():
        raise FileNotFoundError(
            f"{where}: no ONNX file at {str(path)!r}; export one first "
            "(python -m monai.bundle onnx_export --args_file configs/export_onnx.json)."
        )
    package = _import(runtime, where)
    if runtime == "onnxruntime":
        options = package.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = package.GraphOptimizationLevel.ORT_ENABLE_ALL
        session = package.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name

        def run_onnxruntime(x: np.ndarray) -> np.ndarray:
            return session.run(None, {input_name: x})[0]

        return run_onnxruntime
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if num_threads:
        config["INFERENCE_NUM_THREADS"] = num_threads
    compiled = package.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()

    def run_openvino(x: np.ndarray) -> np.ndarray:
        request.infer({0: x})
        return np.array(request.get_output_tensor(0).data, copy=True)

    return run_openvino


class OnnxNetwork(nn.Module):
    """
    An exported network run by ONNX Runtime or OpenVINO on the CPU, called like the PyTorch network it came from.

    The input is copied to the CPU as float32; the output comes back as a float32 tensor on the input's device. There
    are no parameters and no autograd: it is for inference only. A bundle's ``configs/inference_onnx.json`` puts it in
    place of ``network`` (the weights are in the ONNX file, so no checkpoint is loaded).

    Args:
        filepath: the ``.onnx`` file.
        runtime: ``"onnxruntime"`` (default) or ``"openvino"``.
        num_threads: CPU threads per inference; 0: the runtime's default.

    Example (bundle config overlay on ``inference.json``)::

        {"network": {"_target_": "monai_pruning.deploy.OnnxNetwork",
                     "filepath": "$@bundle_root + '/models/model.onnx'", "runtime": "onnxruntime"}}
    """

    def __init__(self, filepath: str | os.PathLike, runtime: str = "onnxruntime", num_threads: int = 0) -> None:
        super().__init__()
        self.filepath = str(filepath)
        self.runtime = runtime
        self._run = load_runtime(filepath, runtime, num_threads)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"OnnxNetwork: expected a torch.Tensor input, got {type(x).__name__}.")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self._run(array)).to(x.device)

    def extra_repr(self) -> str:
        return f"filepath={self.filepath!r}, runtime={self.runtime!r}"
