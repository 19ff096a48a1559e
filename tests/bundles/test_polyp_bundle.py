"""The polyp bundle end to end on tiny demo data: train, evaluate, infer, and the MONAI CLI checks."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bundle_cli import (
    BUNDLES,
    assert_inference_fails_with_one_line,
    assert_missing_input_folder_is_one_line,
    configs,
    copy_bundle,
    export_pruned_torchscript,
    monai_bundle,
    monai_bundles_at_once,
    run_python,
    torchrun_bundle,
    verify_metadata_and_network,
)

NAME = "polyp_endoscopy_segmentation"
TINY = ["--num_epochs", "2", "--val_interval", "1", "--demo_cases", "10", "--batch_size", "2",
        "--roi_size", "[64,64]", "--network_def#filters", "[4,8,8,16,16]"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = copy_bundle(NAME, tmp_path_factory.mktemp("bundle"))
    monai_bundle(root, "run", "--config_file", configs("train.json"), "--meta_file", "configs/metadata.json", *TINY)
    return root


def _write_cvc_copy(root, suffix, rng):
    """A CVC-ClinicDB copy of 5 frames (RGB) with masks (grey, one bright square each) in one picture format."""
    (root / "Original").mkdir(parents=True)
    (root / "Ground Truth").mkdir()
    for n in range(1, 6):
        frame = rng.integers(0, 256, size=(36, 48, 3), dtype=np.uint8)
        mask = np.zeros((36, 48), dtype=np.uint8)
        mask[8:24, 10:30] = 255
        Image.fromarray(frame).save(root / "Original" / f"{n}.{suffix}")
        Image.fromarray(mask).save(root / "Ground Truth" / f"{n}.{suffix}")


@pytest.mark.parametrize("suffix", ["tif", "png", "jpg"])
def test_a_cvc_clinicdb_copy_in_any_of_its_formats_is_checked_and_loaded_by_the_training_config(tmp_path, suffix):
    from monai.bundle import ConfigParser

    _write_cvc_copy(tmp_path / "CVC-ClinicDB", suffix, np.random.default_rng(0))
    parser = ConfigParser()
    parser.read_config(str(BUNDLES / NAME / "configs" / "train.json"))
    parser.update({"bundle_root": str(tmp_path / "bundle"), "dataset_dir": str(tmp_path / "CVC-ClinicDB"),
                   "output_dir": str(tmp_path / "out")})
    data = parser.get_parsed_content("data")
    assert data["info"]["layout"] == "cvc_clinicdb" and data["info"]["num_cases"] == 5
    out = parser.get_parsed_content("validate#preprocessing")(data["validation"][0])
    assert out["image"].shape == (3, 128, 128) and float(out["image"].max()) <= 1.0
    assert sorted(torch.unique(out["label"]).tolist()) == [0.0, 1.0]
    share = float(out["label"].mean())  # the square covers 320 of 1728 pixels
    assert abs(share - 320 / 1728) < 0.03


def test_training_on_demo_data_writes_a_pruning_checkpoint_and_a_run_record(trained):
    checkpoint = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert list(checkpoint)[:2] == ["pruning", "model"]
    record = json.loads((trained / "runs" / "run_record.json").read_text())
    assert record["seed"] == 0 and record["packages"]["monai"]
    assert record["config"]["network_def"]["filters"] == [4, 8, 8, 16, 16]
    split = json.loads((trained / "runs" / "split.json").read_text())
    assert split  # the split is saved next to the outputs
    assert (trained / "data" / "demo" / "images").is_dir() and (trained / "data" / "demo" / "masks").is_dir()
    assert list((trained / "runs" / "checkpoints").glob("checkpoint_epoch=2.pt"))
    # the plain training also keeps its final weights as the baseline, which the pruning overlays never overwrite
    baseline = torch.load(trained / "models" / "model_baseline.pt", weights_only=True)
    assert all(torch.equal(baseline["model"][k], v) for k, v in checkpoint["model"].items())


def test_evaluate_writes_per_case_dice_and_hd95(trained):
    monai_bundle(trained, "run", "--config_file", configs("train.json", "evaluate.json"), *TINY)
    with open(trained / "eval" / "case_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["case"] == "mean" and len(rows) >= 3
    assert {"test_mean_dice_polyp", "test_hd95_polyp"} <= set(rows[0])
    assert all(0.0 <= float(r["test_mean_dice_polyp"]) <= 1.0 for r in rows[:-1])


def test_inference_writes_png_masks_in_the_input_size(trained, tmp_path):
    images = sorted((trained / "data" / "demo" / "images").glob("*.jpg"))[:2]
    inputs = tmp_path / "new"
    inputs.mkdir()
    for image in images:
        (inputs / image.name).write_bytes(image.read_bytes())
    out = tmp_path / "pred"
    monai_bundle(trained, "run", "--config_file", configs("inference.json"), "--input_dir", str(inputs),
                 "--output_dir", str(out), "--roi_size", "[64,64]", "--network_def#filters", "[4,8,8,16,16]")
    for image in images:
        mask = np.array(Image.open(out / f"{image.stem}_mask.png"))
        assert mask.shape == np.array(Image.open(image)).shape[:2]
        assert set(np.unique(mask)) <= {0, 255}


def test_a_resume_flag_that_is_not_true_or_false_stops_before_training_with_one_line(tmp_path):
    # the command line hands `--resume false` over as the string "false", which `if @resume` took for true
    root = copy_bundle(NAME, tmp_path)
    result = run_python(root, "-m", "monai.bundle", "run", "--config_file", configs("train.json"), "--resume", "maybe",
                        *TINY, timeout=300)
    assert result.returncode != 0
    assert "ERROR: `resume` must be true or false, got 'maybe'." in result.stderr
    assert "Traceback" not in result.stderr
    assert not list((root / "runs").glob("checkpoints/*.pt"))


def test_inference_before_training_says_in_one_line_that_there_is_no_trained_model_and_what_to_do(tmp_path):
    root = copy_bundle(NAME, tmp_path / "bundle")
    inputs = tmp_path / "frames"
    inputs.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(inputs / "frame.png")
    assert_inference_fails_with_one_line(
        root, inputs,
        "no trained model at ./models/model.pt: train first (configs/train.json), or set --checkpoint <path>",
    )


def test_inference_on_a_missing_folder_fails_with_one_clear_line(trained, tmp_path):
    assert_missing_input_folder_is_one_line(trained, tmp_path / "nope", "--network_def#filters", "[4,8,8,16,16]")


def test_monai_cli_checks_pass_offline(trained):
    overrides = ["--network_def#filters", "[4,8,8,16,16]"]
    verify_metadata_and_network(trained, *overrides)
    scripted = export_pruned_torchscript(trained, *overrides)
    assert scripted(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)


def test_packed_bundle_runs_inference_in_an_empty_folder(trained, tmp_path):
    from monai_pruning.pack_bundle import pack_bundle

    archive = pack_bundle(trained, tmp_path / "shared.zip")
    import zipfile

    with zipfile.ZipFile(archive) as z:
        names = z.namelist()
        assert not any("/data/" in n or "/runs/" in n for n in names)
        z.extractall(tmp_path / "collaborator")
    unpacked = tmp_path / "collaborator" / NAME
    inputs = tmp_path / "images"
    inputs.mkdir()
    source = sorted((trained / "data" / "demo" / "images").glob("*.jpg"))[0]
    (inputs / "frame.jpg").write_bytes(source.read_bytes())
    monai_bundle(unpacked, "run", "--config_file", configs("inference.json"), "--input_dir", str(inputs),
                 "--output_dir", str(tmp_path / "out"), "--roi_size", "[64,64]",
                 "--network_def#filters", "[4,8,8,16,16]")
    assert (tmp_path / "out" / "frame_mask.png").is_file()


def test_same_seed_gives_the_same_training_curve_with_a_yaml_overlay(tmp_path):
    overlay = "num_epochs: 1\nval_interval: 1\nlearning_rate: 0.01\n"
    roots = [copy_bundle(NAME, tmp_path / run) for run in ("a", "b")]
    for root in roots:
        (root / "configs" / "short.yaml").write_text(overlay)
    # two separate bundle folders: the runs share nothing, so they run at the same time
    results = monai_bundles_at_once(
        *[(root, ["run", "--config_file", configs("train.json", "short.yaml"), *TINY[2:]]) for root in roots])
    curves = []
    for root, result in zip(roots, results):
        curves.append([line.split("train_loss:")[1].strip() for line in result.stdout.splitlines()
                       if "train_loss:" in line])
        record = json.loads((root / "runs" / "run_record.json").read_text())
        assert record["config"]["learning_rate"] == 0.01 and record["config"]["num_epochs"] == 1
    assert curves[0] and curves[0] == curves[1]


def _history(root):
    return json.loads((root / "runs" / "pruning" / "pruning_history.json").read_text())


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pruning_overlays_cut_channels_resume_and_feed_inference(trained, tmp_path):
    """Baseline (the module's trained bundle), then Sauron, then TaylorFO: TaylorFO starts from the baseline."""
    from monai_pruning.engine import load_pruned_network
    from monai.networks.nets import DynUNet

    root = copy_bundle(NAME, tmp_path)
    for folder in ("models", "data"):  # the trained baseline and its demo data, not its runs
        shutil.copytree(trained / folder, root / folder)
    baseline = root / "models" / "model_baseline.pt"
    baseline_sha256 = _sha256(baseline)
    tiny = TINY[2:]
    # a floor of half of every group's starting width, from the command line, kept across the restart below
    sauron = ["--sauron#tau_start", "0.9", "--sauron#tau_max", "0.95", "--sauron#min_width_fraction", "0.5", *tiny]
    monai_bundle(root, "run", "--config_file", configs("train.json", "prune_sauron.json"), "--num_epochs", "2",
                 *sauron)
    assert (root / "runs" / "pruning" / "channels.png").is_file()
    assert (root / "runs" / "pruning" / "pruning_history.csv").is_file()
    # a killed run continues from its last checkpoint: same architecture, epochs 3 on
    result = monai_bundle(root, "run", "--config_file", configs("train.json", "prune_sauron.json"), "--num_epochs",
                          "3", "--resume", "true", *sauron)
    assert "resuming from iteration" in result.stdout + result.stderr
    rows = _history(root)
    epochs = [row["epoch"] for row in rows]
    assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3]
    start = {group: width + rows[0]["removed"][group] for group, width in rows[0]["widths"].items()}
    half, final = {group: -(-width // 2) for group, width in start.items()}, rows[-1]["widths"]
    assert all(final[group] >= half[group] for group in final)
    assert sum(final[group] == half[group] for group in final) > len(final) // 2  # without it: 2 channels each
    # the resumed run's checkpoint replaced the first run's (n_saved=1) instead of piling up beside it
    assert [path.name for path in (root / "runs" / "checkpoints").glob("checkpoint_epoch=*.pt")] == [
        "checkpoint_epoch=3.pt"]

    sauron_model = torch.load(root / "models" / "model.pt", weights_only=True)
    assert _sha256(baseline) == baseline_sha256  # Sauron saved its pruned network as model.pt only
    sauron_start_macs = rows[0]["macs"] / rows[0]["macs_ratio"]  # Sauron started from scratch: the unpruned MACs

    # starting TaylorFO from a pruned checkpoint is refused before training, in one line, unless asked for
    taylorfo = ["--config_file", configs("train.json", "prune_taylorfo.json"), "--num_epochs", "2",
                "--taylorfo#prune_fraction", "0.2", "--taylorfo#tolerance", "1.0", *tiny]
    refused = run_python(root, "-m", "monai.bundle", "run", *taylorfo, "--baseline_checkpoint", "models/model.pt",
                         timeout=300)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "holds a pruned network" in refused.stderr and "--check_baseline false" in refused.stderr
    assert len([line for line in refused.stderr.splitlines() if line.startswith("ERROR:")]) == 1
    assert torch.load(root / "models" / "model.pt", weights_only=True)["pruning"] == sauron_model["pruning"]

    # tolerance 1: a two-epoch run on tiny phantoms has too noisy a Dice for the 0.01 stop rule (tested on its own
    # in tests/handlers); here the cut must stand so that inference runs on a pruned network
    result = monai_bundle(root, "run", *taylorfo)
    # the baseline is the loaded model's validation before fine-tuning, so the first epoch already cuts
    assert "validated before training" in result.stdout + result.stderr
    first = _history(root)[0]
    assert first["removed_now"] > 0 and first["baseline"] is not None
    # it started from the unpruned baseline (every channel, all the MACs), not from Sauron's model.pt, and says so
    assert first["channels"] + first["removed_now"] == sum(start.values())
    assert first["macs"] / first["macs_ratio"] == pytest.approx(sauron_start_macs, rel=1e-6)
    assert first["start_checkpoint"]["sha256"] == baseline_sha256
    assert first["start_checkpoint"]["path"] == str(baseline.resolve())
    filters = [4, 8, 8, 16, 16]
    network = DynUNet(2, 3, 2, [3] * 5, [1, 2, 2, 2, 2], [2] * 4, filters=filters, norm_name="instance",
                      act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}))
    unpruned = sum(p.numel() for p in network.parameters())
    load_pruned_network(network, root / "models" / "model.pt")
    assert sum(p.numel() for p in network.parameters()) < unpruned
    assert sauron_model["pruning"] != torch.load(root / "models" / "model.pt", weights_only=True)["pruning"]
    out = tmp_path / "masks"
    monai_bundle(root, "run", "--config_file", configs("inference.json"), "--input_dir",
                 str(root / "data" / "demo" / "images"), "--output_dir", str(out), "--roi_size", "[64,64]",
                 "--network_def#filters", str(filters).replace(" ", ""))
    assert len(list(out.glob("*_mask.png"))) == 10


