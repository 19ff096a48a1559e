"""Per-file checks before training: readability, shapes, label values, and their cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_pruning.data import DatasetError, check_cases, inspect_file
from monai_pruning.data import file_checks


def _nifti(path: Path, array: np.ndarray) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, np.eye(4)), path)
    return str(path)


def _case(tmp_path: Path, name: str, image_shape=(6, 5, 4), label=None) -> dict:
    label = np.zeros((6, 5, 4), dtype=np.uint8) if label is None else label
    return {
        "image": _nifti(tmp_path / name / "imaging.nii.gz", np.zeros(image_shape, dtype=np.int16)),
        "label": _nifti(tmp_path / name / "segmentation.nii.gz", label),
        "case": name,
    }


def test_valid_cases_pass_including_4d_multichannel_images(tmp_path):
    label = np.zeros((6, 5, 4), dtype=np.uint8)
    label[1, 1, 1], label[2, 2, 2] = 1, 3
    items = [_case(tmp_path, "a", label=label), _case(tmp_path, "b", image_shape=(6, 5, 4, 4))]
    check_cases(items, frozenset({0, 1, 2, 3}))


def test_spatial_shape_mismatch_names_case_and_both_shapes(tmp_path):
    items = [_case(tmp_path, "a"), _case(tmp_path, "b", image_shape=(6, 5, 3))]
    with pytest.raises(DatasetError, match=r"case b: image shape \(6, 5, 3\) and label shape \(6, 5, 4\) differ"):
        check_cases(items, None)


def test_label_values_outside_set_name_case_values_and_expected_set(tmp_path):
    label = np.zeros((6, 5, 4), dtype=np.uint8)
    label[0, 0, 0] = 5
    with pytest.raises(DatasetError, match=r"case a: label values \[0, 5\] .* outside the expected set \[0, 1\]"):
        check_cases([_case(tmp_path, "a", label=label)], frozenset({0, 1}))


def test_fractional_label_values_are_outside_an_integer_set(tmp_path):
    label = np.zeros((6, 5, 4), dtype=np.float32)
    label[0, 0, 0] = 0.5
    with pytest.raises(DatasetError, match=r"label values \[0.0, 0.5\]"):
        check_cases([_case(tmp_path, "a", label=label)], frozenset({0, 1}))


def test_garbage_nifti_is_reported_with_its_path(tmp_path):
    item = _case(tmp_path, "a")
    Path(item["image"]).write_bytes(b"this is not a nifti file")
    with pytest.raises(DatasetError, match=r"cannot read .*a/imaging.nii.gz"):
        check_cases([item], None)


def test_truncated_gzip_image_is_detected_without_reading_labels(tmp_path):
    item = _case(tmp_path, "a", image_shape=(40, 40, 30))
    data = Path(item["image"]).read_bytes()
    Path(item["image"]).write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(DatasetError, match=r"cannot read .*imaging.nii.gz"):
        check_cases([item], None)


def test_truncated_jpeg_mask_is_reported(tmp_path):
    rng = np.random.default_rng(0)
    image, mask = tmp_path / "images" / "x.jpg", tmp_path / "masks" / "x.jpg"
    for path in (image, mask):
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    mask.write_bytes(mask.read_bytes()[:300])
    with pytest.raises(DatasetError, match=r"cannot read .*masks/x.jpg"):
        check_cases([{"image": str(image), "label": str(mask), "case": "x"}], None)


def test_inspect_picture_reports_height_width_and_channels(tmp_path):
    path = tmp_path / "p.png"
    Image.fromarray(np.zeros((7, 9, 3), dtype=np.uint8)).save(path)
    facts = inspect_file(path, want_values=True)
    assert facts["shape"] == [7, 9, 3] and facts["spatial"] == [7, 9] and facts["values"] == [0]


def test_cache_is_written_and_reused_until_the_file_changes(tmp_path, monkeypatch):
    items = [_case(tmp_path, "a"), _case(tmp_path, "b")]
    cache = tmp_path / "out" / "dataset_check.json"
    check_cases(items, frozenset({0, 1}), cache)
    stored = json.loads(cache.read_text())["files"]
    assert set(stored) == {item[key] for item in items for key in ("image", "label")}

    reads = []
    original = file_checks.inspect_file
    monkeypatch.setattr(
        file_checks, "inspect_file", lambda path, want=False: reads.append(str(path)) or original(path, want)
    )
    check_cases(items, frozenset({0, 1}), cache)
    assert reads == []

    label = np.zeros((6, 5, 4), dtype=np.uint8)
    label[0, 0, 0] = 7
    _nifti(Path(items[1]["label"]), label)
    os.utime(items[1]["label"], ns=(1, 1))
    with pytest.raises(DatasetError, match="case b: label values"):
        check_cases(items, frozenset({0, 1}), cache)
    assert reads == [items[1]["label"]]


def test_cache_keeps_findings_of_good_files_when_one_fails(tmp_path):
    items = [_case(tmp_path, "a"), _case(tmp_path, "b")]
    Path(items[1]["image"]).write_bytes(b"broken")
    cache = tmp_path / "dataset_check.json"
    with pytest.raises(DatasetError):
        check_cases(items, frozenset({0}), cache)
    assert items[0]["label"] in json.loads(cache.read_text())["files"]


def test_corrupt_cache_file_is_ignored(tmp_path):
    cache = tmp_path / "dataset_check.json"
    cache.write_text("{broken")
    check_cases([_case(tmp_path, "a")], frozenset({0}), cache)
    assert json.loads(cache.read_text())["format"] == 1
