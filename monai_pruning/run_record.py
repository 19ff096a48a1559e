"""What a bundle run writes next to its outputs so that it can be reproduced: seed, versions and the exact config."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from monai.bundle import ConfigParser

from monai_pruning.distributed import rank, world_size
from monai_pruning.report.atomic_file import atomic_write_text

__all__ = ["record_run", "config_from_argv"]

_PACKAGES = ("monai-pruning", "monai", "torch", "pytorch-ignite", "numpy", "nibabel", "pillow")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def config_from_argv(argv: Sequence[str]) -> dict[str, Any] | None:
    """The merged config of a ``python -m monai.bundle run`` command line: its config files plus ``--key value``
    overrides, as MONAI itself merges them.  None when the command line is not a bundle run."""
    args = list(argv)
    if "--config_file" not in args:
        return None
    overrides: dict[str, Any] = {}
    config_file: Any = None
    k = 0
    while k < len(args):
        if args[k].startswith("--") and k + 1 < len(args):
            key, value = args[k][2:], args[k + 1]
            if key == "config_file":
                config_file = value
            elif key not in ("meta_file", "logging_file", "run_id", "init_id", "final_id", "tracking"):
                overrides[key] = value
            k += 2
        else:
            k += 1
    files = config_file
    if isinstance(files, str) and files.strip().startswith("["):
        files = [f.strip().strip("'\"") for f in files.strip()[1:-1].split(",") if f.strip()]
    parser = ConfigParser()
    parser.read_config(files)
    for key, value in overrides.items():
        try:
            value = json.loads(value)
        except (TypeError, ValueError):
            pass
        parser[key.replace("#", "::")] = value
    return parser.get()


def record_run(output_dir: str, seed: int, argv: Sequence[str] | None = None) -> str:
    """Write ``<output_dir>/run_record.json``: seed, time, command line, package versions and the merged config.

    Called from a bundle's ``initialize`` list; returns the path written.  The data split is saved beside it by
    :func:`monai_pruning.data.prepare_task_data` (``split.json``).  Under ``torchrun`` only rank 0 writes it (every
    rank runs the same command and config) and ``world_size`` says how many processes trained.
    """
    argv = list(sys.argv if argv is None else argv)
    record = {
        "seed": int(seed),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": argv,
        "cwd": os.getcwd(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: _version(name) for name in _PACKAGES},
        "config": config_from_argv(argv[1:]),
        "world_size": world_size(),
    }
    path = os.path.join(output_dir, "run_record.json")
    if rank() == 0:
        atomic_write_text(path, json.dumps(record, indent=2, default=str))
    return path
