from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from monai_pruning.transforms import BinarizeMask, BinarizeMaskd


def _noisy_jpeg_mask(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 3-channel uint8 mask with JPEG-like noise, and the clean (1, H, W) mask it was made from."""
    rng = np.random.default_rng(seed)
    clean = np.zeros((1, 8, 8), dtype=np.float32)
    clean[0, 2:6, 3:7] = 1.0
    noise = rng.integers(0, 40, size=(3, 8, 8))
    rgb = np.where(clean > 0, 255 - noise, noise).astype(np.uint8)
    return rgb, clean


def test_noisy_three_channel_jpeg_mask_becomes_clean_single_channel_mask():
    rgb, clean = _noisy_jpeg_mask()
    out = BinarizeMask()(rgb)
    assert isinstance(out, np.ndarray)
    assert out.shape == (1, 8, 8)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, clean)


def test_channels_are_averaged_before_thresholding_not_taken_from_one_channel():
    img = np.zeros((3, 1, 3), dtype=np.uint8)
    img[:, 0, 0] = (255, 0, 0)  # mean 85 -> background, although channel 0 is bright
    img[:, 0, 1] = (0, 200, 200)  # mean 133.3 -> foreground, although channel 0 is dark
    img[:, 0, 2] = (128, 128, 128)  # mean exactly at the threshold -> foreground
    np.testing.assert_array_equal(BinarizeMask()(img), [[[0.0, 1.0, 1.0]]])


def test_threshold_is_configurable():
    img = np.array([[[0.2, 0.6, 0.9]]], dtype=np.float32)
    np.testing.assert_array_equal(BinarizeMask(threshold=0.5)(img), [[[0.0, 1.0, 1.0]]])
    np.testing.assert_array_equal(BinarizeMask(threshold=0.7)(img), [[[0.0, 0.0, 1.0]]])


def test_tensor_input_gives_tensor_and_metatensor_keeps_its_metadata():
    rgb, clean = _noisy_jpeg_mask()
    out = BinarizeMask(dtype=torch.uint8)(torch.as_tensor(rgb))
    assert type(out) is torch.Tensor and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), clean)

    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    meta_img = MetaTensor(torch.as_tensor(rgb), affine=affine, meta={"filename_or_obj": "/kvasir/masks/cju0.jpg"})
    out = BinarizeMask()(meta_img)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "/kvasir/masks/cju0.jpg"
    torch.testing.assert_close(out.affine, affine)
    np.testing.assert_array_equal(out.numpy(), clean)


def test_channel_last_image_is_rejected_with_a_hint():
    with pytest.raises(ValueError, match=r"BinarizeMask: .*\(8, 8, 3\).*channel-last"):
        BinarizeMask()(np.zeros((8, 8, 3), dtype=np.uint8))


def test_image_without_spatial_dimensions_is_rejected():
    with pytest.raises(ValueError, match="channel-first"):
        BinarizeMask()(np.zeros(5))


@pytest.mark.parametrize("threshold", [float("nan"), "128", True])
def test_invalid_threshold_is_rejected(threshold):
    with pytest.raises(ValueError, match="threshold must be a finite number"):
        BinarizeMask(threshold=threshold)


def test_mask_already_scaled_to_unit_range_warns_that_the_default_threshold_empties_it():
    with pytest.warns(UserWarning, match="looks scaled to \\[0, 1\\]"):
        out = BinarizeMask()(np.ones((1, 2, 2), dtype=np.float32))
    assert out.sum() == 0


def test_dict_version_binarizes_only_its_keys_and_tolerates_missing_keys_when_allowed():
    rgb, clean = _noisy_jpeg_mask()
    data = {"image": rgb.astype(np.float32), "label": rgb}
    out = BinarizeMaskd(keys="label")(data)
    np.testing.assert_array_equal(out["label"], clean)
    assert out["image"] is data["image"]
    assert "label" in BinarizeMaskd(keys=["label", "extra"], allow_missing_keys=True)(data)
    with pytest.raises(KeyError):
        BinarizeMaskd(keys="extra")(data)


def test_dict_version_error_names_the_key():
    with pytest.raises(ValueError, match=r"\[key 'label'\]"):
        BinarizeMaskd(keys="label")({"label": np.zeros((8, 8, 3))})


def test_usable_from_a_bundle_config():
    config = {"t": {"_target_": "monai_pruning.transforms.BinarizeMaskd", "keys": "label", "threshold": 100}}
    parser = ConfigParser(config)
    transform = parser.get_parsed_content("t")
    assert isinstance(transform, BinarizeMaskd)
    out = transform({"label": np.full((3, 2, 2), 110, dtype=np.uint8)})
    np.testing.assert_array_equal(out["label"], np.ones((1, 2, 2)))
