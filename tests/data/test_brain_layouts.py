"""Decathlon and ATLAS v2.0 readers on tiny NIfTI files written in their real layouts."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_pruning.data import DatasetError, read_atlas, read_msd, read_msd_metadata

_LABELS = {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing tumour"}
_MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


def _nifti(path: Path, shape=(4, 4, 3), dtype=np.int16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros(shape, dtype=dtype), np.eye(4)), path)


def _msd(root: Path, names=("BRATS_002", "BRATS_001", "BRATS_010"), write=True) -> Path:
    training = [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names]
    if write:
        for n in names:
            _nifti(root / "imagesTr" / f"{n}.nii.gz", shape=(4, 4, 3, 4))
            _nifti(root / "labelsTr" / f"{n}.nii.gz", dtype=np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    meta = {"name": "BRATS", "modality": _MODALITY, "labels": _LABELS, "numTraining": len(names), "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_msd_reads_pairs_listed_in_dataset_json(tmp_path):
    items = read_msd(_msd(tmp_path / "Task01_BrainTumour"))
    assert [item["case"] for item in items] == ["BRATS_001", "BRATS_002", "BRATS_010"]
    assert items[0]["image"] == str(tmp_path / "Task01_BrainTumour" / "imagesTr" / "BRATS_001.nii.gz")
    assert "./" not in items[0]["label"]


def test_msd_metadata_returns_modality_and_labels(tmp_path):
    meta = read_msd_metadata(_msd(tmp_path / "Task01_BrainTumour"))
    assert meta["modality"] == _MODALITY and meta["labels"] == _LABELS


def test_msd_accepts_parent_of_task_folder_and_ignores_appledouble_files(tmp_path):
    root = _msd(tmp_path / "Task01_BrainTumour")
    (root / "imagesTr" / "._BRATS_001.nii.gz").write_bytes(b"\x00\x05\x16\x07")
    (root / "._dataset.json").write_bytes(b"\x00\x05\x16\x07")
    assert len(read_msd(tmp_path)) == 3


def test_msd_listed_file_missing_is_an_error(tmp_path):
    root = _msd(tmp_path)
    (root / "labelsTr" / "BRATS_002.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"labels listed in .*dataset.json are missing: 1 \(./labelsTr/BRATS_002"):
        read_msd(root)
    (root / "imagesTr" / "BRATS_001.nii.gz").unlink()
    with pytest.raises(DatasetError, match=r"images listed in .* are missing: 1 \(./imagesTr/BRATS_001"):
        read_msd(root)


def test_msd_invalid_dataset_json_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "dataset.json").write_text("{not json")
    with pytest.raises(DatasetError, match=r"cannot read .*dataset.json"):
        read_msd(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"labels": _LABELS}))
    with pytest.raises(DatasetError, match="has no 'training' list"):
        read_msd(tmp_path)
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [], "labels": {"bg": "background"}}))
    with pytest.raises(DatasetError, match="no 'labels' object keyed by integer"):
        read_msd(tmp_path)


def _atlas_session(anat: Path, prefix: str, image=True, mask=True) -> None:
    if image:
        _nifti(anat / f"{prefix}_T1w.nii.gz")
    if mask:
        _nifti(anat / f"{prefix}_label-L_desc-T1lesion_mask.nii.gz", dtype=np.uint8)


def test_atlas_reads_nested_training_pairs_and_skips_testing(tmp_path):
    root = tmp_path / "ATLAS_2"
    for site, subject in (("R001", "r001s001"), ("R001", "r001s002"), ("R002", "r002s001")):
        anat = root / "Training" / site / f"sub-{subject}" / "ses-1" / "anat"
        _atlas_session(anat, f"sub-{subject}_ses-1_space-MNI152NLin2009aSym")
    test_anat = root / "Testing" / "R003" / "sub-r003s001" / "ses-1" / "anat"
    _atlas_session(test_anat, "sub-r003s001_ses-1_space-MNI152NLin2009aSym", mask=False)
    items = read_atlas(tmp_path)
    assert [item["case"] for item in items] == ["sub-r001s001_ses-1", "sub-r001s002_ses-1", "sub-r002s001_ses-1"]
    assert all(Path(item["image"]).parent == Path(item["label"]).parent for item in items)


def test_atlas_reads_flat_bids_folder(tmp_path):
    _atlas_session(tmp_path / "sub-01" / "ses-1" / "anat", "sub-01_ses-1")
    (item,) = read_atlas(tmp_path)
    assert item["case"] == "sub-01_ses-1"


def test_atlas_image_without_mask_and_mask_without_image_are_errors(tmp_path):
    _atlas_session(tmp_path / "sub-01" / "ses-1" / "anat", "sub-01_ses-1", mask=False)
    with pytest.raises(DatasetError, match=r"T1w images without a lesion mask .*1 \(sub-01_ses-1_T1w.nii.gz\)"):
        read_atlas(tmp_path)
    _atlas_session(tmp_path / "sub-01" / "ses-1" / "anat", "sub-01_ses-1", image=False, mask=True)
    _atlas_session(tmp_path / "sub-02" / "ses-1" / "anat", "sub-02_ses-1", image=False, mask=True)
    with pytest.raises(DatasetError, match="lesion masks without a T1w image"):
        read_atlas(tmp_path)


def test_atlas_folder_without_pairs_names_the_patterns(tmp_path):
    (tmp_path / "sub-01").mkdir()
    with pytest.raises(DatasetError, match=r"no ATLAS pairs .*_T1w.nii.gz"):
        read_atlas(tmp_path)
