from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from monai_pruning.transforms import SelectChannels, SelectChannelsd
from monai_pruning.transforms.select_channels import parse_modality

MSD_TASK01 = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def _four_channel_image() -> np.ndarray:
    """Channel c is filled with the value c, so the output shows which channels were picked."""
    return np.stack([np.full((3, 2, 2), c, dtype=np.float32) for c in range(4)])


def test_selects_channels_by_index_in_the_given_order():
    out = SelectChannels([3, 1])(_four_channel_image())
    assert isinstance(out, np.ndarray) and out.shape == (2, 3, 2, 2)
    assert out[0].max() == 3 and out[1].max() == 1


def test_single_channel_keeps_the_channel_dimension():
    out = SelectChannels(2)(_four_channel_image())
    assert out.shape == (1, 3, 2, 2) and out.max() == 2


def test_selects_by_msd_modality_name():
    out = SelectChannels(["T1w"], modality=MSD_TASK01)(_four_channel_image())
    assert out.shape == (1, 3, 2, 2) and out.min() == 1 and out.max() == 1


def test_names_match_ignoring_case_because_msd_mixes_cases():
    assert SelectChannels(["T1GD", "flair"], modality=MSD_TASK01).indices == [2, 0]


def test_names_and_indices_can_be_mixed_and_int_modality_keys_are_accepted():
    modality = {0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"}
    assert SelectChannels(["T2w", 0], modality=modality).indices == [3, 0]


def test_unknown_name_lists_the_available_names():
    with pytest.raises(ValueError, match=r"'T1' is not one of the modality names \['FLAIR', 'T1w', 't1gd', 'T2w'\]"):
        SelectChannels(["T1"], modality=MSD_TASK01)


def test_name_without_modality_mapping_is_rejected():
    with pytest.raises(ValueError, match="needs the modality mapping"):
        SelectChannels("FLAIR")


def test_ambiguous_name_is_rejected():
    with pytest.raises(ValueError, match="matches more than one"):
        SelectChannels("T1w", modality={"0": "t1w", "1": "T1W"})


@pytest.mark.parametrize(
    "modality, message",
    [
        ({"a": "FLAIR"}, "modality key 'a' is not a channel index"),
        ({"0": "FLAIR", "2": "T1w"}, "modality keys must be 0..1"),
        ({"0": ""}, "must be a non-empty string"),
        ({}, "modality must be a non-empty dict"),
    ],
)
def test_malformed_modality_mapping_is_rejected(modality, message):
    with pytest.raises(ValueError, match=f"^SelectChannels: .*{message}"):
        parse_modality(modality)


@pytest.mark.parametrize("channels, message", [([], "channels is empty"), (-1, "is negative"), ([1.5], "int index")])
def test_invalid_channel_arguments_are_rejected(channels, message):
    with pytest.raises(ValueError, match=message):
        SelectChannels(channels)


def test_index_beyond_the_modality_names_is_rejected_at_construction():
    with pytest.raises(ValueError, match="channel index 4 is out of range for the 4 modality names"):
        SelectChannels([4], modality=MSD_TASK01)


def test_index_beyond_the_image_channels_is_rejected_naming_the_file():
    img = MetaTensor(torch.as_tensor(_four_channel_image()), meta={"filename_or_obj": "/msd/imagesTr/BRATS_001.nii.gz"})
    with pytest.raises(ValueError, match=r"channel index 5 is out of range .* 4 channels .*BRATS_001.nii.gz"):
        SelectChannels(5)(img)


def test_image_whose_channel_count_differs_from_the_modality_mapping_is_rejected():
    with pytest.raises(ValueError, match="has 2 channels but the modality mapping names 4"):
        SelectChannels("FLAIR", modality=MSD_TASK01)(np.zeros((2, 3, 3)))


def test_tensor_gives_tensor_and_metatensor_keeps_its_metadata():
    out = SelectChannels(1)(torch.as_tensor(_four_channel_image()))
    assert type(out) is torch.Tensor and out.shape == (1, 3, 2, 2)

    affine = torch.diag(torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    affine[0, 3] = -90.0
    meta = {"filename_or_obj": "BRATS_002.nii.gz"}
    img = MetaTensor(torch.as_tensor(_four_channel_image()), affine=affine, meta=meta)
    out = SelectChannels(["T2w"], modality=MSD_TASK01)(img)
    assert isinstance(out, MetaTensor) and out.shape == (1, 3, 2, 2) and out.max() == 3
    assert out.meta["filename_or_obj"] == "BRATS_002.nii.gz"
    torch.testing.assert_close(out.affine, affine)


def test_dict_version_selects_only_its_keys_and_names_the_key_in_errors():
    image, label = _four_channel_image(), np.zeros((1, 3, 2, 2))
    out = SelectChannelsd(keys="image", channels=["FLAIR"], modality=MSD_TASK01)({"image": image, "label": label})
    assert out["image"].shape == (1, 3, 2, 2) and out["image"].max() == 0
    assert out["label"] is label
    with pytest.raises(ValueError, match=r"\[key 'image'\]"):
        SelectChannelsd(keys="image", channels=7)({"image": image})


def test_usable_from_a_bundle_config():
    config = {
        "t": {
            "_target_": "monai_pruning.transforms.SelectChannelsd",
            "keys": "image",
            "channels": ["t1gd"],
            "modality": MSD_TASK01,
        }
    }
    out = ConfigParser(config).get_parsed_content("t")({"image": _four_channel_image()})
    assert out["image"].shape == (1, 3, 2, 2) and out["image"].max() == 2


def test_a_single_channel_dataset_gives_its_one_channel_for_a_name_it_does_not_use_and_says_so(caplog):
    # MSD Task04_Hippocampus names its only channel "MRI"; the brain bundle asks for "T1w"
    image = np.full((1, 3, 2, 2), 7.0, dtype=np.float32)
    with caplog.at_level("WARNING", logger="monai_pruning.transforms.select_channels"):
        selector = SelectChannels(["T1w"], modality={"0": "MRI"})
    assert selector.indices == [0]
    assert "one channel, 'MRI'" in caplog.text and "'T1w'" in caplog.text
    out = selector(image)
    assert out.shape == (1, 3, 2, 2) and out.max() == 7


def test_a_single_channel_dataset_matching_the_name_in_another_case_gives_no_warning(caplog):
    with caplog.at_level("WARNING", logger="monai_pruning.transforms.select_channels"):
        assert SelectChannels("t1W", modality={"0": "T1w"}).indices == [0]
    assert caplog.text == ""


def test_a_single_channel_dataset_cannot_give_two_channels():
    with pytest.raises(ValueError, match=r"channel name 'T1w' is not one of the modality names \['MRI'\]"):
        SelectChannels(["MRI", "T1w"], modality={"0": "MRI"})


def test_a_multi_channel_dataset_without_the_named_channel_is_a_one_line_error():
    with pytest.raises(ValueError) as failure:
        SelectChannels(["T1"], modality={"0": "FLAIR", "1": "T2w"})
    assert "channel name 'T1' is not one of the modality names ['FLAIR', 'T2w']" in str(failure.value)
    assert "\n" not in str(failure.value)
