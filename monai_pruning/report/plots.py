"""
PNG figures of a pruning run: channel widths over time, an accuracy-vs-cost curve, and a predicted-mask overlay.

Figures are drawn on a bare ``matplotlib.figure.Figure`` rendered by the Agg backend: no display is needed, pyplot's
global state is never touched (safe inside a training process and its threads), and every file is written atomically
so a run killed while plotting leaves the previous PNG intact. Every function returns the path it wrote.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from monai_pruning.report.atomic_file import atomic_write_bytes
from monai_pruning.report.feature_maps import grid_shape, normalize_maps, tile_maps

__all__ = [
    "plot_channel_history",
    "plot_pruning_curve",
    "plot_prediction_overlay",
    "plot_feature_map_grid",
    "plot_channel_distances",
    "plot_feature_map_comparison",
    "plot_cut_scores",
]

#: most distinct classes an overlay accepts in a label map (more means the array is not a segmentation)
MAX_OVERLAY_CLASSES = 20

_DPI = 100


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _check_rows(rows: Any, where: str) -> list[Mapping[str, Any]]:
    """Rows as a list of mappings; a :class:`~monai_pruning.report.history.PruningHistory` is accepted too."""
    if hasattr(rows, "rows") and not isinstance(rows, Mapping):
        rows = rows.rows
    if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Sequence):
        raise ValueError(f"{where}: rows must be a list of dicts (or a PruningHistory), got {type(rows).__name__}.")
    if len(rows) == 0:
        raise ValueError(f"{where}: no rows to plot.")
    for index, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise ValueError(f"{where}: row {index} is a {type(row).__name__}, expected a dict.")
    return list(rows)


def _check_png_path(path: str | os.PathLike, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}.")
    destination = Path(path)
    if destination.suffix.lower() != ".png":
        raise ValueError(f"{where}: path must end with .png, got {str(destination)!r}.")
    return destination


def _save(figure: Figure, path: Path, where: str) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI)
    return atomic_write_bytes(path, buffer.getvalue(), where=where)


def _engineering_if_large(axis: Any, values: Sequence[float], unit: str = "") -> None:
    """Label an axis as 1.2 G / 350 M when its values are large (MACs, parameters); leave small values alone."""
    finite = [abs(v) for v in values if math.isfinite(v)]
    if finite and max(finite) >= 1e4:
        axis.set_major_formatter(EngFormatter(unit=unit))


def _group_colours(count: int) -> list[Any]:
    """Distinct colours for ``count`` lines: tab10/tab20 while they suffice, an evenly sampled colour map beyond."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    if count <= 20:
        return [colormaps["tab20"](i) for i in range(count)]
    return [colormaps["turbo"](i / max(count - 1, 1)) for i in range(count)]


