from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from monai.data import MetaTensor
from monai.networks.nets import UNet

from monai_pruning.engine import ChannelPruner, PruningRecord, load_pruned_network
from monai_pruning.handlers import FeatureMapExport
from monai_pruning.handlers.feature_map_export import FeatureMapError, capture_group_maps, prepare_input
from monai_pruning.report.feature_maps import grid_shape


def _unet(spatial_dims: int = 2) -> torch.nn.Module:
    torch.manual_seed(0)
    return UNet(spatial_dims, 1, 2, channels=(6, 8, 10), strides=(2, 2), num_res_units=0, norm="instance")


def _image(*spatial: int) -> torch.Tensor:
    return torch.rand(1, *spatial, generator=torch.Generator().manual_seed(3))


def _prunable_widths(network: torch.nn.Module, spatial: tuple[int, ...]) -> dict[str, int]:
    return ChannelPruner(network, (2, 1, *spatial)).widths()


def _pruned(network: torch.nn.Module, spatial: tuple[int, ...]) -> torch.nn.Module:
    pruner = ChannelPruner(network, (2, 1, *spatial))
    pruner.cut({group: list(range(width // 2)) for group, width in pruner.widths().items()})
    return network


class _Writer:
    def __init__(self) -> None:
        self.images: dict[str, np.ndarray] = {}

    def add_image(self, tag, image, step, dataformats="CHW"):
        assert dataformats == "HWC" and step == 0
        self.images[tag] = np.asarray(image)


@pytest.mark.parametrize("pruned", [False, True], ids=["unpruned", "pruned"])
@pytest.mark.parametrize("spatial", [(16, 16), (16, 16, 8)], ids=["2d", "3d"])
def test_one_grid_and_one_distance_map_per_group_with_as_many_tiles_as_the_group_has_channels(tmp_path, spatial,
                                                                                             pruned):
    network = _unet(len(spatial))
    if pruned:
        network = _pruned(network, spatial)
    widths = _prunable_widths(network, spatial)
    writer = _Writer()
    written = FeatureMapExport(network, _image(*spatial), output_dir=tmp_path, summary_writer=writer)()
    assert list(written) == list(widths)
    assert len(list(tmp_path.glob("*_maps.png"))) == len(widths)
    assert len(list(tmp_path.glob("*_distances.png"))) == len(widths)
    for group, entry in written.items():
        assert entry["channels"] == widths[group]
        assert tuple(entry["grid"]) == grid_shape(widths[group])
        assert entry["maps"].is_file() and entry["distances"].is_file()
        # TensorBoard gets the very pixels of the PNG file
        np.testing.assert_array_equal(writer.images[f"feature_maps/{group}/maps"],
                                      np.round(imread(str(entry["maps"]))[..., :3] * 255).astype(np.uint8))
    assert len(writer.images) == 2 * len(widths)
    if pruned:
        assert all(width < full for width, full in zip(widths.values(), _prunable_widths(_unet(len(spatial)),
                                                                                            spatial).values()))


def test_the_same_network_and_input_give_the_same_files(tmp_path):
    first = FeatureMapExport(_unet(), _image(16, 16), output_dir=tmp_path / "a")()
    second = FeatureMapExport(_unet(), _image(16, 16), output_dir=tmp_path / "b")()
    for group in first:
        for kind in ("maps", "distances"):
            assert first[group][kind].read_bytes() == second[group][kind].read_bytes()


def test_the_maps_are_those_the_group_feeds_its_first_consumer_and_the_network_is_left_as_it_was():
    network = _unet()
    network.train()
    before = {name: value.clone() for name, value in network.state_dict().items()}
    batch = _image(16, 16).unsqueeze(0)
    maps, graph = capture_group_maps(network, batch)
    assert network.training and all(torch.equal(before[k], v) for k, v in network.state_dict().items())
    first = next(iter(maps))
    producer = dict(network.named_modules())[graph.groups[first].producers[0]]
    seen = {}
    handle = producer.register_forward_hook(lambda module, args, output: seen.setdefault("out", output))
    network.eval()
    with torch.no_grad():
        network(batch)
    handle.remove()
    assert maps[first].shape[0] == seen["out"].shape[1]
    assert maps[first].shape[1:] == seen["out"].shape[2:]


def test_a_pruned_checkpoint_loads_into_the_unpruned_definition_and_shows_its_pruned_widths(tmp_path):
    network = _pruned(_unet(), (16, 16))
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, tmp_path / "m.pt")
    loaded = load_pruned_network(_unet(), tmp_path / "m.pt")
    written = FeatureMapExport(loaded, _image(16, 16), output_dir=tmp_path / "maps")()
    assert {g: e["channels"] for g, e in written.items()} == _prunable_widths(network, (16, 16))


def test_a_3d_volume_is_shown_at_the_slice_through_the_label_centre_else_the_middle():
    volume = MetaTensor(_image(20, 20, 30), affine=torch.eye(4))
    label = torch.zeros(1, 20, 20, 30)
    label[0, 3:6, 10:14, 21:26] = 1  # centre at (4, 11.5, 23)
    centred = prepare_input(volume, label=label, window=[8, 8, 8])
    assert centred.batch.shape == (1, 1, 8, 8, 8)
    # the window starts at round(23 - 4) = 19 along the last axis, so the label's centre is its slice 4
    assert centred.slice_index == 4
    torch.testing.assert_close(centred.batch[0, :, :, :, centred.slice_index], volume.as_tensor()[:, 0:8, 8:16, 23])
    middle = prepare_input(volume, window=None)
    assert middle.batch.shape == (1, 1, 20, 20, 30) and middle.slice_index == 15


def test_an_image_smaller_than_the_window_is_padded_at_the_end():
    prepared = prepare_input(_image(10, 16), window=[16, 16])
    assert prepared.batch.shape == (1, 1, 16, 16)
    torch.testing.assert_close(prepared.batch[0, :, :10], _image(10, 16))


@pytest.mark.parametrize(
    "image, kwargs, message",
    [
        (torch.rand(16, 16), {}, r"\(C, H, W\)"),
        (torch.rand(1, 16, 16), {"window": [16, 16, 16]}, "must have 2 sizes"),
        (torch.rand(1, 16, 16), {"label": torch.ones(1, 16, 16)}, "only chooses the slice of a 3D volume"),
        (torch.rand(1, 8, 8, 8), {"label": torch.zeros(1, 8, 8, 8)}, "no foreground"),
        (torch.rand(1, 8, 8, 8), {"label": "/no/such/label.nii.gz"}, "label file not found"),
    ],
)
def test_unusable_inputs_fail_before_any_forward_pass_with_one_line(image, kwargs, message):
    with pytest.raises(FeatureMapError, match=message):
        FeatureMapExport(_unet(), image, **kwargs)
