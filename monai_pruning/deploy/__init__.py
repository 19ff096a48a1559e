"""
Running a (pruned) network outside PyTorch: ONNX export with free batch and spatial axes, and an ``nn.Module`` that
runs the exported file in ONNX Runtime or OpenVINO, so a bundle's inference config can use it in place of the network.

Needs the ``deploy`` extra (``pip install "monai-pruning[deploy]"``: onnx, onnxscript, onnxruntime, openvino); the
core install never imports these packages.
"""

from __future__ import annotations

from .onnx_export import ONNX_INPUT_NAME, ONNX_OUTPUT_NAME, export_onnx, onnx_dynamic_axes
from .onnx_network import RUNTIMES, DeployDependencyError, OnnxNetwork, load_runtime

__all__ = [
    "ONNX_INPUT_NAME",
    "ONNX_OUTPUT_NAME",
    "RUNTIMES",
    "DeployDependencyError",
    "OnnxNetwork",
    "export_onnx",
    "load_runtime",
    "onnx_dynamic_axes",
]
