"""The polyp bundle's recipe for real frames (configs/real_data.json), laid over train.json and its overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from tests.bundles.bundle_cli import BUNDLES

POLYP = BUNDLES / "polyp_endoscopy_segmentation" / "configs"


def _parser(*overlays: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(POLYP / name) for name in ("train.json", "real_data.json", *overlays)])
    parser["bundle_root"] = str(POLYP.parent)
    return parser


def test_the_real_data_recipe_trains_longer_and_adds_affine_and_colour_augmentation_to_the_plain_flips():
    plain, real = ConfigParser(), _parser()
    plain.read_config(str(POLYP / "train.json"))
    assert real["num_epochs"] > plain["num_epochs"]
    names = [t["_target_"] for t in real["train#random_transforms"]]
    assert {t["_target_"] for t in plain["train#random_transforms"]} <= set(names)
    assert {"RandAffined", "RandScaleIntensityd", "RandShiftIntensityd"} <= set(names)


@pytest.mark.parametrize("overlay", [(), ("prune_sauron.json",), ("prune_taylorfo.json",), ("evaluate.json",)])
def test_the_recipe_keeps_each_overlay_s_training_or_evaluation_config_buildable(overlay):
    parser = _parser(*overlay)
    assert parser.get_parsed_content("train#preprocessing", instantiate=True) is not None
    assert parser.get_parsed_content("validate#preprocessing", instantiate=True) is not None


def test_augmented_training_frames_keep_the_roi_size_and_a_binary_mask():
    parser = _parser()
    random_part = parser.get_parsed_content("train#random_transforms", instantiate=True)
    augment = Compose(random_part)
    augment.set_random_state(seed=0)
    size = tuple(parser["roi_size"])
    image = torch.rand(3, *size)
    label = torch.zeros(1, *size)
    label[:, 40:90, 30:80] = 1
    changed = 0
    for _ in range(8):
        out = augment({"image": image.clone(), "label": label.clone()})
        assert tuple(out["image"].shape) == (3, *size) and tuple(out["label"].shape) == (1, *size)
        assert set(np.unique(np.asarray(out["label"])).tolist()) <= {0.0, 1.0}
        changed += not torch.equal(torch.as_tensor(out["image"]), image)
    assert changed > 0
