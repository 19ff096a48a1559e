"""The polyp bundle's ONNX path from its own folder with the CLI only: export with the args file, infer in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from bundle_cli import BUNDLES, configs, copy_bundle, monai_bundle, monai_bundles_at_once
from monai_pruning.engine import ChannelPruner, PruningRecord

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

NAME = "polyp_endoscopy_segmentation"
FILTERS = "[4,8,8,16,16]"


def _pruned_checkpoint(root) -> None:
    """An untrained tiny network_def with one channel cut from every group, saved as the bundle's models/model.pt."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / NAME / "configs" / "inference.json"))
    parser["network_def#filters"] = [4, 8, 8, 16, 16]
    torch.manual_seed(0)
    network = parser.get_parsed_content("network_def")
    pruner = ChannelPruner(network, (2, 3, 32, 32), min_channels=2)
    widths = pruner.widths()
    pruner.cut({name: [0] for name in widths if widths[name] > 2})
    (root / "models").mkdir()
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()},
               root / "models" / "model.pt")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """
    ``(bundle folder, frames, PyTorch's masks)``: the bundle with a pruned checkpoint, exported to ONNX with its args
    file, and the masks its PyTorch inference wrote for two frames; both with the CLI, once for every runtime.

    The two commands run at the same time: the export reads models/model.pt and writes models/model.onnx, the
    inference reads models/model.pt and writes its masks.
    """
    tmp_path = tmp_path_factory.mktemp("onnx_inference")
    root = copy_bundle(NAME, tmp_path)
    _pruned_checkpoint(root)
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for index, size in enumerate([(200, 240), (352, 352)]):  # neither is the export size (32x32) nor roi_size
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(frames / f"frame_{index}.png")
    tiny = ["--network_def#filters", FILTERS]
    monai_bundles_at_once(
        (root, ["onnx_export", "--args_file", "configs/export_onnx.json", *tiny]),
        (root, ["run", "--config_file", configs("inference.json"), "--input_dir", str(frames), "--output_dir",
                str(tmp_path / "torch"), *tiny]),
    )
    return root, frames, tmp_path / "torch"


@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_exported_model_in_onnx_runtime_writes_the_same_mask_files_as_pytorch(exported, tmp_path, runtime):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    root, frames, torch_masks = exported
    monai_bundle(root, "run", "--config_file", configs("inference.json", "inference_onnx.json"), "--input_dir",
                 str(frames), "--output_dir", str(tmp_path / "onnx"), "--runtime", runtime)
    names = sorted(path.name for path in torch_masks.iterdir())
    assert names == ["frame_0_mask.png", "frame_1_mask.png"]
    assert sorted(path.name for path in (tmp_path / "onnx").iterdir()) == names
    for name in names:
        expected = np.asarray(Image.open(torch_masks / name))
        got = np.asarray(Image.open(tmp_path / "onnx" / name))
        assert got.shape == expected.shape
        # logits agree to ~1e-5; a pixel whose two classes are that close may round either way
        assert np.mean(got != expected) < 1e-3, name
