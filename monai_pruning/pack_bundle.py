"""Pack a trained bundle into one zip for a collaborator: configs, weights, docs and licence, nothing else.

    python -m monai_pruning.pack_bundle bundles/polyp_endoscopy_segmentation --output polyp_endoscopy_segmentation.zip

The zip holds the MONAI bundle layout under a top folder named after the bundle (``<name>/configs``, ``<name>/models``,
``<name>/docs``, ``<name>/LICENSE``); training outputs, caches and data (``runs/``, ``data/``, ``eval/``) stay out,
so nothing patient-related travels by accident.  The collaborator needs ``pip install monai-pruning`` and then runs
``configs/inference.json`` from the unpacked folder.

Exports made from the weights (``models/model.ts`` by ``ckpt_export``, ``models/model.onnx`` by ``onnx_export``, for
``configs/inference_onnx.json``) travel too, but only when they are at least as new as ``models/model.pt``: an export
left over from earlier weights (e.g. before the model was pruned again) would give the collaborator another network
than the one the configs load, so packing stops and says which file to export again or delete.
"""

from __future__ import annotations

import argparse
import os
import zipfile
from pathlib import Path

__all__ = ["pack_bundle"]

WEIGHTS = "models/model.pt"
#: files made from the weights, with the command that makes them again
EXPORTS = {
    "models/model.ts": "python -m monai.bundle ckpt_export pruned_network_def --filepath models/model.ts --ckpt_file "
                       "models/model.pt --key_in_ckpt model --meta_file configs/metadata.json --config_file "
                       "configs/inference.json",
    "models/model.onnx": "python -m monai.bundle onnx_export --args_file configs/export_onnx.json",
}
SHIPPED = ("configs", "docs", "LICENSE", WEIGHTS, *EXPORTS)
REQUIRED = ("configs/metadata.json", "configs/inference.json", "LICENSE", WEIGHTS)


def pack_bundle(bundle_dir: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Write the zip and return its path (default ``<bundle name>.zip`` in the current folder).

    Raises:
        FileNotFoundError: the bundle misses a file a collaborator needs (e.g. ``models/model.pt``: train first).
        ValueError: an export (``models/model.ts``, ``models/model.onnx``) is older than ``models/model.pt``.
    """
    root = Path(bundle_dir).resolve()
    for needed in REQUIRED:
        if not (root / needed).exists():
            raise FileNotFoundError(f"cannot pack {root}: {needed} is missing (train the bundle first?)")
    weights_time = (root / WEIGHTS).stat().st_mtime
    for export, command in EXPORTS.items():
        if (root / export).exists() and (root / export).stat().st_mtime < weights_time:
            raise ValueError(f"cannot pack {root}: {export} is older than {WEIGHTS}, so it holds other weights; "
                             f"export it again ({command}) or delete it")
    target = Path(output) if output is not None else Path.cwd() / f"{root.name}.zip"
    partial = target.with_name(target.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for item in SHIPPED:
            path = root / item
            if path.is_dir():
                files = sorted(p for p in path.rglob("*") if p.is_file())
            else:
                files = [path] if path.exists() else []
            for file in files:
                if "__pycache__" not in file.parts:
                    archive.write(file, Path(root.name) / file.relative_to(root))
    os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Pack a trained monai_pruning bundle into a zip for sharing.")
    parser.add_argument("bundle_dir", help="the bundle folder, e.g. bundles/polyp_endoscopy_segmentation")
    parser.add_argument("--output", default=None, help="zip file to write (default: <bundle name>.zip here)")
    args = parser.parse_args(argv)
    try:
        print(pack_bundle(args.bundle_dir, args.output))
    except (FileNotFoundError, ValueError) as err:
        parser.exit(1, f"ERROR: {err}\n")


if __name__ == "__main__":
    main()