def plot_channel_history(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    key: str = "widths",
    x: str = "epoch",
    macs_key: str = "macs",
    log_y: bool = False,
    legend_limit: int = 20,
    title: str | None = None,
    marks: Mapping[str, float] | None = None,
) -> Path:
    """
    Channels kept per group over a run (one line per group) and, on a second panel, the total MACs.

    Args:
        rows: history rows (or a ``PruningHistory``); rows without a ``key`` dict are skipped for the top panel.
        path: destination ``.png`` file.
        key: row entry holding ``{group name: channel count}``.
        x: row entry for the horizontal axis; when some plotted row lacks a number there, rows are numbered instead.
        macs_key: row entry with the total MACs; the second panel is drawn only when some row has it.
        log_y: logarithmic channel axis (useful when widths span 8 to 512 channels).
        legend_limit: a legend (placed outside the axes) is drawn for at most this many groups; above it, the colour
            map alone orders the lines from first to last group and the title says so.
        title: figure title.
        marks: ``{label: x}``, moments to show as labelled vertical dashed lines on both panels (in ``x`` units),
            e.g. ``{"target reached": 96}`` where a run stopped pruning and went on training.

    Raises:
        ValueError: no rows, or no row has a ``key`` dict, ``path`` does not end with ``.png``, or a mark is not a
            number.
    """
    where = "plot_channel_history"
    rows = _check_rows(rows, where)
    destination = _check_png_path(path, where)
    marks = dict(marks or {})
    for label, position in marks.items():
        if not _is_number(position):
            raise ValueError(f"{where}: mark {label!r} must be a number on the {x!r} axis, got {position!r}.")
    width_rows = [row for row in rows if isinstance(row.get(key), Mapping)]
    if not width_rows:
        raise ValueError(f"{where}: no row has a {key!r} dict of channel counts.")

    def positions(selected: list[Mapping[str, Any]]) -> tuple[list[float], str]:
        if all(_is_number(row.get(x)) for row in selected):
            return [float(row[x]) for row in selected], x
        return [float(i) for i in range(len(selected))], "step"

    xs, x_label = positions(width_rows)
    groups: dict[str, None] = {}
    for row in width_rows:
        groups.update(dict.fromkeys(str(name) for name in row[key]))
    names = list(groups)

    macs_rows = [row for row in rows if _is_number(row.get(macs_key))]
    figure = Figure(figsize=(11, 7 if macs_rows else 4.5), layout="constrained")
    axes = figure.subplots(2 if macs_rows else 1, 1, sharex=bool(macs_rows), squeeze=False)[:, 0]
    top = axes[0]
    widths = [{str(group): count for group, count in row[key].items()} for row in width_rows]
    for name, colour in zip(names, _group_colours(len(names))):
        ys = [float(w[name]) if _is_number(w.get(name)) else math.nan for w in widths]
        top.plot(xs, ys, color=colour, linewidth=1.2, marker="." if len(xs) < 30 else None, label=name)
    top.set_ylabel("channels")
    if log_y:
        top.set_yscale("log")
    top.grid(True, alpha=0.3)
    heading = title or "channels per group"
    if len(names) <= legend_limit:
        top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", ncol=1 if len(names) <= 12 else 2)
    else:
        heading += f" ({len(names)} groups; legend omitted, colour runs from first to last group)"
    top.set_title(heading)

    if macs_rows:
        macs_xs, macs_x_label = positions(macs_rows)
        macs = [float(row[macs_key]) for row in macs_rows]
        bottom = axes[1]
        bottom.plot(macs_xs, macs, color="black", marker="." if len(macs_xs) < 30 else None)
        bottom.set_ylabel(f"total {macs_key}")
        _engineering_if_large(bottom.yaxis, macs)
        bottom.grid(True, alpha=0.3)
        bottom.set_xlabel(macs_x_label)
    else:
        top.set_xlabel(x_label)
    for label, position in marks.items():
        for axis in axes:
            axis.axvline(float(position), color="grey", linestyle="--", linewidth=1)
        note = top.annotate(str(label), xy=(float(position), 1.0), xycoords=("data", "axes fraction"),
                            xytext=(-3, -3), textcoords="offset points", rotation=90, ha="right", va="top",
                            fontsize="small", color="grey")
        note.set_in_layout(False)  # inside the axes: it must not shift the panels
    return _save(figure, destination, where)


def plot_pruning_curve(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    x: str = "macs",
    y: str = "dice",
    title: str | None = None,
    label: str | None = None,
) -> Path:
    """
    One quantity against another over a set of pruned models, e.g. Dice against MACs for a one-shot curve.

    Points are the rows with numbers in both ``x`` and ``y``, joined in increasing ``x``. Large values (MACs,
    parameters) are labelled with SI prefixes (k, M, G).

    Args:
        rows: history rows (or a ``PruningHistory``).
        path: destination ``.png`` file.
        x: row entry for the horizontal axis.
        y: row entry for the vertical axis.
        title: figure title (default ``"<y> vs <x>"``).
        label: legend label of the curve (no legend when None).

    Raises:
        ValueError: no rows, no row with numbers in both ``x`` and ``y``, or ``path`` not ending with ``.png``.
    """
    where = "plot_pruning_curve"
    rows = _check_rows(rows, where)
    destination = _check_png_path(path, where)
    points = sorted((float(row[x]), float(row[y])) for row in rows if _is_number(row.get(x)) and _is_number(row.get(y)))
    if not points:
        raise ValueError(f"{where}: no row has numbers in both {x!r} and {y!r}.")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    figure = Figure(figsize=(6.5, 4.5), layout="constrained")
    axes = figure.subplots()
    axes.plot(xs, ys, marker="o", linewidth=1.5, label=label)
    axes.set_xlabel(x)
    axes.set_ylabel(y)
    _engineering_if_large(axes.xaxis, xs)
    _engineering_if_large(axes.yaxis, ys)
    axes.grid(True, alpha=0.3)
    axes.set_title(title or f"{y} vs {x}")
    if label is not None:
        axes.legend()
    return _save(figure, destination, where)


