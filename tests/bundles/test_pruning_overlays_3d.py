"""The Sauron and TaylorFO overlays on the 3D bundles (kidney CT, brain MRI): they prune, save a record that
inference rebuilds, and TaylorFO starts from the baseline the plain training kept.  The polyp bundle's overlays are
tested in test_polyp_bundle.py."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from bundle_cli import NET_3D, configs, copy_bundle, monai_bundle, torchrun_bundle, verify_net_in_out_in_process

NET = NET_3D
TINY = ["--val_interval", "1", "--demo_cases", "5", "--batch_size", "2", "--num_samples", "1", *NET]


@pytest.mark.parametrize("name", ["kidney_ct_segmentation", "brain_mri_segmentation"])
def test_3d_bundle_pruning_overlays_prune_and_feed_inference(name, tmp_path, trained_3d_bundle):
    """The bundle's plain training (the session's, shared with its own module), then Sauron from scratch, then
    TaylorFO from the baseline the plain training kept."""
    trained = trained_3d_bundle(name)
    root = copy_bundle(name, tmp_path)
    for folder in ("models", "data"):  # the trained baseline and its demo data, not its runs
        shutil.copytree(trained / folder, root / folder)
    kept = (root / "models" / "model_baseline.pt").read_bytes()
    monai_bundle(root, "run", "--config_file", configs("train.json", "prune_sauron.json"), "--num_epochs", "1",
                 "--sauron#tau_start", "0.3", *TINY)
    rows = json.loads((root / "runs" / "pruning" / "pruning_history.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows and "widths" in rows[0]
    monai_bundle(root, "run", "--config_file", configs("train.json", "prune_taylorfo.json"), "--num_epochs", "1",
                 "--taylorfo#prune_fraction", "0.2", *TINY)
    assert (root / "models" / "model_baseline.pt").read_bytes() == kept  # neither overlay replaced the baseline
    baseline = torch.load(root / "models" / "model_baseline.pt", weights_only=True)
    pruned = torch.load(root / "models" / "model.pt", weights_only=True)
    assert list(pruned)[:2] == ["pruning", "model"]
    count = lambda state: sum(v.numel() for k, v in state["model"].items() if k.endswith("weight"))  # noqa: E731
    assert count(pruned) < count(baseline)
    # the command itself runs on each bundle's pruned checkpoint in its own module (export_pruned_torchscript)
    verify_net_in_out_in_process(root, "pruned_network_def", *NET)


def test_3d_multi_gpu_overlay_prunes_on_two_processes_and_saves_a_plain_checkpoint(tmp_path):
    """Patch sampling, sliding-window validation split over the processes and the 3D network under DDP (gloo)."""
    root = copy_bundle("kidney_ct_segmentation", tmp_path)
    # 10 cases: every process needs a validation case
    tiny = ["--val_interval", "1", "--demo_cases", "10", "--batch_size", "2", "--num_samples", "1", *NET]
    torchrun_bundle(root, 2, "run", "--config_file", configs("train.json", "prune_sauron.json", "multi_gpu_train.json"),
                    "--num_epochs", "2", "--sauron#tau_start", "0.5", "--sauron#tau_max", "0.6", *tiny)
    rows = json.loads((root / "runs" / "pruning" / "pruning_history.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [row["epoch"] for row in rows] == [1, 2] and sum(row["removed_now"] for row in rows) > 0
    pruned = torch.load(root / "models" / "model.pt", weights_only=True)
    assert not any(key.startswith("module.") for key in pruned["model"])
    verify_net_in_out_in_process(root, "pruned_network_def", *NET)
