"""The checkpoint a fine-tuning pruning run (TaylorFO) starts from: checked to be the unpruned baseline, and identified.

A bundle's plain training (``configs/train.json``) writes its final weights twice: ``models/model.pt``, which every
later run may replace (a pruning overlay saves its pruned network there, for inference), and
``models/model_baseline.pt``, which only the plain training writes (the pruning overlays disable that saver).
``prune_taylorfo.json`` starts from the latter, through :func:`check_start_checkpoint`::

    "baseline_checkpoint": "$@ckpt_dir + '/model_baseline.pt'",
    "check_baseline": true,
    "start_checkpoint": "$monai_pruning.baseline_checkpoint.check_start_checkpoint(@baseline_checkpoint, @network,
                         newest_model=@ckpt_dir + '/model.pt', check=@check_baseline)",

and loads ``@start_checkpoint['path']``.  The returned identity (path, training epoch when the checkpoint holds one,
sha256 of the file) goes into every pruning history row, so a result says what it started from.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_pruning.config_values import read_flag
from monai_pruning.distributed import unwrap_network
from monai_pruning.engine import PruningRecordError, module_widths

__all__ = ["StartCheckpointError", "check_start_checkpoint", "file_sha256", "narrowed_modules"]

WIDTH_FIELDS = ("in_channels", "out_channels", "num_features", "num_channels", "num_parameters")


class StartCheckpointError(PruningRecordError):
    """The checkpoint a pruning run would start from is not the unpruned baseline it claims to be."""


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read(path: Path) -> dict[str, Any]:
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same one-line message
        raise StartCheckpointError(f"cannot read checkpoint {path}: {str(err).splitlines()[0]}") from None
    if not isinstance(content, Mapping) or not isinstance(content.get("pruning"), Mapping) or "model" not in content:
        raise StartCheckpointError(
            f"{path} is not a bundle checkpoint ({{'pruning': record, 'model': weights}}, as configs/train.json saves)"
        )
    return dict(content)


def narrowed_modules(record: Mapping[str, Any], unpruned: nn.Module) -> dict[str, tuple[int, int]]:
    """
    ``{module: (channels in the record, channels in unpruned)}`` for every module the pruning ``record`` (a
    ``PruningRecord.state_dict()``) gives fewer channels than ``unpruned`` has; empty for an unpruned checkpoint.

    Raises:
        StartCheckpointError: the record names modules ``unpruned`` lacks (or the reverse), or gives a module more
            channels than it has: it was made for another ``network_def``.
    """
    recorded = record.get("modules") if isinstance(record, Mapping) else None
    if not isinstance(recorded, Mapping):
        raise StartCheckpointError("the checkpoint's pruning record has no 'modules'")
    expected = module_widths(unwrap_network(unpruned))
    if set(recorded) != set(expected):
        missing = sorted(set(expected) ^ set(recorded))
        raise StartCheckpointError(
            f"the checkpoint was made for another network_def: module {missing[0]!r} is in only one of them "
            f"({len(missing)} differ)"
        )
    narrowed: dict[str, tuple[int, int]] = {}
    for name, entry in recorded.items():
        for field in WIDTH_FIELDS:
            if field not in expected[name]:
                continue
            have, full = int(entry.get(field, -1)), int(expected[name][field])
            if have > full or have < 1:
                raise StartCheckpointError(
                    f"the checkpoint was made for another network_def: {name}.{field} is {have}, network_def has {full}"
                )
            if have < full:
                narrowed[name] = (have, full)
                break
    return narrowed


def _is_unpruned(path: Path, unpruned: nn.Module) -> bool:
    try:
        return not narrowed_modules(_read(path)["pruning"], unpruned)
    except StartCheckpointError:
        return False


def check_start_checkpoint(
    path: str | os.PathLike,
    network: nn.Module,
    newest_model: str | os.PathLike | None = None,
    check: Any = True,
) -> dict[str, Any]:
    """
    Check that ``path`` holds the unpruned baseline of ``network`` and return its identity.

    ``network`` is the bundle's network as built from ``network_def``, before any checkpoint is loaded into it (in a
    config: ``@network``, resolved when the trainer is built).  Refused, with a one-line error, unless ``check`` is
    false (``--check_baseline false``, to prune a pruned network further on purpose):

    - a pruned checkpoint: its pruning record gives some module fewer channels than ``network_def``;
    - a stale one: ``newest_model`` (the bundle's ``models/model.pt``) holds an unpruned network too, saved later and
      different from it, i.e. a baseline was trained after this checkpoint was written.

    Never accepted: a missing or unreadable file, or a checkpoint made for another ``network_def``.

    Returns:
        ``{"path": absolute path, "epoch": training epoch stored in the checkpoint or None, "sha256": hex digest,
        "pruned_modules": modules narrower than network_def (0 for the baseline)}``, plain JSON data.

    Raises:
        FileNotFoundError: ``path`` does not exist (the baseline was never trained).
        StartCheckpointError: any refusal above.
    """
    start = Path(path).resolve()
    checking = read_flag(check, "check_baseline")
    if not start.is_file():
        raise FileNotFoundError(
            f"no baseline checkpoint at {start}: train the baseline first (configs/train.json writes it), or set "
            "--baseline_checkpoint <path>"
        )
    content = _read(start)
    narrowed = narrowed_modules(content["pruning"], network)
    if narrowed and checking:
        have = sum(widths[0] for widths in narrowed.values())
        full = sum(widths[1] for widths in narrowed.values())
        raise StartCheckpointError(
            f"{start} holds a pruned network ({len(narrowed)} modules narrower than network_def, {have} of their "
            f"{full} channels left), not the unpruned baseline: train the baseline (configs/train.json), or set "
            "--check_baseline false to prune this network further"
        )
    newest = Path(newest_model).resolve() if newest_model is not None else None
    if (
        checking
        and newest is not None
        and newest != start
        and newest.is_file()
        and newest.stat().st_mtime > start.stat().st_mtime
        and _is_unpruned(newest, network)
        and file_sha256(newest) != file_sha256(start)
        and not _same_weights(_read(newest)["model"], content["model"])
    ):
        raise StartCheckpointError(
            f"{start} is stale: {newest} holds an unpruned network saved after it; retrain the baseline, set "
            f"--baseline_checkpoint {newest} to start from that one, or --check_baseline false to keep this one"
        )
    trainer = content.get("trainer")
    epoch = trainer.get("epoch") if isinstance(trainer, Mapping) else None
    return {
        "path": str(start),
        "epoch": int(epoch) if epoch is not None else None,
        "sha256": file_sha256(start),
        "pruned_modules": len(narrowed),
    }


def _same_weights(first: Mapping[str, torch.Tensor], second: Mapping[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
