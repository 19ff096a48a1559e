"""The pruning record: the width of every channel-bearing module, as plain data.

A pruned checkpoint is ``{"pruning": <record>, "model": <state dict>}`` (``docs/design.md``).  The record is
loaded first: it reshapes a freshly built, unpruned network so that the weights that follow load strictly.  It holds
only ``str``/``int`` values, so ``torch.load(weights_only=True)`` accepts it, and no pickled module is ever needed.

Example (bundle config)::

    "pruning": {"_target_": "monai_pruning.engine.PruningRecord", "network": "@network", "optimizer": "@optimizer"},
    "checkpoint_saver": {"_target_": "CheckpointSaver", "save_dir": "@ckpt_dir",
                         "save_dict": {"pruning": "@pruning", "model": "@network"}, "save_final": true}
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from monai_pruning.distributed import unwrap_network
from monai_pruning.engine.optimizer_state import follow_parameter_slices
from monai_pruning.engine.surgery import ParameterSlice

__all__ = ["PruningRecord", "PruningRecordError", "module_widths", "resize_to_widths", "load_pruned_network"]

FORMAT_VERSION = 1

_CONV_T = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class PruningRecordError(ValueError):
    """A pruning record does not fit the network it is applied to."""


def _widths_of(module: nn.Module) -> dict[str, int] | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return {"in_channels": module.in_channels, "out_channels": module.out_channels, "groups": module.groups}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        return {"num_features": module.num_features}
    if isinstance(module, nn.GroupNorm):
        return {"num_channels": module.num_channels, "num_groups": module.num_groups}
    if isinstance(module, nn.PReLU):
        return {"num_parameters": module.num_parameters}
    return None


def module_widths(network: nn.Module) -> dict[str, dict[str, Any]]:
    """``{module name: {"type": class name, width attributes...}}`` for every convolution, norm and PReLU."""
    record: dict[str, dict[str, Any]] = {}
    for name, module in network.named_modules():
        widths = _widths_of(module)
        if widths is not None:
            record[name] = {"type": type(module).__name__, **widths}
    return record


def _shapes_for(module: nn.Module, widths: dict[str, int]) -> dict[str, tuple[int, ...]]:
    """Shapes that the module's tensors must have at the given widths."""
    if isinstance(module, nn.modules.conv._ConvNd):
        cin, cout, groups = widths["in_channels"], widths["out_channels"], widths["groups"]
        kernel = tuple(module.kernel_size)
        weight = (cin, cout // groups, *kernel) if isinstance(module, _CONV_T) else (cout, cin // groups, *kernel)
        return {"weight": weight, "bias": (cout,)}
    if isinstance(module, nn.modules.batchnorm._NormBase):
        n = widths["num_features"]
        return {"weight": (n,), "bias": (n,), "running_mean": (n,), "running_var": (n,)}
    if isinstance(module, nn.GroupNorm):
        return {"weight": (widths["num_channels"],), "bias": (widths["num_channels"],)}
    return {"weight": (widths["num_parameters"],)}


def resize_to_widths(network: nn.Module, record: dict[str, dict[str, Any]]) -> list[ParameterSlice]:
    """Give every module of ``network`` the widths in ``record``; tensors that change shape are reallocated.

    The new tensors hold no meaningful values: the caller loads a matching state dict next.  Returns one
    :class:`ParameterSlice` with empty ``kept`` per replaced parameter, so an optimizer can be re-pointed.

    Raises:
        PruningRecordError: a module is missing, of another type, or cannot take the recorded widths.
    """
    modules = dict(network.named_modules())
    expected = module_widths(network)
    unknown = sorted(set(record) - set(expected))
    if unknown:
        raise PruningRecordError(
            f"pruning record does not match {type(network).__name__}: no module {unknown[0]!r} "
            f"({len(unknown)} recorded modules missing); was the checkpoint made from another network_def?"
        )
    plans: list[tuple[nn.Module, str, dict[str, int]]] = []
    for name, entry in record.items():
        module = modules[name]
        if entry.get("type") != type(module).__name__:
            raise PruningRecordError(
                f"pruning record does not match the network: module {name!r} is {type(module).__name__}, "
                f"the record says {entry.get('type')}"
            )
        widths = {k: int(v) for k, v in entry.items() if k != "type"}
        if set(widths) != set(expected[name]) - {"type"}:
            raise PruningRecordError(f"pruning record entry for {name!r} has fields {sorted(widths)}")
        groups = widths.get("groups", 1)
        if any(v < 1 for v in widths.values()) or (
            "groups" in widths and (widths["in_channels"] % groups or widths["out_channels"] % groups)
        ) or ("num_groups" in widths and widths["num_channels"] % widths["num_groups"]):
            raise PruningRecordError(f"pruning record entry for {name!r} has impossible widths {widths}")
        plans.append((module, name, widths))

    slices: list[ParameterSlice] = []
    for module, _name, widths in plans:
        shapes = _shapes_for(module, widths)
        for tensor_name, shape in shapes.items():
            old = getattr(module, tensor_name, None)
            if old is None or tuple(old.shape) == shape:
                continue
            data = torch.zeros(shape, dtype=old.dtype, device=old.device)
            if tensor_name in module._parameters:
                new = nn.Parameter(data, requires_grad=old.requires_grad)
                module._parameters[tensor_name] = new
                slices.append(ParameterSlice(old, new, ()))
            else:
                module._buffers[tensor_name] = data
        for attr, value in widths.items():
            setattr(module, attr, value)
    return slices


class PruningRecord:
    """Checkpointable view of a network's widths, for MONAI ``CheckpointSaver`` / ``CheckpointLoader``.

    ``state_dict()`` reads the current widths of ``network``; ``load_state_dict()`` resizes ``network`` (and
    re-points ``optimizer`` at the new parameters, so that an optimizer state loaded next fits).  Put it *before*
    the model in ``save_dict`` and ``load_dict``: Ignite loads objects in dictionary order.

    Args:
        network: the network whose widths are recorded and restored (the same object the trainer uses); a
            ``DistributedDataParallel`` / ``DataParallel`` wrapper stands for the network inside it, so the record
            names the same modules as a single-process one (and as Ignite's checkpoints, which save ``.module``).
        optimizer: optional optimizer to keep attached when a loaded record reshapes the network.
    """

    def __init__(self, network: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> None:
        self.network = network
        self.optimizer = optimizer

    def state_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "modules": module_widths(unwrap_network(self.network))}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not isinstance(state_dict, dict) or "modules" not in state_dict:
            raise PruningRecordError("not a pruning record: expected a dict with 'format_version' and 'modules'")
        version = state_dict.get("format_version")
        if version != FORMAT_VERSION:
            raise PruningRecordError(f"pruning record format {version} is not supported (expected {FORMAT_VERSION})")
        slices = resize_to_widths(unwrap_network(self.network), state_dict["modules"])
        if self.optimizer is not None and slices:
            follow_parameter_slices(self.optimizer, slices)

    def __repr__(self) -> str:
        network = unwrap_network(self.network)
        return f"PruningRecord({type(network).__name__}, {len(module_widths(network))} modules)"


def load_pruned_network(
    network: nn.Module,
    checkpoint: str | os.PathLike,
    model_key: str = "model",
    record_key: str = "pruning",
    map_location: str | torch.device = "cpu",
) -> nn.Module:
    """Reshape ``network`` (built from the unpruned ``network_def``) to the checkpoint's widths and load its weights.

    Works with pruned checkpoints (``{"pruning": record, "model": weights, ...}``), with unpruned ones saved in the
    same layout, and with a bare state dict.  Usable from bundle configs, e.g. for
    ``python -m monai.bundle ckpt_export pruned_network_def ...``::

        "pruned_network_def": "$monai_pruning.engine.load_pruned_network(@network_def, @bundle_root + '/models/model.pt')"

    Returns the same ``network`` object, in eval mode.

    Raises:
        FileNotFoundError: the checkpoint does not exist.
        PruningRecordError: the checkpoint does not fit the network.
    """
    path = os.fspath(checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path} (train the bundle first, or set the checkpoint path)")
    try:
        content = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise PruningRecordError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from err
    if isinstance(content, dict) and model_key in content:
        if record_key in content:
            PruningRecord(network).load_state_dict(content[record_key])
        weights = content[model_key]
    else:
        weights = content
    try:
        network.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        detail = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise PruningRecordError(
            f"weights in {path} do not fit {type(network).__name__}: {detail[1] if len(detail) > 1 else detail[0]}"
        ) from err
    return network.eval()
