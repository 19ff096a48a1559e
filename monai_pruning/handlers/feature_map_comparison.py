"""
What each pruning method kept of a network, for one input: per channel group, the channels kept, the share of the
MACs its layers spend, and its feature maps in every network side by side, on one markdown page with its PNGs.

Called by a bundle's ``configs/feature_maps.json`` (``run compare``) or directly, e.g. by a benchmark, with the
networks it trained.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from monai_pruning.engine import load_pruned_network
from monai_pruning.handlers.feature_map_export import FeatureMapError, capture_group_maps, group_slice, prepare_input
from monai_pruning.measure import macs_by_layer
from monai_pruning.report.atomic_file import atomic_write_text
from monai_pruning.report.plots import plot_feature_map_comparison

__all__ = ["write_feature_map_comparison", "networks_from_checkpoints", "COMPARISON_PAGE"]

COMPARISON_PAGE = "comparison.md"


def networks_from_checkpoints(
    network_def: nn.Module, checkpoints: Mapping[str, str | os.PathLike]
) -> dict[str, nn.Module]:
    """
    ``{label: network}``: a copy of the (unpruned) ``network_def`` per checkpoint, reshaped to its pruning record
    and loaded (:func:`~monai_pruning.engine.load_pruned_network`), in the order given.
    """
    if not isinstance(checkpoints, Mapping) or not checkpoints:
        raise FeatureMapError(
            "feature map comparison: `checkpoints` must be a non-empty dict of label -> checkpoint file, e.g. "
            "{'baseline': 'runs/baseline/models/model.pt', 'sauron': ...}."
        )
    return {str(label): load_pruned_network(copy.deepcopy(network_def), path) for label, path in checkpoints.items()}


def _layer_macs(network: nn.Module, batch: Any) -> dict[str, int]:
    modes = {module: module.training for module in network.modules()}
    network.eval()
    try:
        return macs_by_layer(network, batch.to(next(network.parameters()).device))
    finally:
        for module, training in modes.items():
            module.training = training


def _percent(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "n/a"


def write_feature_map_comparison(
    networks: Mapping[str, nn.Module],
    image: Any,
    output_dir: str | os.PathLike,
    label: Any = None,
    window: Sequence[int] | None = None,
    title: str | None = None,
    layers: Sequence[str] | None = None,
) -> Path:
    """
    Compare networks of one architecture (the unpruned baseline first, then each pruned one) on the same input.

    Writes ``<output_dir>/comparison.md`` and, per channel group of the first network, ``<NN>_<group>.png``: the
    group's maps in every network side by side (for a 3D input the slice of :func:`prepare_input`). The page has
    a table of every network's channels and MACs, and one row per group: per network, the channels kept (of the
    first network's) and the MACs of the group's layers (the convolutions producing it and the per-channel layers
    after them) as a share of the first network's total MACs, for this input; a group a network does not have
    (made unprunable there) reads "-".

    Args:
        networks: ``{label: network}``, the reference first (e.g. from :func:`networks_from_checkpoints`).
        image: the preprocessed image, ``(C, H, W)`` or ``(C, H, W, D)``.
        output_dir: folder for the page and its PNGs.
        label: 3D only, optional: a label of the same case, to centre on; see :func:`prepare_input`.
        window: spatial size given to the networks (e.g. ``roi_size``); None: the whole image.
        title: heading of the page.
        layers: the groups whose maps are drawn (the table still lists every group); None: all of them. A page meant
            for documentation can show a few layers, since the PNGs of a whole network run to megabytes.

    Returns:
        The path of the markdown page.
    """
    if not isinstance(networks, Mapping) or not networks:
        raise FeatureMapError("feature map comparison: `networks` must be a non-empty dict of label -> network.")
    prepared = prepare_input(image, label, window)
    destination = Path(output_dir)
    if layers is not None and (isinstance(layers, str) or not all(isinstance(layer, str) for layer in layers)):
        raise FeatureMapError(f"feature map comparison: `layers` must be a list of group names, got {layers!r}.")
    names = [str(name) for name in networks]
    maps, groups, macs = {}, {}, {}
    for name, network in zip(names, networks.values()):
        if not isinstance(network, nn.Module):
            raise FeatureMapError(f"feature map comparison: networks[{name!r}] is a {type(network).__name__}.")
        maps[name], graph = capture_group_maps(network, prepared.batch)
        groups[name] = graph.groups
        macs[name] = _layer_macs(network, prepared.batch)
    reference = names[0]
    total = sum(macs[reference].values())
    drawn_groups = None if layers is None else set(layers)
    unknown = sorted((drawn_groups or set()) - set(maps[reference]))
    if unknown:
        raise FeatureMapError(f"feature map comparison: `layers` names groups {reference} does not have: {unknown}; "
                              f"its groups: {list(maps[reference])}.")

    lines = [f"# {title or 'Feature maps: ' + ', '.join(names)}", ""]
    lines += [
        f"Input: {prepared.description}. Each map is min-max normalised on its own (dark: its minimum, bright: its "
        "maximum) and taken where its channels enter their first consumer, in eval mode; the channel index is under "
        "it (indices of each network as it is now, not of the unpruned one). MACs are those of one forward pass of "
        f"this input; shares are of {reference}'s total.",
        "",
        "| network | channels | MACs | MACs vs " + reference + " |",
        "|---|---:|---:|---:|",
    ]
    for name in names:
        channels = sum(int(m.shape[0]) for m in maps[name].values())
        network_macs = sum(macs[name].values())
        lines.append(f"| {name} | {channels} | {network_macs / 1e6:.1f} M | {_percent(network_macs, total)} |")
    lines += ["", "| layer | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    figures = []
    for number, group in enumerate(maps[reference], start=1):
        width = int(maps[reference][group].shape[0])
        cells = []
        for name in names:
            if group not in maps[name]:
                cells.append("-")
                continue
            producing = groups[name][group].producers + groups[name][group].followers
            spent = sum(macs[name].get(layer, 0) for layer in producing)
            kept = int(maps[name][group].shape[0])
            cells.append(f"{kept} of {width} ch, {_percent(spent, total)} MACs")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
        if drawn_groups is not None and group not in drawn_groups:
            continue
        shown = {name: group_slice(maps[name][group], prepared) for name in names if group in maps[name]}
        where = next(iter(shown.values()))[1]
        path = plot_feature_map_comparison(
            {name: pair[0] for name, pair in shown.items()}, destination / f"{number:02d}_{group}.png",
            title=f"{group}{where}",
        )
        figures.append((group, path))
    drawn = "" if drawn_groups is None else f" (drawn for {len(figures)} of the {len(maps[reference])} layers)"
    lines += ["", f"## Maps per layer{drawn}", ""]
    for group, path in figures:
        lines += [f"### {group}", "", f"![{group}]({path.name})", ""]
    return atomic_write_text(destination / COMPARISON_PAGE, "\n".join(lines), where="write_feature_map_comparison")
