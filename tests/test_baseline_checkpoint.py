"""The checkpoint TaylorFO starts from must be the unpruned baseline of the bundle's network_def, and is identified."""

from __future__ import annotations

import hashlib
import os

import pytest
import torch
from monai.networks.nets import UNet

from monai_pruning.baseline_checkpoint import StartCheckpointError, check_start_checkpoint
from monai_pruning.engine import ChannelPruner, PruningRecord

SHAPE = (2, 1, 16, 16)


def _unet(seed: int = 0, channels=(4, 8, 16)) -> UNet:
    torch.manual_seed(seed)
    return UNet(2, 1, 2, channels, (2, 2), num_res_units=1, norm="batch")


def _save(network, path, **extra) -> str:
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict(), **extra}, path)
    return str(path)


def _pruned(seed: int = 0) -> UNet:
    network = _unet(seed)
    ChannelPruner(network, SHAPE).cut({"model.1.submodule.0.residual": [0, 5]})
    return network


def test_the_unpruned_baseline_is_accepted_and_identified_by_path_epoch_and_sha256(tmp_path):
    path = _save(_unet(), tmp_path / "model_baseline.pt", trainer={"epoch": 5, "iteration": 20})
    start = check_start_checkpoint(path, _unet(1))
    assert start == {"path": str(tmp_path / "model_baseline.pt"), "epoch": 5,
                     "sha256": hashlib.sha256((tmp_path / "model_baseline.pt").read_bytes()).hexdigest(),
                     "pruned_modules": 0}
    assert check_start_checkpoint(_save(_unet(), tmp_path / "plain.pt"), _unet())["epoch"] is None


@pytest.mark.parametrize("check", [True, "true"])
def test_a_pruned_checkpoint_is_refused_with_one_line_saying_how_to_start_from_it_anyway(tmp_path, check):
    path = _save(_pruned(), tmp_path / "model.pt")
    with pytest.raises(StartCheckpointError, match=r"model\.pt holds a pruned network \(\d+ modules narrower than "
                                                   r"network_def.*set --check_baseline false") as error:
        check_start_checkpoint(path, _unet(), check=check)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("check", [False, "false"])
def test_with_the_check_off_a_pruned_checkpoint_is_accepted_and_says_it_is_pruned(tmp_path, check):
    start = check_start_checkpoint(_save(_pruned(), tmp_path / "model.pt"), _unet(), check=check)
    assert start["pruned_modules"] > 0


def test_a_baseline_older_than_an_unpruned_model_pt_with_other_weights_is_stale(tmp_path):
    baseline = _save(_unet(0), tmp_path / "model_baseline.pt")
    newer = _save(_unet(1), tmp_path / "model.pt")  # a baseline trained later, not kept as the baseline
    os.utime(baseline, (1_000_000, 1_000_000))
    with pytest.raises(StartCheckpointError, match=r"model_baseline\.pt is stale: .*model\.pt holds an unpruned "
                                                   r"network saved after it"):
        check_start_checkpoint(baseline, _unet(), newest_model=newer)
    assert check_start_checkpoint(baseline, _unet(), newest_model=newer, check=False)["path"] == baseline


def test_a_newer_model_pt_that_is_pruned_or_holds_the_same_weights_does_not_make_the_baseline_stale(tmp_path):
    baseline = _save(_unet(0), tmp_path / "model_baseline.pt")
    os.utime(baseline, (1_000_000, 1_000_000))
    pruned = _save(_pruned(1), tmp_path / "model.pt")
    assert check_start_checkpoint(baseline, _unet(), newest_model=pruned)["pruned_modules"] == 0
    same = _save(_unet(0), tmp_path / "model.pt", note="saved by another saver of the same run")
    assert check_start_checkpoint(baseline, _unet(), newest_model=same)["pruned_modules"] == 0


def test_a_missing_baseline_says_to_train_it_first(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no baseline checkpoint at .*model_baseline\.pt: train the baseline"):
        check_start_checkpoint(tmp_path / "model_baseline.pt", _unet())


def test_a_checkpoint_of_another_network_def_or_not_a_bundle_checkpoint_is_refused_even_with_the_check_off(tmp_path):
    wider = _save(_unet(channels=(8, 8, 16)), tmp_path / "wider.pt")
    with pytest.raises(StartCheckpointError, match=r"made for another network_def: .* is 8, network_def has 4"):
        check_start_checkpoint(wider, _unet(), check=False)
    torch.save(_unet().state_dict(), tmp_path / "bare.pt")
    with pytest.raises(StartCheckpointError, match=r"bare\.pt is not a bundle checkpoint"):
        check_start_checkpoint(tmp_path / "bare.pt", _unet(), check=False)
