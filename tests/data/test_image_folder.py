from __future__ import annotations

import pytest

from monai_pruning.data import list_image_files
from monai_pruning.data.errors import DatasetError
from monai_pruning.data.image_folder import case_name_formatter, require_model_file


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


def _kits_case(root, name, image=True, mask=True):
    if image:
        _touch(root / name, "imaging.nii.gz")
    if mask:
        _touch(root / name, "segmentation.nii.gz")


@pytest.mark.parametrize("under", ["", "data", "kits19/data"])
def test_a_kits_root_lists_the_image_of_every_case_labelled_or_not(tmp_path, under):
    cases = tmp_path / under if under else tmp_path
    _kits_case(cases, "case_00010")
    _kits_case(cases, "case_00002")
    _kits_case(cases, "case_00210", mask=False)  # a KiTS19 test case: imaging only
    _touch(tmp_path, "kits.json")
    assert list_image_files(tmp_path, [".nii.gz", ".nii"], ["segmentation.nii.gz"]) == [
        {"image": str(cases / name / "imaging.nii.gz")} for name in ("case_00002", "case_00010", "case_00210")
    ]


def test_a_kits_root_with_case_folders_lacking_their_image_is_a_one_line_error(tmp_path):
    _kits_case(tmp_path, "case_00000")
    _kits_case(tmp_path, "case_00001", image=False)
    with pytest.raises(DatasetError, match=r"case folders without imaging\.nii\.gz in .*: 1 \(case_00001\)"):
        list_image_files(tmp_path, [".nii.gz"])


def test_a_decathlon_task_root_lists_its_training_and_test_images(tmp_path):
    task = tmp_path / "Task04_Hippocampus"
    (task / "dataset.json").parent.mkdir()
    (task / "dataset.json").write_text("{}")
    _touch(task / "imagesTr", "hippocampus_003.nii.gz", "hippocampus_001.nii.gz", "._hippocampus_001.nii.gz")
    _touch(task / "imagesTs", "hippocampus_002.nii.gz")
    _touch(task / "labelsTr", "hippocampus_001.nii.gz", "hippocampus_003.nii.gz")
    expected = [{"image": str(task / "imagesTr" / f"hippocampus_00{n}.nii.gz")} for n in (1, 3)]
    expected.append({"image": str(task / "imagesTs" / "hippocampus_002.nii.gz")})
    assert list_image_files(task, [".nii.gz", ".nii"]) == expected
    assert list_image_files(tmp_path, [".nii.gz", ".nii"]) == expected  # the folder the tarball unpacks into


def test_images_in_the_folder_itself_win_over_a_dataset_layout_below_it(tmp_path):
    _touch(tmp_path, "scan.nii.gz")
    _kits_case(tmp_path, "case_00000")
    assert list_image_files(tmp_path, [".nii.gz"]) == [{"image": str(tmp_path / "scan.nii.gz")}]


@pytest.mark.parametrize(
    "source, subject",
    [
        ("/kits/case_00003/imaging.nii.gz", "case_00003"),
        ("/new/scan_ras.nii.gz", "/new/scan_ras.nii.gz"),
        ("/msd/imagesTs/BRATS_485.nii.gz", "/msd/imagesTs/BRATS_485.nii.gz"),
    ],
)
def test_outputs_of_kits_images_are_named_by_their_case_folder(source, subject):
    assert case_name_formatter({"filename_or_obj": source, "patch_index": None}, None) == {
        "subject": subject, "idx": None
    }


def test_a_missing_model_file_is_a_one_line_error_saying_how_to_get_one(tmp_path):
    missing = tmp_path / "models" / "model.pt"
    with pytest.raises(FileNotFoundError) as failure:
        require_model_file(str(missing))
    assert str(failure.value) == (
        f"no trained model at {missing}: train first (configs/train.json), or set --checkpoint <path>"
    )
    missing.parent.mkdir()
    missing.write_bytes(b"x")
    assert require_model_file(str(missing)) == str(missing)


POLYP_SUFFIXES = [".jpg", ".jpeg", ".png", ".tif", ".tiff"]


def _paired(root, image_dir, mask_dir, names, mask_name=lambda stem, suffix: stem + suffix):
    """Empty frame files ``image_dir/NAME`` and their masks ``mask_dir/mask_name(stem, suffix)`` under ``root``."""
    _touch(root / image_dir, *names)
    for name in names:
        stem, suffix = name.rsplit(".", 1)
        _touch(root / mask_dir, mask_name(stem, "." + suffix))


@pytest.mark.parametrize("wrapper", ["", "Kvasir-SEG"])
def test_a_kvasir_seg_root_lists_every_frame_of_images_and_no_mask(tmp_path, wrapper):
    dataset = tmp_path / wrapper if wrapper else tmp_path
    _paired(dataset, "images", "masks", ["cju2zyy.jpg", "cju0qkw.jpg"])
    _touch(dataset, "kavsir_bboxes.json")
    assert list_image_files(tmp_path, POLYP_SUFFIXES) == [
        {"image": str(dataset / "images" / name)} for name in ("cju0qkw.jpg", "cju2zyy.jpg")
    ]


@pytest.mark.parametrize("wrapper, suffix", [("", "tif"), ("JPG", "jpg"), ("PNG", "png")])
def test_a_cvc_clinicdb_root_lists_every_original_frame_in_numeric_order(tmp_path, wrapper, suffix):
    dataset = tmp_path / wrapper if wrapper else tmp_path
    _paired(dataset, "Original", "Ground Truth", [f"{n}.{suffix}" for n in (10, 2, 1)])
    assert list_image_files(tmp_path, POLYP_SUFFIXES) == [
        {"image": str(dataset / "Original" / f"{n}.{suffix}")} for n in (1, 2, 10)
    ]


def _polypgen_centre(root, centre, names):
    _paired(root / f"data_{centre}", f"images_{centre}", f"masks_{centre}", names,
            mask_name=lambda stem, suffix: f"{stem}_mask{suffix}")


def test_a_polypgen_release_lists_the_frames_of_every_centre_and_one_centre_folder_its_own(tmp_path):
    _polypgen_centre(tmp_path, "C2", ["EndoCV2021_001000.jpg"])
    _polypgen_centre(tmp_path, "C1", ["100S0001.jpg", "100H0050.jpg"])
    _touch(tmp_path, "README.md")
    c1 = [str(tmp_path / "data_C1" / "images_C1" / name) for name in ("100H0050.jpg", "100S0001.jpg")]
    c2 = [str(tmp_path / "data_C2" / "images_C2" / "EndoCV2021_001000.jpg")]
    assert [item["image"] for item in list_image_files(tmp_path, POLYP_SUFFIXES)] == c1 + c2
    assert [item["image"] for item in list_image_files(tmp_path / "data_C2", POLYP_SUFFIXES)] == c2


def test_a_polypgen_frame_name_in_two_centres_is_refused_instead_of_one_mask_overwriting_the_other(tmp_path):
    _polypgen_centre(tmp_path, "C1", ["frame_1.jpg"])
    _polypgen_centre(tmp_path, "C2", ["frame_1.jpg"])
    with pytest.raises(DatasetError, match="frame name 'frame_1' appears in both C1 and C2"):
        list_image_files(tmp_path, POLYP_SUFFIXES)


def test_a_polyp_dataset_root_has_no_images_for_a_bundle_reading_other_formats(tmp_path):
    _paired(tmp_path, "images", "masks", ["cju0qkw.jpg"])
    with pytest.raises(DatasetError, match=r"no \.nii\.gz/\.nii images in "):
        list_image_files(tmp_path, [".nii.gz", ".nii"])
