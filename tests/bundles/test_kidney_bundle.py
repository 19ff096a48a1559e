"""The kidney CT bundle end to end on tiny demo data (train, evaluate, infer, MONAI checks), and its preprocessing."""

from __future__ import annotations

import csv
import json

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from bundle_cli import (
    BUNDLES,
    NET_3D,
    TINY_3D,
    assert_inference_fails_with_one_line,
    assert_missing_input_folder_is_one_line,
    configs,
    copy_bundle,
    export_pruned_torchscript,
    monai_bundle,
    save_untrained_model,
    verify_metadata_and_network,
)

NAME = "kidney_ct_segmentation"
NET, TINY = NET_3D, TINY_3D  # two epochs of the tiny network on 5 demo cases
# nnU-Net KiTS19 window (-79..304 HU) after z-scoring with mean 101 HU and std 76.9 HU
Z_LOW, Z_HIGH = (-79.0 - 101.0) / 76.9, (304.0 - 101.0) / 76.9


@pytest.fixture(scope="module", autouse=True)
def one_cpu_thread():
    """Run this module's ``monai.bundle`` subprocesses with one OpenMP thread: the tiny 3-D networks gain nothing from
    more, and on a busy machine two threads waiting for each other made every training step about 8x slower."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def trained(trained_3d_bundle):
    """The bundle after ``train.json`` with TINY (trained once per session: the pruning overlay tests start from it)."""
    return trained_3d_bundle(NAME)


def _parsed_train_config(tmp_path, dataset_dir):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / NAME / "configs" / "train.json"))
    parser.update({"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(dataset_dir),
                   "output_dir": str(tmp_path / "out")})
    return parser


def _write_kits_case(root, name, affine):
    """A 40x40x30 CT of 4 mm voxels: a soft-tissue body in air, with a tumour block and a cyst block (no kidney)."""
    hu = np.full((40, 40, 30), -1000, dtype=np.int16)
    hu[8:32, 10:30, :] = 40
    seg = np.zeros(hu.shape, dtype=np.uint8)
    seg[12:18, 14:20, 10:16] = 2
    seg[22:28, 14:20, 10:16] = 3
    (root / name).mkdir(parents=True)
    nib.save(nib.Nifti1Image(hu, affine), root / name / "imaging.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), root / name / "segmentation.nii.gz")


def test_preprocessing_folds_cysts_into_kidney_resamples_to_pixdim_and_crops_to_the_body(tmp_path):
    lps = np.diag([-4.0, -4.0, 4.0, 1.0])  # stored left-posterior-superior, as DICOM-derived files often are
    for index in range(3):
        _write_kits_case(tmp_path / "kits", f"case_{index:05d}", lps)
    parser = _parsed_train_config(tmp_path, tmp_path / "kits")
    case = parser.get_parsed_content("data")["test"][0]
    out = parser.get_parsed_content("validate#preprocessing")(case)
    image, label = out["image"], out["label"]
    assert sorted(torch.unique(label).tolist()) == [0.0, 1.0, 2.0]  # cyst (3) became kidney (1)
    assert torch.count_nonzero(label == 1) == torch.count_nonzero(label == 2)  # same-size blocks, same resampling
    np.testing.assert_allclose(np.diag(image.affine.numpy())[:3], [3.0, 3.0, 3.0])  # RAS, 3 mm
    # the body spans 24 x 20 voxels of 4 mm = 32 x ~27 voxels of 3 mm (+1 for partial volume at its edge) of the
    # 53 x 53 x 40 resampled volume; the air around it is cropped away
    assert abs(image.shape[1] - 32) <= 1 and abs(image.shape[2] - 27) <= 1 and image.shape[3] == 40
    assert Z_LOW - 1e-4 <= float(image.min()) and float(image.max()) <= Z_HIGH + 1e-4
    patches = parser.get_parsed_content("train#preprocessing")(parser.get_parsed_content("data")["training"][0])
    assert len(patches) == parser.get_parsed_content("num_samples")
    roi_size = tuple(parser.get_parsed_content("roi_size"))
    assert all(tuple(p["image"].shape) == (1, *roi_size) for p in patches)


def test_training_on_demo_data_writes_pruning_checkpoints_and_a_run_record(trained):
    for name in ("model.pt", "model_best.pt"):
        checkpoint = torch.load(trained / "models" / name, weights_only=True)
        assert list(checkpoint)[:2] == ["pruning", "model"]
    record = json.loads((trained / "runs" / "run_record.json").read_text())
    assert record["seed"] == 0 and record["config"]["network_def"]["filters"] == [4, 4, 8, 8, 16]
    split = json.loads((trained / "runs" / "split.json").read_text())
    assert split
    assert len(list((trained / "data" / "demo").glob("case_*/imaging.nii.gz"))) == 5
    assert list((trained / "runs" / "checkpoints").glob("checkpoint_epoch=2.pt"))


def test_evaluate_writes_per_case_dice_and_hd95_for_kidney_and_tumour(trained):
    monai_bundle(trained, "run", "--config_file", configs("train.json", "evaluate.json"), *TINY)
    with open(trained / "eval" / "case_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["case"] == "mean" and len(rows) == 2  # 5 demo cases: one test case, then the mean
    assert {"test_mean_dice_kidney", "test_mean_dice_tumour", "test_hd95_kidney", "test_hd95_tumour"} <= set(rows[0])
    assert all(0.0 <= float(r["test_mean_dice_kidney"]) <= 1.0 for r in rows)


def test_inference_writes_masks_with_the_input_shape_and_affine_and_skips_kits_mask_files(trained, tmp_path):
    source = nib.load(trained / "data" / "demo" / "case_00000" / "imaging.nii.gz")
    inputs = tmp_path / "new"
    inputs.mkdir()
    nib.save(source, inputs / "scan_ras.nii.gz")
    to_lps = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(source.affine), nib.orientations.axcodes2ornt(("L", "P", "S"))
    )
    nib.save(source.as_reoriented(to_lps), inputs / "scan_lps.nii")
    mask_file = trained / "data" / "demo" / "case_00000" / "segmentation.nii.gz"
    (inputs / "segmentation.nii.gz").write_bytes(mask_file.read_bytes())  # a KiTS case folder holds the mask too
    out = tmp_path / "pred"
    monai_bundle(trained, "run", "--config_file", configs("inference.json"), "--input_dir", str(inputs),
                 "--output_dir", str(out), *NET)
    assert sorted(p.name for p in out.iterdir()) == ["scan_lps_seg.nii.gz", "scan_ras_seg.nii.gz"]
    masks = {}
    for stem, suffix in (("scan_ras", ".nii.gz"), ("scan_lps", ".nii")):
        image, mask = nib.load(inputs / f"{stem}{suffix}"), nib.load(out / f"{stem}_seg.nii.gz")
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
        masks[stem] = mask
        assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1, 2}
    # the same scan stored in two orientations gets the same segmentation
    back = nib.as_closest_canonical(masks["scan_lps"])
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(masks["scan_ras"].dataobj))


def test_inference_at_a_kits_root_segments_every_case_and_names_each_mask_by_its_case(tmp_path):
    root = copy_bundle(NAME, tmp_path / "bundle")
    save_untrained_model(root, {"network_def#filters": [4, 4, 8, 8, 16]})
    cases = tmp_path / "kits23" / "dataset"
    for name in ("case_00003", "case_00010"):
        _write_kits_case(cases, name, np.diag([4.0, 4.0, 4.0, 1.0]))
    (cases / "case_00010" / "segmentation.nii.gz").unlink()  # a test case without its mask is segmented too
    out = tmp_path / "pred"
    monai_bundle(root, "run", "--config_file", configs("inference.json"), "--input_dir", str(tmp_path / "kits23"),
                 "--output_dir", str(out), *NET)
    assert sorted(p.name for p in out.iterdir()) == ["case_00003_seg.nii.gz", "case_00010_seg.nii.gz"]
    for name in ("case_00003", "case_00010"):
        assert nib.load(out / f"{name}_seg.nii.gz").shape == nib.load(cases / name / "imaging.nii.gz").shape


def test_inference_without_a_trained_model_says_so_in_one_line_before_reading_images(tmp_path):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / NAME / "configs" / "inference.json"))
    parser.update({"checkpoint": str(tmp_path / "models" / "model.pt")})
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the expression's error
        parser.get_parsed_content("handlers")
    assert str(failure.value.__cause__) == (
        f"no trained model at {tmp_path / 'models' / 'model.pt'}: train first (configs/train.json), "
        "or set --checkpoint <path>"
    )


def test_inference_on_a_missing_folder_fails_with_one_clear_line(trained, tmp_path):
    assert_missing_input_folder_is_one_line(trained, tmp_path / "nope", *NET)


def test_inference_on_a_folder_of_only_kits_masks_fails_with_one_clear_line(trained, tmp_path):
    masks_only = tmp_path / "case_masks"
    masks_only.mkdir()
    mask_file = trained / "data" / "demo" / "case_00000" / "segmentation.nii.gz"
    (masks_only / "segmentation.nii.gz").write_bytes(mask_file.read_bytes())
    assert_inference_fails_with_one_line(
        trained, masks_only,
        f"no .nii.gz/.nii images in {masks_only} (only segmentation.nii.gz, which are not images)", *NET,
    )


def test_metadata_and_network_shapes_pass_the_monai_checks_offline(trained):
    verify_metadata_and_network(trained, "--network_def#filters", "[4,4,8,8,16]")


def test_pruned_network_def_passes_verify_net_in_out_and_exports_to_torchscript_on_the_command_line(trained):
    overrides = ["--network_def#filters", "[4,4,8,8,16]"]
    scripted = export_pruned_torchscript(trained, *overrides)
    assert scripted(torch.rand(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)
