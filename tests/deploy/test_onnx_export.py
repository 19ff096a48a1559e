"""ONNX export with free batch and spatial axes, and the exported file in ONNX Runtime / OpenVINO against PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.networks.nets import DynUNet

from monai_pruning.engine import ChannelPruner, PruningRecord, load_pruned_network

onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from monai_pruning.deploy import OnnxNetwork, export_onnx, load_runtime, onnx_dynamic_axes  # noqa: E402

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
TOLERANCE = 1e-4  # max abs difference of the logits; measured 0.5e-5 to 2e-5 (ONNX Runtime), up to 1e-4 (OpenVINO)
TINY_FILTERS = [4, 8, 8, 8, 8]


def _pruned_dynunet(spatial_dims: int, in_channels: int) -> torch.nn.Module:
    """A tiny DynUNet with one channel cut from every prunable group: widths no unpruned network has."""
    torch.manual_seed(0)
    net = DynUNet(spatial_dims, in_channels, 2, [3, 3, 3], [1, 2, 2], [2, 2], filters=[4, 8, 8], norm_name="instance")
    example = (2, in_channels) + (16,) * spatial_dims
    pruner = ChannelPruner(net, example, min_channels=2)
    widths = pruner.widths()
    pruner.cut({name: [0] for name in widths if widths[name] > 2})
    return net.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """
    ``exported(spatial_dims, in_channels, export_shape)`` -> ``(network, path, kept_train_flags)``: the pruned tiny
    DynUNet exported once per module (each export traces the network for seconds; several tests read the same file).

    The network is exported while in training mode, and ``kept_train_flags`` says whether every module was still in
    training mode right after :func:`export_onnx`; it is then switched to evaluation mode for the comparisons.
    """
    cache = {}

    def export(spatial_dims: int, in_channels: int, export_shape: tuple[int, ...]):
        key = (spatial_dims, in_channels, tuple(export_shape))
        if key not in cache:
            network = _pruned_dynunet(spatial_dims, in_channels).train()
            path = export_onnx(network, tmp_path_factory.mktemp("onnx") / "model.onnx", export_shape)
            kept_train_flags = all(module.training for module in network.modules())
            cache[key] = (network.eval(), path, kept_train_flags)
        return cache[key]

    return export


def _max_difference(run, network: torch.nn.Module, shape: tuple[int, ...]) -> float:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = network(x).numpy()
    got = run(x.numpy())
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


@pytest.mark.parametrize(
    "spatial_dims, export_shape, other_shape",
    [(2, (1, 3, 16, 16), (2, 3, 48, 80)), (3, (1, 1, 16, 16, 16), (2, 1, 24, 32, 16))],
)
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_a_pruned_network_exported_at_one_size_runs_at_another_batch_and_size_within_tolerance_of_pytorch(
    exported, runtime, spatial_dims, export_shape, other_shape
):
    if runtime == "openvino":
        pytest.importorskip("openvino")
    network, path, _ = exported(spatial_dims, export_shape[1], export_shape)
    run = load_runtime(path, runtime, num_threads=1)
    for shape in (export_shape, other_shape):
        assert _max_difference(run, network, shape) < TOLERANCE, shape


def test_export_onnx_puts_back_the_train_flags_and_names_the_free_axes(exported):
    import onnx

    _, path, kept_train_flags = exported(2, 3, (1, 3, 16, 16))  # exported in training mode
    assert kept_train_flags
    graph = onnx.load(str(path)).graph
    (image,), (pred,) = graph.input, graph.output
    assert (image.name, pred.name) == ("image", "pred")
    dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3]))


def _tiny_bundle_checkpoint(bundle: str, root: Path) -> torch.nn.Module:
    """The bundle's network_def at TINY_FILTERS, pruned, saved as the bundle's models/model.pt; returns it reloaded."""
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / bundle / "configs" / "inference.json"))
    parser["network_def#filters"] = TINY_FILTERS
    network = parser.get_parsed_content("network_def")
    spatial_dims = parser["network_def#spatial_dims"]
    pruner = ChannelPruner(network, (2, network.in_channels) + (32,) * spatial_dims, min_channels=2)
    widths = pruner.widths()
    pruner.cut({name: [1] for name in widths if widths[name] > 2})
    (root / "models").mkdir(parents=True)
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()},
               root / "models" / "model.pt")
    fresh = ConfigParser()
    fresh.read_config(str(BUNDLES / bundle / "configs" / "inference.json"))
    fresh["network_def#filters"] = TINY_FILTERS
    return load_pruned_network(fresh.get_parsed_content("network_def"), root / "models" / "model.pt")


@pytest.mark.parametrize("bundle", ["polyp_endoscopy_segmentation", "brain_mri_segmentation", "kidney_ct_segmentation"])
def test_the_bundle_export_args_file_gives_an_onnx_model_with_free_axes_that_matches_pytorch(tmp_path, bundle):
    from monai.bundle import onnx_export

    configs = BUNDLES / bundle / "configs"
    args = json.loads((configs / "export_onnx.json").read_text())
    assert args["net_id"] == "pruned_network_def" and args["key_in_ckpt"] == "model"
    network = _tiny_bundle_checkpoint(bundle, tmp_path)
    onnx_export(
        args_file=str(configs / "export_onnx.json"),
        filepath=str(tmp_path / "models" / "model.onnx"),
        ckpt_file=str(tmp_path / "models" / "model.pt"),
        meta_file=str(configs / "metadata.json"),
        config_file=str(configs / "inference.json"),
        bundle_root=str(tmp_path),
        **{"network_def#filters": TINY_FILTERS},
    )
    run = load_runtime(tmp_path / "models" / "model.onnx", "onnxruntime", num_threads=1)
    spatial_dims = len(args["converter_kwargs"]["dynamic_axes"]["image"]) - 1
    assert args["converter_kwargs"]["dynamic_axes"] == onnx_dynamic_axes(spatial_dims)
    channels = network.in_channels
    sizes = [(1, channels, 352, 352), (2, channels, 64, 96)] if spatial_dims == 2 else [
        (1, channels, 32, 32, 32), (1, channels, 64, 96, 32)]
    for shape in sizes:  # metadata's example is 32 per axis: neither is the exported size except 32^3 in 3D
        assert _max_difference(run, network, shape) < TOLERANCE, shape


def test_onnx_network_runs_like_the_network_it_was_exported_from(exported):
    network, path, _ = exported(2, 3, (1, 3, 16, 16))
    module = OnnxNetwork(path, num_threads=1)
    x = torch.rand(3, 3, 32, 48)
    with torch.no_grad():
        expected = network(x)
    got = module(x)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    assert torch.allclose(got, expected, atol=TOLERANCE)


def test_onnx_network_without_a_file_or_with_an_unknown_runtime_stops_with_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="onnx_export --args_file configs/export_onnx.json"):
        OnnxNetwork(tmp_path / "missing.onnx")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="`runtime` must be one of"):
        OnnxNetwork(tmp_path / "model.onnx", runtime="tensorrt")
    with pytest.raises(ValueError, match="num_threads"):
        load_runtime(tmp_path / "model.onnx", num_threads=-1)
