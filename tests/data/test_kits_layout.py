"""KiTS reader on tiny NIfTI files written in the KiTS19/21/23 layouts."""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_pruning.data import DatasetError, read_kits


def _nifti(path: Path, dtype=np.int16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 3), dtype=dtype), np.eye(4)), path)


def _case(root: Path, name: str, image=True, seg="segmentation.nii.gz") -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    if image:
        _nifti(root / name / "imaging.nii.gz")
    if seg:
        _nifti(root / name / seg, np.uint8)


def test_kits_reads_case_folders_in_root(tmp_path):
    for index in (2, 0, 1):
        _case(tmp_path, f"case_{index:05d}")
    items = read_kits(tmp_path)
    assert [item["case"] for item in items] == ["case_00000", "case_00001", "case_00002"]
    assert items[0]["image"].endswith("case_00000/imaging.nii.gz")
    assert items[0]["label"].endswith("case_00000/segmentation.nii.gz")


def test_kits_reads_case_folders_under_data_and_under_wrapper(tmp_path):
    _case(tmp_path / "kits19" / "data", "case_00000")
    assert len(read_kits(tmp_path / "kits19")) == 1
    assert len(read_kits(tmp_path)) == 1


def test_kits21_majority_vote_segmentation_is_used_when_no_segmentation_file(tmp_path):
    _case(tmp_path, "case_00000", seg="aggregated_MAJ_seg.nii.gz")
    (item,) = read_kits(tmp_path)
    assert item["label"].endswith("aggregated_MAJ_seg.nii.gz")


def test_kits19_test_cases_without_segmentation_are_left_out_with_one_warning(tmp_path, caplog):
    _case(tmp_path, "case_00000")
    for index in range(210, 217):
        _case(tmp_path, f"case_{index:05d}", seg=None)
    with caplog.at_level(logging.WARNING, logger="monai_pruning.data"):
        items = read_kits(tmp_path)
    assert [item["case"] for item in items] == ["case_00000"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "7 (first 5: case_00210" in warnings[0].getMessage()


def test_kits_segmentation_without_imaging_is_an_error(tmp_path):
    _case(tmp_path, "case_00000")
    _case(tmp_path, "case_00001", image=False)
    with pytest.raises(DatasetError, match=r"without imaging.nii.gz .*1 \(case_00001\)"):
        read_kits(tmp_path)


def test_kits_folder_without_cases_is_an_error(tmp_path):
    (tmp_path / "notes").mkdir()
    with pytest.raises(DatasetError, match="no KiTS layout in"):
        read_kits(tmp_path)


def test_kits_only_unlabelled_cases_is_an_error(tmp_path):
    _case(tmp_path, "case_00210", seg=None)
    with pytest.raises(DatasetError, match="has both imaging.nii.gz and segmentation.nii.gz"):
        read_kits(tmp_path)
