from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from monai_pruning.transforms import CTWindowNormalize, CTWindowNormalized

HU = np.array([[[-1000, -79, 101, 304, 2000]]], dtype=np.int16)


def test_defaults_are_nnunet_kits19_foreground_statistics():
    norm = CTWindowNormalize()
    assert (norm.a_min, norm.a_max, norm.mean, norm.std, norm.mode) == (-79.0, 304.0, 101.0, 76.9, "zscore")


def test_zscore_clips_to_the_window_then_standardises():
    out = CTWindowNormalize()(HU)
    low, high = (-79 - 101.0) / 76.9, (304 - 101.0) / 76.9
    np.testing.assert_allclose(out, [[[low, low, 0.0, high, high]]], rtol=1e-6)


def test_rescale_mode_maps_the_window_onto_unit_range():
    out = CTWindowNormalize(mode="rescale")(HU)
    np.testing.assert_allclose(out, [[[0.0, 0.0, 180.0 / 383.0, 1.0, 1.0]]], rtol=1e-6)


def test_custom_window_and_statistics_are_used():
    out = CTWindowNormalize(a_min=-100, a_max=100, mean=0.0, std=50.0)(np.array([[-500.0, 25.0, 500.0]]))
    np.testing.assert_allclose(out, [[-2.0, 0.5, 2.0]], rtol=1e-6)


def test_integer_numpy_input_gives_float32_numpy_output():
    out = CTWindowNormalize()(HU)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32


def test_tensor_input_gives_tensor_in_requested_dtype_and_metatensor_keeps_metadata():
    out = CTWindowNormalize(dtype=torch.float64)(torch.as_tensor(HU))
    assert type(out) is torch.Tensor and out.dtype == torch.float64

    affine = torch.diag(torch.tensor([0.8, 0.8, 3.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.as_tensor(HU), affine=affine, meta={"filename_or_obj": "/kits/case_00000/imaging.nii.gz"})
    out = CTWindowNormalize()(img)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert out.meta["filename_or_obj"] == "/kits/case_00000/imaging.nii.gz"
    torch.testing.assert_close(out.affine, affine)
    np.testing.assert_allclose(out.numpy(), CTWindowNormalize()(HU), rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"a_min": 300, "a_max": 300}, "a_min .* must be below a_max"),
        ({"std": 0.0}, "std must be positive"),
        ({"mode": "minmax"}, "mode must be one of \\['zscore', 'rescale'\\]"),
        ({"mean": float("nan")}, "mean must be a finite number"),
        ({"a_min": "-79"}, "a_min must be a finite number"),
    ],
)
def test_invalid_arguments_are_rejected_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=f"^CTWindowNormalize: {message}"):
        CTWindowNormalize(**kwargs)


def test_dict_version_normalises_only_its_keys():
    label = np.array([[[0, 1, 2, 1, 0]]], dtype=np.uint8)
    out = CTWindowNormalized(keys="image", mode="rescale")({"image": HU, "label": label})
    np.testing.assert_allclose(out["image"], [[[0.0, 0.0, 180.0 / 383.0, 1.0, 1.0]]], rtol=1e-6)
    assert out["label"] is label
    with pytest.raises(KeyError):
        CTWindowNormalized(keys="ct")({"image": HU})


def test_usable_from_a_bundle_config():
    config = {"t": {"_target_": "monai_pruning.transforms.CTWindowNormalized", "keys": "image", "mean": 0, "std": 1}}
    transform = ConfigParser(config).get_parsed_content("t")
    np.testing.assert_allclose(transform({"image": HU})["image"], [[[-79, -79, 101, 304, 304]]])
