"""
Measuring a network: parameters, multiply-accumulates, CPU/GPU latency (also in TorchScript, ONNX Runtime and
OpenVINO) and peak inference memory.

Pure measurement functions used by the tests, the pruning handlers (to log what a cut bought) and the benchmark
scripts. None of them changes the network, its train/eval mode, or the caller's random state or thread count.
"""

from __future__ import annotations

from .complexity import Complexity, count_macs, count_parameters, layer_macs, macs_by_layer, measure_complexity
from .latency import (
    RUNTIME_LATENCY,
    LatencyResult,
    RuntimeLatency,
    available_runtimes,
    compare_runtimes,
    eager_latency,
    measure_latency,
    onnxruntime_latency,
    openvino_latency,
    size_label,
    torchscript_latency,
)
from .memory import peak_inference_memory_mb

__all__ = [
    "Complexity",
    "count_parameters",
    "count_macs",
    "layer_macs",
    "macs_by_layer",
    "measure_complexity",
    "LatencyResult",
    "RuntimeLatency",
    "RUNTIME_LATENCY",
    "available_runtimes",
    "compare_runtimes",
    "eager_latency",
    "measure_latency",
    "onnxruntime_latency",
    "openvino_latency",
    "size_label",
    "torchscript_latency",
    "peak_inference_memory_mb",
]
