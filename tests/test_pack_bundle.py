"""pack_bundle: what travels to a collaborator, and that an export older than the weights never does."""

from __future__ import annotations

import os
import zipfile

import pytest

from monai_pruning.pack_bundle import main, pack_bundle


def _bundle(root, exports=(), export_age_s=0.0):
    for name in ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE", "models/model.pt",
                 "runs/checkpoints/checkpoint_epoch=1.pt", "data/demo/images/a.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(name)
    weights_time = (root / "models/model.pt").stat().st_mtime
    for name in exports:
        (root / name).write_text(name)
        os.utime(root / name, (weights_time + export_age_s, weights_time + export_age_s))
    return root


def test_the_zip_holds_configs_docs_licence_weights_and_current_exports_but_no_runs_or_data(tmp_path):
    root = _bundle(tmp_path / "polyp", exports=("models/model.ts", "models/model.onnx"), export_age_s=5.0)
    with zipfile.ZipFile(pack_bundle(root, tmp_path / "out.zip")) as archive:
        names = set(archive.namelist())
    assert {"polyp/configs/metadata.json", "polyp/docs/README.md", "polyp/LICENSE", "polyp/models/model.pt",
            "polyp/models/model.ts", "polyp/models/model.onnx"} <= names
    assert not any("/runs/" in name or "/data/" in name for name in names)


@pytest.mark.parametrize("export", ["models/model.ts", "models/model.onnx"])
def test_an_export_older_than_the_weights_stops_packing_with_the_command_to_export_it_again(tmp_path, export):
    root = _bundle(tmp_path / "polyp", exports=(export,), export_age_s=-60.0)
    with pytest.raises(ValueError, match=f"{export} is older than models/model.pt.*export it again"):
        pack_bundle(root, tmp_path / "out.zip")
    assert not (tmp_path / "out.zip").exists() and not (tmp_path / "out.zip.partial").exists()


def test_the_command_line_says_in_one_line_why_it_did_not_pack(tmp_path, capsys):
    root = _bundle(tmp_path / "polyp", exports=("models/model.ts",), export_age_s=-60.0)
    with pytest.raises(SystemExit) as stop:
        main([str(root), "--output", str(tmp_path / "out.zip")])
    assert stop.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("ERROR: cannot pack") and "\n" not in error
