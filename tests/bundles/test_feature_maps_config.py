"""``configs/feature_maps.json`` of every bundle, read with its ``inference.json`` as the CLI reads them."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

from bundle_cli import BUNDLES
from monai_pruning.engine import ChannelPruner, PruningRecord

SMALL_FILTERS = [4, 4, 8, 8, 8]


def _parser(name: str, tmp_path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / name / "configs" / c) for c in ("inference.json", "feature_maps.json")])
    parser["network_def"]["filters"] = SMALL_FILTERS
    parser.update({"bundle_root": str(tmp_path), **overrides})
    return parser


def _checkpoint(parser: ConfigParser, path, pruned: bool) -> dict[str, int]:
    """Save the bundle's (small) network, half of every group cut when ``pruned``; returns its group widths."""
    network = ConfigParser(parser.get()).get_parsed_content("network_def")
    dims = network.spatial_dims if hasattr(network, "spatial_dims") else 2
    pruner = ChannelPruner(network, (2, network.in_channels, *([32] * dims)))
    if pruned:
        pruner.cut({group: list(range(width // 2)) for group, width in pruner.widths().items()})
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, path)
    return pruner.widths()


def _volume(path, values: np.ndarray, spacing: float) -> None:
    nib.save(nib.Nifti1Image(values, np.diag([spacing, spacing, spacing, 1.0])), str(path))


def test_polyp_config_shows_one_frame_of_a_pruned_checkpoint_at_its_pruned_widths(tmp_path):
    frame = tmp_path / "frame.png"
    Image.fromarray((np.random.RandomState(0).rand(60, 80, 3) * 255).astype(np.uint8)).save(frame)
    parser = _parser("polyp_endoscopy_segmentation", tmp_path, image=str(frame), ckpt_file=str(tmp_path / "m.pt"),
                     roi_size=[32, 32])
    widths = _checkpoint(parser, tmp_path / "m.pt", pruned=True)
    written = parser.get_parsed_content("feature_maps")()
    assert {group: entry["channels"] for group, entry in written.items()} == widths
    assert sorted(p.name for p in (tmp_path / "feature_maps").glob("*_maps.png")) == sorted(
        entry["maps"].name for entry in written.values())
    assert list((tmp_path / "feature_maps").glob("events.out.tfevents.*"))


def test_kidney_config_centres_on_the_label_of_a_ct_volume(tmp_path):
    hu = np.full((48, 48, 40), -1000.0, dtype=np.float32)
    hu[4:44, 4:44, 2:38] = 40.0  # the body
    label = np.zeros(hu.shape, dtype=np.uint8)
    label[30:36, 10:16, 28:34] = 2  # centre at voxel (32.5, 12.5, 30.5) of 3 mm voxels
    _volume(tmp_path / "imaging.nii.gz", hu, 3.0)
    _volume(tmp_path / "segmentation.nii.gz", label, 3.0)
    parser = _parser("kidney_ct_segmentation", tmp_path, image=str(tmp_path / "imaging.nii.gz"),
                     label=str(tmp_path / "segmentation.nii.gz"), ckpt_file=str(tmp_path / "m.pt"))
    widths = _checkpoint(parser, tmp_path / "m.pt", pruned=False)
    export = parser.get_parsed_content("feature_maps")
    prepared = export.prepared
    assert prepared.batch.shape[2:] == (32, 32, 32)  # the bundle's roi_size
    # the body is cropped to 40x40x36 (voxels 4..44, 2..38): the label's centre slice 30.5 - 2 lies in the window
    assert prepared.description.endswith(f"slice {prepared.slice_index} of its last axis")
    window_start = 36 - 32  # the window of 32 around 28.5 in an axis of 36 is shifted to its end
    assert prepared.slice_index == round(28.5) - window_start
    written = export()
    assert {group: entry["channels"] for group, entry in written.items()} == widths


@pytest.mark.parametrize("name", ["brain_mri_segmentation", "kidney_ct_segmentation", "polyp_endoscopy_segmentation"])
def test_compare_reads_every_checkpoint_given_on_the_command_line(tmp_path, name):
    parser = _parser(name, tmp_path, image="unused until the comparison runs",
                     compare_checkpoints={"baseline": str(tmp_path / "a.pt"), "sauron": str(tmp_path / "b.pt")})
    full = _checkpoint(parser, tmp_path / "a.pt", pruned=False)
    halved = _checkpoint(parser, tmp_path / "b.pt", pruned=True)
    networks = parser.get_parsed_content("feature_comparison#networks")
    assert list(networks) == ["baseline", "sauron"]
    for label, widths in (("baseline", full), ("sauron", halved)):
        dims = networks[label].spatial_dims
        shape = (2, networks[label].in_channels, *([32] * dims))
        assert ChannelPruner(networks[label], shape).widths() == widths