def test_multi_gpu_overlay_prunes_resumes_fine_tunes_and_trains_on_with_two_processes(tmp_path):
    """torchrun with two CPU processes (gloo): the DDP path a multi-GPU machine takes, with the same overlay."""
    from monai_pruning.engine import load_pruned_network
    from monai.networks.nets import DynUNet

    root = copy_bundle(NAME, tmp_path)
    tiny = TINY[2:]
    sauron = ["--config_file", configs("train.json", "prune_sauron.json", "multi_gpu_train.json"),
              "--sauron#tau_start", "0.5", "--sauron#tau_max", "0.6", *tiny]
    result = torchrun_bundle(root, 2, "run", *sauron, "--num_epochs", "2")
    assert result.stdout.count("SauronPruning epoch 2:") == 1  # rank 0 alone reports
    rows = _history(root)
    assert [row["epoch"] for row in rows] == [1, 2] and sum(row["removed_now"] for row in rows) > 0
    record = json.loads((root / "runs" / "run_record.json").read_text())
    assert record["world_size"] == 2
    # TensorBoard files from rank 0 only (the other ranks do not even build the writers: no empty event files)
    writers = {path.name.split(".")[-2] for path in (root / "runs").glob("events.out.tfevents.*")}
    assert len(writers) == 1
    # killed and restarted: both ranks rebuild the pruned architecture from the checkpoint and continue
    result = torchrun_bundle(root, 2, "run", *sauron, "--num_epochs", "3", "--resume", "true")
    assert "resuming from iteration" in result.stdout + result.stderr
    rows = _history(root)
    assert [row["epoch"] for row in rows] == [1, 2, 3]
    sauron_widths = rows[-1]["widths"]
    assert sum(rows[1]["widths"].values()) >= sum(sauron_widths.values())
    # TaylorFO from that (pruned) model, on two ranks: a pruned start, asked for explicitly
    torchrun_bundle(root, 2, "run", "--config_file", configs("train.json", "prune_taylorfo.json",
                    "multi_gpu_train.json"), "--num_epochs", "2", "--taylorfo#prune_fraction", "0.2",
                    "--taylorfo#tolerance", "1.0", "--baseline_checkpoint", "models/model.pt",
                    "--check_baseline", "false", *tiny)
    taylorfo_widths = _history(root)[-1]["widths"]
    assert sum(taylorfo_widths.values()) < sum(sauron_widths.values())
    # plain training (no pruning overlay) resumes the pruned checkpoint: the DDP wrapper must follow the reshape
    result = torchrun_bundle(root, 2, "run", "--config_file", configs("train.json", "multi_gpu_train.json"),
                             "--num_epochs", "4", "--resume", "true", *tiny)
    assert "resuming from iteration" in result.stdout + result.stderr
    assert list((root / "runs" / "checkpoints").glob("checkpoint_epoch=4.pt"))
    # the checkpoint names the network's own modules (no DDP "module." prefix): inference loads it as usual
    network = DynUNet(2, 3, 2, [3] * 5, [1, 2, 2, 2, 2], [2] * 4, filters=[4, 8, 8, 16, 16], norm_name="instance",
                      act_name=("leakyrelu", {"negative_slope": 0.01, "inplace": True}))
    unpruned = sum(p.numel() for p in network.parameters())
    load_pruned_network(network, root / "models" / "model.pt")
    assert sum(p.numel() for p in network.parameters()) < unpruned
