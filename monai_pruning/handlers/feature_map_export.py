"""
Look inside a trained network: for one input, the feature maps of every prunable channel group as a grid of PNG
tiles, and the pairwise channel distances Sauron prunes by as a heatmap, also as TensorBoard images.

Run from a bundle with the ``configs/feature_maps.json`` overlay. An unpruned and a pruned checkpoint work alike: the
network is reshaped from the checkpoint's pruning record before its weights load, and its groups are traced as they
are now, so every grid has as many tiles as the group has channels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from monai_pruning.engine import ChannelGraph, ChannelPruner
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.report.feature_maps import (
    channel_distance_matrix,
    grid_shape,
    label_centre_voxel,
    scaled_index,
    window_around,
)
from monai_pruning.report.plots import plot_channel_distances, plot_feature_map_grid

__all__ = ["FeatureMapExport", "FeatureMapError", "PreparedInput", "prepare_input", "capture_group_maps", "group_slice"]


class FeatureMapError(ValueError):
    """The input, label, window or network given for the feature maps cannot be used."""


class PreparedInput:
    """
    One input ready for the network, and where to look at it.

    Attributes:
        batch: ``(1, C, *spatial)`` float tensor (the window of the image the network sees).
        slice_index: for a 3D input, the slice of its last axis to show (through the label's centre, or the middle
            of the window); None in 2D.
        description: a short text saying what was taken (window, slice, how it was chosen), for titles and pages.
    """

    def __init__(self, batch: torch.Tensor, slice_index: int | None, description: str) -> None:
        self.batch = batch
        self.slice_index = slice_index
        self.description = description


def _affine_of(tensor: Any) -> np.ndarray | None:
    affine = getattr(tensor, "affine", None)
    if affine is None:
        return None
    return np.asarray(affine.detach().cpu() if hasattr(affine, "detach") else affine, dtype=np.float64)


def _load_label(label: Any) -> Any:
    if isinstance(label, (str, os.PathLike)):
        path = Path(label)
        if not path.is_file():
            raise FeatureMapError(f"feature maps: label file not found: {str(path)!r}.")
        from monai.transforms import LoadImage

        return LoadImage(image_only=True, ensure_channel_first=True)(str(path))
    return label


def prepare_input(image: Any, label: Any = None, window: Sequence[int] | None = None) -> PreparedInput:
    """
    The network's input for one preprocessed image, and the slice to show.

    Args:
        image: ``(C, H, W)`` or ``(C, H, W, D)`` tensor, as the bundle's preprocessing gives it (a MONAI
            ``MetaTensor`` keeps its affine, which a label needs).
        label: 3D only: a label file of the same case (any grid: it is matched through world coordinates) or a
            ``(C, H, W, D)`` / ``(H, W, D)`` array on the image's own grid; the window is centred on the centre of
            its foreground and the slice shown goes through it. None: the middle of the image and its middle slice.
        window: spatial size of the part of the image given to the network (e.g. the bundle's ``roi_size``, what
            one sliding-window step sees); a smaller image is padded at the end with its minimum. None: the whole
            image.

    Raises:
        FeatureMapError: a bad image shape, a window of the wrong length, a label with a 2D image or without
            foreground.
    """
    where = "feature maps"
    if not isinstance(image, torch.Tensor) or image.ndim not in (3, 4) or not image.is_floating_point():
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise FeatureMapError(f"{where}: the image must be a float (C, H, W) or (C, H, W, D) tensor, got {shape}.")
    spatial = list(image.shape[1:])
    dims = len(spatial)
    if window is not None:
        window = [int(w) for w in window]
        if len(window) != dims or min(window) < 1:
            raise FeatureMapError(f"{where}: the window {window} must have {dims} sizes >= 1 for a {dims}D image.")
    centre = [size // 2 for size in spatial]  # the middle slice as the overlays show it: depth // 2
    how = "the middle of the image"
    if label is not None:
        if dims != 3:
            raise FeatureMapError(f"{where}: a label only chooses the slice of a 3D volume; this image is 2D.")
        label = _load_label(label)
        label_affine, image_affine = _affine_of(label), _affine_of(image)
        if label_affine is None or image_affine is None:  # arrays on one grid
            label_affine = image_affine = np.eye(4)
        try:
            centre = list(label_centre_voxel(label, label_affine, image_affine))
        except ValueError as err:
            raise FeatureMapError(f"{where}: {err}") from None
        centre = [min(max(c, 0.0), size - 1.0) for c, size in zip(centre, spatial)]
        how = "the centre of the label"
    spans = window_around(spatial, window, centre) if window is not None else [(0, size) for size in spatial]
    crop = image.detach().as_tensor() if hasattr(image, "as_tensor") else image.detach()
    crop = crop[(slice(None), *(slice(start, stop) for start, stop in spans))].float()
    if window is not None:
        missing = [w - (stop - start) for w, (start, stop) in zip(window, spans)]
        if any(missing):
            padding = [amount for m in reversed(missing) for amount in (0, m)]
            crop = F.pad(crop, padding, value=float(crop.min()))
    size_text = "x".join(str(s) for s in crop.shape[1:])
    described = f"{size_text} window centred on {how}" if window is not None else f"whole image, {size_text}"
    slice_index = None
    if dims == 3:
        slice_index = min(max(int(round(centre[-1])) - spans[-1][0], 0), crop.shape[-1] - 1)
        described += f", slice {slice_index} of its last axis"
    return PreparedInput(crop.unsqueeze(0).contiguous(), slice_index, described)


def capture_group_maps(network: nn.Module, batch: torch.Tensor) -> tuple[dict[str, torch.Tensor], ChannelGraph]:
    """
    The feature maps of every prunable channel group for one input: ``{group: (C, *spatial)}`` on the CPU, where
    the group's channels enter their first consumer (what a cut removes), in eval mode and without gradients, in
    the network's order; and the network's channel groups, as traced for it. The network's modes and weights are
    left as they were.
    """
    if not isinstance(network, nn.Module):
        raise FeatureMapError(f"feature maps: `network` must be a torch.nn.Module, got {type(network).__name__}.")
    device = next((p.device for p in network.parameters()), torch.device("cpu"))
    batch = batch.to(device)
    modes = {module: module.training for module in network.modules()}
    pruner = ChannelPruner(network, (2, *batch.shape[1:]))
    taps = pruner.graph.consumer_taps()
    recorder = FeatureTaps(network, {g: taps[g] for g in pruner.prunable_groups if g in taps}, first_only=True)
    try:
        network.eval()
        recorder.enabled = True
        with torch.no_grad():
            network(batch)
        features = recorder.features()
    finally:
        recorder.enabled = False
        recorder.remove()
        for module, training in modes.items():
            module.training = training
    maps = {group: features[group][0].detach().float().cpu() for group in recorder.groups if group in features}
    return maps, pruner.graph


def group_slice(maps: torch.Tensor, prepared: PreparedInput) -> tuple[torch.Tensor, str]:
    """
    ``(C, H, W)`` maps of a group to show: 2D maps as they are, or the slice of 3D maps that covers the input's
    slice (at the group's resolution); and a title suffix naming that slice ("" in 2D).
    """
    if maps.ndim == 3:
        return maps, ""
    depth = maps.shape[-1]
    index = scaled_index(prepared.slice_index, prepared.batch.shape[-1], depth)
    return maps[..., index], f", slice {index} of {depth}"


class FeatureMapExport:
    """
    Writes, for one input, the feature maps of every prunable channel group of a network, and the distances
    between its channels that Sauron's pruning score is made of.

    Under ``output_dir``, per group (numbered in the network's order): ``<NN>_<group>_maps.png``, a grid of its
    channels' maps (each normalised on its own, its channel index under it; for a 3D input the slice chosen by
    :func:`prepare_input`, at the group's resolution), and ``<NN>_<group>_distances.png``, the heatmap of
    :func:`~monai_pruning.report.feature_maps.channel_distance_matrix` on the group's whole maps (row r: delta_prune
    of every channel with r as the reference). The same images go to TensorBoard as ``feature_maps/<group>/maps``
    and ``feature_maps/<group>/distances``.

    Args:
        network: the trained network (for a pruned checkpoint, already reshaped and loaded, e.g. with
            :func:`~monai_pruning.engine.load_pruned_network`).
        image: the preprocessed image, ``(C, H, W)`` or ``(C, H, W, D)``.
        label: 3D only, optional: a label of the same case; see :func:`prepare_input`.
        window: spatial size given to the network (e.g. ``roi_size``); None: the whole image.
        output_dir: folder for the PNG files.
        summary_writer: TensorBoard writer (anything with ``add_image``); None: ``tensorboard_dir`` or none.
        tensorboard_dir: folder for a ``SummaryWriter`` opened and closed by each call; None: no TensorBoard.
        device: where the forward pass runs; None: where the network is.
        step: TensorBoard global step of the images.

    Example (``configs/feature_maps.json``)::

        "feature_maps": {"_target_": "monai_pruning.handlers.FeatureMapExport",
                         "network": "$monai_pruning.engine.load_pruned_network(@network_def, @ckpt_file)",
                         "image": "$@preprocessing({'image': @image})['image']", "label": "@label",
                         "window": "@roi_size", "output_dir": "@feature_maps_dir",
                         "tensorboard_dir": "@feature_maps_dir"},
        "run": ["$@feature_maps()"]
    """

    def __init__(
        self,
        network: nn.Module,
        image: Any,
        label: Any = None,
        window: Sequence[int] | None = None,
        output_dir: str | os.PathLike = "feature_maps",
        summary_writer: Any = None,
        tensorboard_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        step: int = 0,
    ) -> None:
        if not isinstance(network, nn.Module):
            raise FeatureMapError(f"FeatureMapExport: `network` must be a torch.nn.Module, got {type(network)}.")
        if summary_writer is not None and not callable(getattr(summary_writer, "add_image", None)):
            raise FeatureMapError(
                f"FeatureMapExport: `summary_writer` has no add_image method ({type(summary_writer)})."
            )
        if summary_writer is not None and tensorboard_dir is not None:
            raise FeatureMapError("FeatureMapExport: give `summary_writer` or `tensorboard_dir`, not both.")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise FeatureMapError(f"FeatureMapExport: `step` must be an int >= 0, got {step!r}.")
        self.network = network if device is None else network.to(device)
        self.prepared = prepare_input(image, label, window)
        self.output_dir = Path(output_dir)
        self.summary_writer = summary_writer
        self.tensorboard_dir = tensorboard_dir
        self.step = step

    def __call__(self) -> dict[str, dict[str, Any]]:
        """
        Write the figures; returns per group ``{"channels", "grid": [rows, columns], "maps", "distances"}`` (the
        paths written).
        """
        prepared = self.prepared
        maps, _ = capture_group_maps(self.network, prepared.batch)
        writer, own_writer = self.summary_writer, False
        if writer is None and self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            writer, own_writer = SummaryWriter(log_dir=str(self.tensorboard_dir)), True
        written: dict[str, dict[str, Any]] = {}
        try:
            for number, (group, group_maps) in enumerate(maps.items(), start=1):
                shown, where = group_slice(group_maps, prepared)
                stem = self.output_dir / f"{number:02d}_{group}"
                size = "x".join(str(s) for s in group_maps.shape[1:])
                maps_png = plot_feature_map_grid(
                    shown, f"{stem}_maps.png", title=f"{group}: {group_maps.shape[0]} channels at {size}{where}"
                )
                distances_png = plot_channel_distances(
                    channel_distance_matrix(group_maps.unsqueeze(0)),
                    f"{stem}_distances.png",
                    title=f"{group}\ndelta_prune of each channel (column) against each reference (row)",
                )
                if writer is not None:
                    for kind, path in (("maps", maps_png), ("distances", distances_png)):
                        writer.add_image(f"feature_maps/{group}/{kind}", _png_pixels(path), self.step,
                                         dataformats="HWC")
                written[group] = {
                    "channels": int(group_maps.shape[0]),
                    "grid": list(grid_shape(int(group_maps.shape[0]))),
                    "maps": maps_png,
                    "distances": distances_png,
                }
        finally:
            if own_writer:
                writer.close()
        return written


def _png_pixels(path: Path) -> np.ndarray:
    """The RGB pixels of a PNG written here, as uint8 ``(H, W, 3)``: TensorBoard shows exactly the file's image."""
    from matplotlib.image import imread

    pixels = imread(str(path))
    return np.round(pixels[..., :3] * 255.0).astype(np.uint8)