def _as_array(value: Any, name: str, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch.Tensor and MONAI MetaTensor, on any device
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} is a {type(value).__name__}, not an array.") from None
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise ValueError(f"{where}: {name} must hold numbers, got dtype {array.dtype}.")
    return array


def _class_masks(array: np.ndarray, include_background: bool, name: str, where: str) -> list[tuple[int, np.ndarray]]:
    """
    ``(class id, 2D boolean mask)`` pairs of a channel-first 2D segmentation.

    One channel: integer class indices (0 is background); a channel of non-integer values is read as a foreground
    probability and thresholded at 0.5. Several channels: one binary mask (threshold 0.5) per channel, whose index
    is the class id; channel 0 is skipped unless ``include_background``.
    """
    if array.shape[0] == 1:
        values = array[0]
        if not np.all(np.equal(np.mod(values, 1), 0)):
            return [(1, values > 0.5)]
        classes = [int(c) for c in np.unique(values) if c != 0]
        if len(classes) > MAX_OVERLAY_CLASSES:
            raise ValueError(
                f"{where}: {name} has {len(classes)} distinct values; expected a segmentation with at most "
                f"{MAX_OVERLAY_CLASSES} classes."
            )
        return [(c, values == c) for c in classes]
    first = 0 if include_background else 1
    return [(c, array[c] > 0.5) for c in range(first, array.shape[0])]


