"""Polyp inference pointed at a dataset as downloaded (here PolypGen's data_Cn/ release): every frame is segmented,
never a mask, and each mask is named by its frame."""

from __future__ import annotations

import numpy as np
from PIL import Image

from bundle_cli import configs, copy_bundle, monai_bundle, save_untrained_model

NAME = "polyp_endoscopy_segmentation"
FILTERS = [4, 8, 8, 16, 16]
# frame name -> (centre, height, width); the sizes differ so each mask can be matched to its own frame
FRAMES = {"100H0050": ("C1", 36, 48), "100S0001": ("C1", 40, 40), "EndoCV2021_001000": ("C2", 30, 52)}


def _write_polypgen(root, rng):
    for name, (centre, height, width) in FRAMES.items():
        folder = root / f"data_{centre}"
        (folder / f"images_{centre}").mkdir(parents=True, exist_ok=True)
        (folder / f"masks_{centre}").mkdir(exist_ok=True)
        frame = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(frame).save(folder / f"images_{centre}" / f"{name}.jpg")
        Image.fromarray(np.zeros((height, width), dtype=np.uint8)).save(folder / f"masks_{centre}" / f"{name}_mask.jpg")


def test_inference_at_a_polypgen_release_writes_one_mask_per_frame_of_every_centre_named_by_the_frame(tmp_path):
    root = copy_bundle(NAME, tmp_path / "bundle")
    save_untrained_model(root, {"network_def#filters": FILTERS})
    _write_polypgen(tmp_path / "PolypGen", np.random.default_rng(0))
    out = tmp_path / "pred"
    monai_bundle(root, "run", "--config_file", configs("inference.json"), "--input_dir", str(tmp_path / "PolypGen"),
                 "--output_dir", str(out), "--network_def#filters", str(FILTERS).replace(" ", ""), timeout=300)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{name}_mask.png" for name in FRAMES)
    for name, (_, height, width) in FRAMES.items():
        with Image.open(out / f"{name}_mask.png") as mask:
            assert mask.size == (width, height)
