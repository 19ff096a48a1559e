"""
ONNX export of a network with free batch and spatial axes.

MONAI's exporter fixes every axis to the example input's size unless it is given ``dynamic_axes``: a model exported
at the 32x32 example of a bundle's metadata would then refuse a 352x352 frame. The bundles' ``configs/
export_onnx.json`` (an ``--args_file`` of ``python -m monai.bundle onnx_export``) passes the same axes as
:func:`onnx_dynamic_axes`; :func:`export_onnx` is the Python equivalent, used by the tests and the benchmark.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks.utils import convert_to_onnx
from torch import nn

from monai_pruning.measure.probe import validate_shape

__all__ = ["ONNX_INPUT_NAME", "ONNX_OUTPUT_NAME", "export_onnx", "onnx_dynamic_axes"]

#: names of the exported graph's input and output, as in the bundles' metadata (``network_data_format``)
ONNX_INPUT_NAME = "image"
ONNX_OUTPUT_NAME = "pred"


def onnx_dynamic_axes(spatial_dims: int) -> dict[str, list[int]]:
    """
    ``dynamic_axes`` for ``torch.onnx.export``: the batch axis and every spatial axis of the input and the output are
    free (the channel axes stay fixed). The list form, because JSON (the bundles' export args file) has no int keys.
    """
    if isinstance(spatial_dims, bool) or spatial_dims not in (1, 2, 3):
        raise ValueError(f"onnx_dynamic_axes: `spatial_dims` must be 1, 2 or 3, got {spatial_dims!r}.")
    axes = [0, *range(2, 2 + spatial_dims)]
    return {ONNX_INPUT_NAME: list(axes), ONNX_OUTPUT_NAME: list(axes)}


def export_onnx(
    network: nn.Module, filepath: str | os.PathLike, example_shape: Sequence[int], opset_version: int | None = None
) -> Path:
    """
    Export ``network`` (on the CPU, float32) to an ONNX file whose batch and spatial axes are free.

    The export traces the network once at ``example_shape`` (any size it accepts; the graph then runs at any other
    size it accepts, e.g. a whole 352x352 frame after exporting at 32x32). The network's train/eval flags are put
    back afterwards.

    Args:
        network: the network, e.g. a pruned one from ``monai_pruning.engine.load_pruned_network``.
        filepath: the ``.onnx`` file to write (its folder must exist).
        example_shape: ``(B, C, *spatial)`` of the random tracing input.
        opset_version: ONNX opset; None: the exporter's default.

    Returns:
        The path written.
    """
    if not isinstance(network, nn.Module):
        raise TypeError(f"export_onnx: expected a torch.nn.Module, got {type(network).__name__}.")
    shape = validate_shape(example_shape, "export_onnx")
    if len(shape) not in (3, 4, 5):
        raise ValueError(f"export_onnx: `example_shape` must be (B, C, *spatial) with 1-3 spatial dims, got {shape}.")
    path = Path(filepath)
    if not path.parent.is_dir():
        raise ValueError(f"export_onnx: the folder of {str(path)!r} does not exist.")
    modes = {module: module.training for module in network.modules()}
    example = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings():
            # torch's note that dynamic_axes are translated to dynamic shapes for its dynamo exporter; they are
            warnings.filterwarnings("ignore", message=".*dynamic_axes.*")
            convert_to_onnx(
                network,
                inputs=[example],
                input_names=[ONNX_INPUT_NAME],
                output_names=[ONNX_OUTPUT_NAME],
                dynamic_axes=onnx_dynamic_axes(len(shape) - 2),
                opset_version=opset_version,
                filename=str(path),
            )
    finally:
        for module, training in modes.items():
            module.training = training
    return path
