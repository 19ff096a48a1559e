from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from monai_pruning.transforms import RemapLabels, RemapLabelsd
from monai_pruning.transforms.remap_labels import parse_label_mapping

KITS = np.array([[[0, 1, 2, 3], [3, 2, 1, 0]]], dtype=np.uint8)


def test_kits_cyst_is_folded_into_kidney_and_other_labels_are_kept():
    out = RemapLabels({3: 1})(KITS)
    np.testing.assert_array_equal(out, [[[0, 1, 2, 1], [1, 2, 1, 0]]])
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8


def test_msd_tumour_subregions_become_one_binary_lesion():
    out = RemapLabels({1: 1, 2: 1, 3: 1})(torch.as_tensor(KITS))
    assert type(out) is torch.Tensor
    np.testing.assert_array_equal(out.numpy(), [[[0, 1, 1, 1], [1, 1, 1, 0]]])


def test_entries_apply_to_original_values_so_labels_can_be_swapped():
    np.testing.assert_array_equal(RemapLabels({1: 2, 2: 1})(KITS), [[[0, 2, 1, 3], [3, 1, 2, 0]]])


def test_json_string_keys_and_values_mean_the_same_as_numbers():
    assert parse_label_mapping({"3": "1", "2.0": 2, " 4 ": 0.5}) == {3: 1, 2: 2, 4: 0.5}
    np.testing.assert_array_equal(RemapLabels({"3": 1})(KITS), RemapLabels({3: 1})(KITS))


def test_float_label_images_are_remapped():
    labels = KITS.astype(np.float32)
    out = RemapLabels({"3": 1})(labels)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[0, 1, 2, 1], [1, 2, 1, 0]]])


def test_output_dtype_can_be_chosen():
    assert RemapLabels({3: 1}, dtype=np.int64)(KITS).dtype == np.int64


def test_metatensor_keeps_its_metadata():
    affine = torch.diag(torch.tensor([0.8, 0.8, 3.0, 1.0], dtype=torch.float64))
    img = MetaTensor(torch.as_tensor(KITS), affine=affine, meta={"filename_or_obj": "/kits/case_00001/seg.nii.gz"})
    out = RemapLabels({3: 1})(img)
    assert isinstance(out, MetaTensor)
    assert out.meta["filename_or_obj"] == "/kits/case_00001/seg.nii.gz"
    torch.testing.assert_close(out.affine, affine)


def test_strict_mode_rejects_unexpected_values_naming_them_and_the_file():
    img = MetaTensor(torch.as_tensor(KITS), meta={"filename_or_obj": "/kits/case_00007/seg.nii.gz"})
    with pytest.raises(ValueError, match=r"label values \[2, 3\] in /kits/case_00007/seg.nii.gz .* keys \[0, 1\]"):
        RemapLabels({0: 0, 1: 1}, strict=True)(img)


def test_strict_mode_accepts_images_whose_values_are_all_mapped():
    out = RemapLabels({"0": 0, "1": 1, "2": 2, "3": 1}, strict=True)(KITS)
    np.testing.assert_array_equal(out, [[[0, 1, 2, 1], [1, 2, 1, 0]]])


def test_unexpected_values_are_kept_when_not_strict():
    np.testing.assert_array_equal(RemapLabels({0: 0, 1: 1})(KITS), KITS)


@pytest.mark.parametrize(
    "mapping, message",
    [
        ({}, "mapping is empty"),
        ({"kidney": 1}, "mapping key 'kidney' is not a number"),
        ({3: "tumour"}, "mapping value 'tumour' is not a number"),
        ({"1": 2, 1: 3}, "mapping has label 1 twice"),
        ({True: 1}, "is a bool"),
        ({float("inf"): 1}, "not a finite number"),
        ([(3, 1)], "mapping must be a dict"),
    ],
)
def test_invalid_mappings_are_rejected_at_construction(mapping, message):
    with pytest.raises(ValueError, match=f"^RemapLabels: .*{message}"):
        RemapLabels(mapping)


def test_dict_version_remaps_only_its_keys_and_names_the_key_in_errors():
    image = np.ones((1, 2, 4), dtype=np.float32) * 3
    out = RemapLabelsd(keys="label", mapping={3: 1})({"image": image, "label": KITS})
    np.testing.assert_array_equal(out["label"], [[[0, 1, 2, 1], [1, 2, 1, 0]]])
    assert out["image"] is image
    with pytest.raises(ValueError, match=r"\[key 'label'\]"):
        RemapLabelsd(keys="label", mapping={0: 0}, strict=True)({"label": KITS})


def test_usable_from_a_json_bundle_config(tmp_path):
    config_file = tmp_path / "remap.json"
    config_file.write_text(
        json.dumps({"t": {"_target_": "monai_pruning.transforms.RemapLabelsd", "keys": "label", "mapping": {"3": 1}}})
    )
    parser = ConfigParser()
    parser.read_config(str(config_file))
    out = parser.get_parsed_content("t")({"label": KITS})
    np.testing.assert_array_equal(out["label"], [[[0, 1, 2, 1], [1, 2, 1, 0]]])