def plot_prediction_overlay(
    image: Any,
    label: Any,
    prediction: Any,
    path: str | os.PathLike,
    title: str | None = None,
    slice_index: int | None = None,
    include_background: bool = True,
    transpose: bool = False,
) -> Path:
    """
    An image with the contours of its ground-truth mask (solid) and of the predicted mask (dashed).

    Arrays are channel-first, as MONAI transforms produce them: ``(C, H, W)`` in 2D or ``(C, H, W, D)`` in 3D, where
    a 3D volume is shown at one slice of the last axis (the middle one by default). The image is shown in grey
    from its first channel, or in colour when it has 3 channels (endoscopy RGB), scaled to its own min-max.
    Segmentations have one channel of class indices (0 = background; non-integer values are read as a foreground
    probability and thresholded at 0.5) or one channel per class (thresholded at 0.5). With one foreground class the
    truth is green and the prediction red; with several, each class has its colour.

    Args:
        image: NumPy array or tensor, ``(C, H, W)`` or ``(C, H, W, D)``.
        label: ground truth, same spatial shape as ``image``.
        prediction: predicted segmentation, same spatial shape as ``image``.
        path: destination ``.png`` file.
        title: figure title (a 3D volume also gets the slice shown).
        slice_index: slice of the last axis to show for a 3D volume (default: the middle one).
        include_background: draw channel 0 of multi-channel (one-hot) segmentations; turn off for one-hot masks
            whose channel 0 is the background.
        transpose: swap the two displayed axes (e.g. for images read with MONAI's ``PILReader``, which puts width
            first).

    Raises:
        ValueError: arrays that are not channel-first 2D/3D, spatial shapes that differ, a slice index out of
            range, or ``path`` not ending with ``.png``.
    """
    where = "plot_prediction_overlay"
    destination = _check_png_path(path, where)
    image_array = _as_array(image, "image", where)
    if image_array.ndim not in (3, 4):
        raise ValueError(
            f"{where}: image must be channel-first (C, H, W) or (C, H, W, D), got shape {tuple(image_array.shape)}."
        )
    spatial = image_array.shape[1:]
    masks = {}
    for name, value in (("label", label), ("prediction", prediction)):
        array = _as_array(value, name, where)
        if array.ndim != image_array.ndim or array.shape[1:] != spatial:
            raise ValueError(
                f"{where}: {name} shape {tuple(array.shape)} does not match image shape {tuple(image_array.shape)} "
                "(channel-first, same spatial size expected)."
            )
        masks[name] = array

    heading = title or ""
    if image_array.ndim == 4:
        depth = spatial[-1]
        index = depth // 2 if slice_index is None else slice_index
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < depth:
            raise ValueError(f"{where}: slice_index must be an int in [0, {depth}), got {slice_index!r}.")
        image_array = image_array[..., index]
        masks = {name: array[..., index] for name, array in masks.items()}
        heading = f"{heading} (slice {index} of {depth})".strip()

    shown = image_array.astype(np.float64)
    if transpose:
        shown = np.swapaxes(shown, 1, 2)
        masks = {name: np.swapaxes(array, 1, 2) for name, array in masks.items()}
    low, high = float(np.min(shown)), float(np.max(shown))
    shown = (shown - low) / (high - low) if high > low else np.zeros_like(shown)

    figure = Figure(figsize=(6, 6.4), layout="constrained")
    axes = figure.subplots()
    if shown.shape[0] == 3:
        axes.imshow(np.moveaxis(shown, 0, -1), interpolation="nearest")
    else:
        axes.imshow(shown[0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")

    from matplotlib import colormaps

    palette = colormaps["tab10"]
    outlines = {
        name: [(c, m) for c, m in _class_masks(masks[name], include_background, name, where) if m.any() and not m.all()]
        for name in ("label", "prediction")
    }
    classes = sorted({class_id for pairs in outlines.values() for class_id, _ in pairs})
    # one class: the usual green truth / red prediction; several: one colour per class, style tells the source
    single = {"label": "lime", "prediction": "red"} if len(classes) <= 1 else None
    for name, style in (("label", "solid"), ("prediction", "dashed")):
        for class_id, mask in outlines[name]:
            colour = single[name] if single else palette(class_id % 10)
            axes.contour(mask.astype(np.float32), levels=[0.5], colors=[colour], linestyles=style, linewidths=1.5)
    handles = [
        Line2D([], [], color=single["label"] if single else "white", linestyle="solid", label="ground truth"),
        Line2D([], [], color=single["prediction"] if single else "white", linestyle="dashed", label="prediction"),
    ]
    if not single:
        handles += [Line2D([], [], color=palette(c % 10), label=f"class {c}") for c in classes]
    axes.legend(handles=handles, loc="upper right", fontsize="small", facecolor="dimgray", labelcolor="white")
    axes.set_axis_off()
    if heading:
        axes.set_title(heading)
    return _save(figure, destination, where)


def _check_maps(maps: Any, name: str, where: str) -> np.ndarray:
    array = _as_array(maps, name, where)
    if array.ndim != 3 or 0 in array.shape:
        raise ValueError(f"{where}: {name} must be (C, H, W) maps with no empty axis, got shape {tuple(array.shape)}.")
    return array


def _draw_map_grid(axes: Any, maps: np.ndarray, heading: str) -> None:
    """Each channel of ``maps`` normalised on its own, in a near-square grid, its index under its tile."""
    height, width = maps.shape[1:]
    mosaic, origins = tile_maps(normalize_maps(maps), gap=max(1, min(height, width) // 8))
    from matplotlib import colormaps

    palette = colormaps["magma"].with_extremes(bad="white")
    axes.imshow(np.ma.masked_invalid(mosaic), cmap=palette, vmin=0.0, vmax=1.0, interpolation="nearest")
    columns = grid_shape(maps.shape[0])[1]
    fontsize = max(4.0, min(8.0, 60.0 / columns))
    for channel, (top, left) in enumerate(origins):
        axes.text(left + width / 2 - 0.5, top + height - 0.5, str(channel), ha="center", va="top", fontsize=fontsize,
                  color="black", clip_on=False)
    axes.set_xticks([])
    axes.set_yticks([])
    for spine in axes.spines.values():
        spine.set_visible(False)
    axes.set_title(heading, fontsize="medium")


def _grid_inches(maps: np.ndarray) -> tuple[float, float]:
    """Figure size of one grid: tiles about 0.45 to 1.2 inches wide, a row of labels under each row of tiles."""
    rows, columns = grid_shape(maps.shape[0])
    tile = max(0.45, min(1.2, 10.0 / columns))
    aspect = maps.shape[1] / maps.shape[2]
    return columns * tile, rows * (tile * aspect + 0.15)


def plot_feature_map_grid(maps: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """
    The feature maps of one channel group: one tile per channel, each min-max normalised on its own (dark: the
    map's minimum, bright: its maximum), its channel index under it, in a near-square grid
    (:func:`~monai_pruning.report.feature_maps.grid_shape`).

    Args:
        maps: ``(C, H, W)`` array or tensor, one 2D map per channel (a slice, for 3D maps).
        path: destination ``.png`` file.
        title: figure title.

    Raises:
        ValueError: ``maps`` not ``(C, H, W)``, non-finite values, or ``path`` not ending with ``.png``.
    """
    where = "plot_feature_map_grid"
    destination = _check_png_path(path, where)
    array = _check_maps(maps, "maps", where)
    width, height = _grid_inches(array)
    figure = Figure(figsize=(max(width, 3.0), height + 0.5), layout="constrained")
    _draw_map_grid(figure.subplots(), array, title or f"{array.shape[0]} channels")
    return _save(figure, destination, where)


def plot_channel_distances(matrix: Any, path: str | os.PathLike, title: str | None = None) -> Path:
    """
    A heatmap of pairwise channel distances of one group, e.g.
    :func:`~monai_pruning.report.feature_maps.channel_distance_matrix` (row: the reference channel, column: the
    channel scored; 0 is a copy of the reference, on a fixed [0, 1] colour scale).

    Args:
        matrix: ``(C, C)`` array or tensor.
        path: destination ``.png`` file.
        title: figure title.

    Raises:
        ValueError: ``matrix`` not square, or ``path`` not ending with ``.png``.
    """
    where = "plot_channel_distances"
    destination = _check_png_path(path, where)
    array = _as_array(matrix, "matrix", where).astype(np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1] or array.shape[0] == 0:
        raise ValueError(f"{where}: matrix must be square (C, C), got shape {tuple(array.shape)}.")
    side = min(9.0, 3.5 + 0.08 * array.shape[0])
    figure = Figure(figsize=(side + 1.2, side + 0.4), layout="constrained")
    axes = figure.subplots()
    image = axes.imshow(array, cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    figure.colorbar(image, ax=axes, shrink=0.8, label="delta_prune")
    axes.set_xlabel("channel scored")
    axes.set_ylabel("reference channel")
    axes.set_title(title or f"channel distances ({array.shape[0]} channels)", fontsize="medium")
    return _save(figure, destination, where)


def plot_feature_map_comparison(maps: Mapping[str, Any], path: str | os.PathLike, title: str | None = None) -> Path:
    """
    The feature maps of one channel group in several networks, side by side (e.g. the unpruned baseline and what
    each pruning method kept of it, computed from the same input): one grid per network, as
    :func:`plot_feature_map_grid` draws it.

    Args:
        maps: ``{network label: (C, H, W) maps}``, in the order to show; C may differ between networks.
        path: destination ``.png`` file.
        title: figure title.

    Raises:
        ValueError: no networks, maps not ``(C, H, W)``, or ``path`` not ending with ``.png``.
    """
    where = "plot_feature_map_comparison"
    destination = _check_png_path(path, where)
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError(f"{where}: maps must be a non-empty dict of label -> (C, H, W) maps.")
    arrays = {str(label): _check_maps(value, f"maps[{label!r}]", where) for label, value in maps.items()}
    sizes = [_grid_inches(array) for array in arrays.values()]
    width = sum(max(w, 2.5) for w, _ in sizes) + 0.3 * len(sizes)
    height = max(h for _, h in sizes) + (0.9 if title else 0.5)
    figure = Figure(figsize=(width, height), layout="constrained")
    panels = figure.subplots(1, len(arrays), squeeze=False,
                             gridspec_kw={"width_ratios": [max(w, 2.5) for w, _ in sizes]})[0]
    for axes, (label, array) in zip(panels, arrays.items()):
        _draw_map_grid(axes, array, f"{label}: {array.shape[0]} channels")
    if title:
        figure.suptitle(title)
    return _save(figure, destination, where)


def plot_cut_scores(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike,
    key: str = "cut_scores",
    x: str = "epoch",
    threshold: float | None = None,
    log_y: bool = False,
    score_label: str = "score",
    title: str | None = None,
) -> Path:
    """
    At every cut, the criterion's scores of the channels removed against those kept, one panel per channel group:
    the median and the highest score removed (red) and the lowest and the median score kept (blue). Both criteria
    remove low scores, so a clean cut has every red point below the blue ones; a kept channel scoring below a
    removed one was kept by a floor (``min_channels``, ``min_width_fraction``, whole GroupNorm units) or by a size
    target that needed only part of the candidates.

    Args:
        rows: history rows (or a ``PruningHistory``); a row's ``key`` entry is ``{group: summary}`` with the fields
            of :func:`~monai_pruning.report.history.cut_score_summary` for every group cut in that row.
        path: destination ``.png`` file.
        key: row entry holding the summaries.
        x: row entry for the horizontal axis.
        threshold: a score to draw as a dashed line (e.g. 1.0 for Sauron's delta_prune relative to tau).
        log_y: logarithmic score axis (TaylorFO's importances span orders of magnitude); non-positive scores are
            then left out.
        score_label: name of the score on the vertical axis.
        title: figure title.

    Raises:
        ValueError: no row has a summary in ``key``, or ``path`` does not end with ``.png``.
    """
    where = "plot_cut_scores"
    rows = _check_rows(rows, where)
    destination = _check_png_path(path, where)
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}
    fields = ("removed_median", "removed_max", "kept_min", "kept_median")
    for index, row in enumerate(rows):
        summaries = row.get(key)
        if not isinstance(summaries, Mapping):
            continue
        position = float(row[x]) if _is_number(row.get(x)) else float(index)
        for group, summary in summaries.items():
            if not isinstance(summary, Mapping):
                continue
            points = series.setdefault(str(group), {field: [] for field in fields})
            for field in fields:
                value = summary.get(field)
                if _is_number(value) and math.isfinite(value) and (value > 0 or not log_y):
                    points[field].append((position, float(value)))
    if not series:
        raise ValueError(f"{where}: no row has a {key!r} dict of cut summaries.")
    count = len(series)
    columns = min(4, count)
    panel_rows = -(-count // columns)
    figure = Figure(figsize=(3.2 * columns + 0.4, 2.4 * panel_rows + 0.8), layout="constrained")
    grid = figure.subplots(panel_rows, columns, squeeze=False, sharex=True)
    styles = {
        "removed_median": ("tab:red", "o", True, "removed: median"),
        "removed_max": ("tab:red", "^", False, "removed: highest"),
        "kept_min": ("tab:blue", "v", False, "kept: lowest"),
        "kept_median": ("tab:blue", "o", True, "kept: median"),
    }
    for axes, (group, points) in zip(grid.flat, series.items()):
        for field, (colour, marker, filled, label) in styles.items():
            if points[field]:
                xs, ys = zip(*points[field])
                axes.plot(xs, ys, linestyle="none", marker=marker, markersize=4, color=colour,
                          markerfacecolor=colour if filled else "none", label=label)
        if threshold is not None:
            axes.axhline(float(threshold), color="grey", linestyle="--", linewidth=1)
        if log_y:
            axes.set_yscale("log")
        axes.set_title(group, fontsize="small")
        axes.grid(True, alpha=0.3)
        axes.tick_params(labelsize="small")
    for axes in grid.flat[count:]:
        axes.set_axis_off()
    for axes in grid[:, 0]:
        axes.set_ylabel(score_label, fontsize="small")
    for axes in grid[-1, :]:
        axes.set_xlabel(x, fontsize="small")
    handles = [Line2D([], [], linestyle="none", marker=m, color=c, markerfacecolor=c if f else "none", label=lab)
               for c, m, f, lab in styles.values()]
    if threshold is not None:
        handles.append(Line2D([], [], color="grey", linestyle="--", label=f"{threshold:g}"))
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize="small")
    figure.suptitle(title or "scores of the channels removed and kept at each cut")
    return _save(figure, destination, where)
