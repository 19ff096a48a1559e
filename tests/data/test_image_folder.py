from __future__ import annotations

import pytest

from monai_pruning.data import list_image_files
from monai_pruning.data.errors import DatasetError


def _touch(folder, *names):
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")


def test_lists_matching_images_sorted_case_insensitively_and_skips_hidden_files(tmp_path):
    _touch(tmp_path, "b.PNG", "a.png", ".c.png", "._a.png", "notes.txt")
    (tmp_path / "sub.png").mkdir()
    assert list_image_files(tmp_path, [".png"]) == [{"image": str(tmp_path / "a.png")},
                                                    {"image": str(tmp_path / "b.PNG")}]


def test_excluded_names_are_not_listed(tmp_path):
    _touch(tmp_path, "imaging.nii.gz", "segmentation.nii.gz")
    assert list_image_files(tmp_path, [".nii.gz"], ["segmentation.nii.gz"]) == [
        {"image": str(tmp_path / "imaging.nii.gz")}
    ]


def test_a_folder_of_only_excluded_masks_is_reported_as_having_no_images(tmp_path):
    _touch(tmp_path, "segmentation.nii.gz")
    with pytest.raises(DatasetError, match=r"no \.nii\.gz images in .* \(only segmentation\.nii\.gz, which are not"):
        list_image_files(tmp_path, [".nii.gz"], ["segmentation.nii.gz"])


def test_missing_or_empty_folder_names_the_folder(tmp_path):
    with pytest.raises(DatasetError, match="input folder not found: .*nope"):
        list_image_files(tmp_path / "nope", [".png"])
    _touch(tmp_path / "empty", "readme.txt")
    with pytest.raises(DatasetError, match=r"no \.png/\.jpg images in .*empty$"):
        list_image_files(tmp_path / "empty", [".png", ".jpg"])
