"""The brain MRI bundle end to end on tiny demo data (train, evaluate, infer, MONAI CLI checks), and its channel and
label handling for the Decathlon and single-channel layouts."""

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
    export_pruned_torchscript,
    monai_bundle,
    verify_metadata_and_network,
)

NAME = "brain_mri_segmentation"
NET, TINY = NET_3D, TINY_3D  # two epochs of the tiny network on 5 demo cases
MSD_TASK01_MODALITY = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}


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


def _parsed_config(tmp_path, config, **overrides):
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / NAME / "configs" / config))
    parser.update({"bundle_root": str(tmp_path / "bundle"), **overrides})
    return parser


def _channels(rng, num_channels):
    """Positive random volumes of 20^3 voxels of 3 mm (the default pixdim), one per channel, all distinct."""
    return [rng.uniform(1.0, 100.0, size=(20, 20, 20)).astype(np.float32) for _ in range(num_channels)]


def _write_msd(root, rng, modality):
    """A Decathlon task folder with 3 cases, multi-channel when ``modality`` names several channels."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    training, channels = [], {}
    for index in range(3):
        name = f"BRATS_{index:03d}.nii.gz"
        volumes = _channels(rng, max(len(modality), 1))
        image = np.stack(volumes, axis=-1) if len(volumes) > 1 else volumes[0]
        label = np.zeros((20, 20, 20), dtype=np.uint8)
        label[2:6, 2:6, 2:6], label[8:12, 8:12, 8:12], label[14:18, 14:18, 14:18] = 1, 2, 3
        nib.save(nib.Nifti1Image(image, affine), root / "imagesTr" / name)
        nib.save(nib.Nifti1Image(label, affine), root / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
        channels[str(root / "imagesTr" / name)] = volumes
    meta = {"name": "tiny", "labels": {"0": "background", "1": "edema", "2": "non-enhancing", "3": "enhancing"},
            "training": training}
    if modality:
        meta["modality"] = modality
    (root / "dataset.json").write_text(json.dumps(meta))
    return channels


def _zscore(volume):
    return (volume - volume.mean()) / volume.std()


def test_preprocessing_selects_the_t1w_channel_by_name_and_merges_tumour_labels_into_lesion(tmp_path):
    channels = _write_msd(tmp_path / "Task01", np.random.default_rng(0), MSD_TASK01_MODALITY)
    parser = _parsed_config(tmp_path, "train.json", dataset_dir=str(tmp_path / "Task01"),
                            output_dir=str(tmp_path / "out"))
    assert parser.get_parsed_content("select_channels") is True
    case = parser.get_parsed_content("data")["test"][0]
    out = parser.get_parsed_content("validate#preprocessing")(case)
    assert out["image"].shape == (1, 20, 20, 20)
    t1w = channels[case["image"]][1]  # "T1w" is channel 1 of the Decathlon's FLAIR, T1w, t1gd, T2w
    np.testing.assert_allclose(out["image"][0].numpy(), _zscore(t1w), atol=1e-4)
    assert sorted(torch.unique(out["label"]).tolist()) == [0.0, 1.0]
    assert int(torch.count_nonzero(out["label"])) == 3 * 4**3  # all three sub-regions are lesion


def test_preprocessing_keeps_single_channel_images_of_a_dataset_that_names_no_channels(tmp_path):
    channels = _write_msd(tmp_path / "plain", np.random.default_rng(1), {})
    parser = _parsed_config(tmp_path, "train.json", dataset_dir=str(tmp_path / "plain"),
                            output_dir=str(tmp_path / "out"))
    assert parser.get_parsed_content("select_channels") is False
    case = parser.get_parsed_content("data")["test"][0]
    out = parser.get_parsed_content("validate#preprocessing")(case)
    np.testing.assert_allclose(out["image"][0].numpy(), _zscore(channels[case["image"]][0]), atol=1e-4)


def test_a_single_channel_decathlon_task_naming_its_channel_mri_trains_on_it_without_image_channels(tmp_path):
    # MSD Task04_Hippocampus: "modality": {"0": "MRI"}, while the bundle asks for "T1w" by default
    channels = _write_msd(tmp_path / "Task04", np.random.default_rng(3), {"0": "MRI"})
    parser = _parsed_config(tmp_path, "train.json", dataset_dir=str(tmp_path / "Task04"),
                            output_dir=str(tmp_path / "out"))
    case = parser.get_parsed_content("data")["test"][0]
    out = parser.get_parsed_content("validate#preprocessing")(case)
    assert out["image"].shape == (1, 20, 20, 20)
    np.testing.assert_allclose(out["image"][0].numpy(), _zscore(channels[case["image"]][0]), atol=1e-4)


def test_inference_preprocessing_selects_t1w_from_four_channel_files_when_told_their_channels(tmp_path):
    channels = _write_msd(tmp_path / "Task01", np.random.default_rng(2), MSD_TASK01_MODALITY)
    path = sorted(channels)[0]
    told = _parsed_config(tmp_path, "inference.json", modality=MSD_TASK01_MODALITY)
    out = told.get_parsed_content("preprocessing")({"image": path})
    np.testing.assert_allclose(out["image"][0].numpy(), _zscore(channels[path][1]), atol=1e-4)
    untold = _parsed_config(tmp_path, "inference.json")  # default: single-channel T1w files
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the transform's error in "applying transform ..."
        untold.get_parsed_content("preprocessing")({"image": path})
    assert "has 4 channels but the modality mapping names 1" in str(failure.value.__cause__)


def test_inference_at_a_decathlon_task_root_segments_its_training_and_test_images(tmp_path):
    channels = _write_msd(tmp_path / "Task04_Hippocampus", np.random.default_rng(4), {"0": "MRI"})
    (tmp_path / "Task04_Hippocampus" / "imagesTs").mkdir()
    test_image = tmp_path / "Task04_Hippocampus" / "imagesTs" / "BRATS_100.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), dtype=np.float32), np.eye(4)), test_image)
    parser = _parsed_config(tmp_path, "inference.json", input_dir=str(tmp_path / "Task04_Hippocampus"))
    assert [item["image"] for item in parser.get_parsed_content("datalist")] == sorted(channels) + [str(test_image)]


def test_inference_without_a_trained_model_says_so_in_one_line_before_reading_images(tmp_path):
    parser = _parsed_config(tmp_path, "inference.json", checkpoint=str(tmp_path / "nothing.pt"))
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the expression's error
        parser.get_parsed_content("handlers")
    assert str(failure.value.__cause__) == (
        f"no trained model at {tmp_path / 'nothing.pt'}: train first (configs/train.json), or set --checkpoint <path>"
    )


def test_training_on_demo_data_writes_pruning_checkpoints_and_a_run_record(trained):
    for name in ("model.pt", "model_best.pt"):
        checkpoint = torch.load(trained / "models" / name, weights_only=True)
        assert list(checkpoint)[:2] == ["pruning", "model"]
    record = json.loads((trained / "runs" / "run_record.json").read_text())
    assert record["seed"] == 0 and record["config"]["network_def"]["filters"] == [4, 4, 8, 8, 16]
    assert json.loads((trained / "runs" / "split.json").read_text())
    assert len(list((trained / "data" / "demo" / "imagesTr").glob("*.nii.gz"))) == 5
    assert list((trained / "runs" / "checkpoints").glob("checkpoint_epoch=2.pt"))


def test_evaluate_writes_per_case_lesion_dice_and_hd95(trained):
    monai_bundle(trained, "run", "--config_file", configs("train.json", "evaluate.json"), *TINY)
    with open(trained / "eval" / "case_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["case"] == "mean" and len(rows) == 2  # 5 demo cases: one test case, then the mean
    assert {"test_mean_dice_lesion", "test_hd95_lesion"} <= set(rows[0])
    assert 0.0 <= float(rows[0]["test_mean_dice_lesion"]) <= 1.0


def test_inference_writes_masks_with_the_input_shape_and_affine_whatever_the_file_orientation(trained, tmp_path):
    source = nib.load(sorted((trained / "data" / "demo" / "imagesTr").glob("*.nii.gz"))[0])
    inputs = tmp_path / "new"
    inputs.mkdir()
    nib.save(source, inputs / "t1_ras.nii.gz")
    to_lpi = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(source.affine), nib.orientations.axcodes2ornt(("L", "P", "I"))
    )
    nib.save(source.as_reoriented(to_lpi), inputs / "t1_lpi.nii")
    out = tmp_path / "pred"
    monai_bundle(trained, "run", "--config_file", configs("inference.json"), "--input_dir", str(inputs),
                 "--output_dir", str(out), *NET)
    masks = {}
    for stem, suffix in (("t1_ras", ".nii.gz"), ("t1_lpi", ".nii")):
        image, mask = nib.load(inputs / f"{stem}{suffix}"), nib.load(out / f"{stem}_seg.nii.gz")
        assert mask.shape == image.shape
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
        assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1}
        masks[stem] = mask
    back = nib.as_closest_canonical(masks["t1_lpi"])
    np.testing.assert_array_equal(np.asarray(back.dataobj), np.asarray(masks["t1_ras"].dataobj))


def test_inference_on_a_missing_folder_fails_with_one_clear_line(trained, tmp_path):
    assert_missing_input_folder_is_one_line(trained, tmp_path / "nope", *NET)


def test_inference_with_a_channel_name_the_modality_mapping_lacks_fails_with_one_clear_line(trained):
    # a multi-channel mapping: a single-channel one gives its channel for any name (with a warning)
    assert_inference_fails_with_one_line(
        trained, trained / "data" / "demo" / "imagesTr",
        "SelectChannels: channel name 'T2w' is not one of the modality names ['FLAIR', 'T1w'].",
        "--image_channels", "['T2w']", "--modality", "{'0':'FLAIR','1':'T1w'}", *NET,
    )


def test_metadata_and_network_shapes_pass_the_monai_checks_offline(trained):
    verify_metadata_and_network(trained, "--network_def#filters", "[4,4,8,8,16]")


def test_pruned_network_def_passes_verify_net_in_out_and_exports_to_torchscript_on_the_command_line(trained):
    overrides = ["--network_def#filters", "[4,4,8,8,16]"]
    scripted = export_pruned_torchscript(trained, *overrides)
    assert scripted(torch.rand(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
