"""
The bundles' configs resume exactly (the data reseeded per epoch, every stateful training object in the resume
checkpoint) and give TaylorFO scoring the per-sample version of the training loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser
from monai.losses import DiceCELoss

from monai_pruning.criteria import PerSampleLoss
from monai_pruning.handlers import EpochSeededData

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())


def _parser(bundle: str, *overlays: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / name) for name in ["train.json", *overlays]])
    parser.get_parsed_content("imports")
    return parser


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_training_reseeds_its_data_stream_from_the_run_seed_every_epoch(bundle):
    parser = _parser(bundle, "prune_sauron.json")
    parser["seed"] = 11
    handler = parser.get_parsed_content("train#handlers#data_seeding")
    assert isinstance(handler, EpochSeededData) and handler.seed == 11 and handler.global_rng
    # a shuffling loader with its own generator: the order comes from the reseeded stream, not from torch's global one
    assert parser["train#dataloader#shuffle"] is True and "generator" in parser["train#dataloader"]


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_the_resume_checkpoint_holds_every_object_whose_state_training_changes(bundle, tmp_path):
    parser = _parser(bundle)
    parser["bundle_root"] = str(tmp_path)
    parser["train#trainer"] = "$'trainer'"  # a stand-in: building the trainer would build the datasets
    parser["pruning_state"] = {"pruner": "$'pruner'"}  # as an overlay adds its handler
    # a stand-in too: the best-model saver creates its folder when built (tests/bundles/test_resume_objects.py checks
    # that plain training resumes it)
    parser["saver_state"] = {"best_saver": "$'best_saver'"}
    objects = parser.get_parsed_content("resume_objects")
    expected = {"pruning": "pruning_record", "model": "network", "optimizer": "optimizer", "lr_scheduler": "lr_scheduler"}
    for key, config_id in expected.items():  # the scheduler too: its step count sets every later learning rate
        assert objects[key] is parser.get_parsed_content(config_id), key
    assert objects["trainer"] == "trainer" and objects["pruner"] == "pruner" and objects["best_saver"] == "best_saver"
    assert not any(tmp_path.iterdir())  # nothing was built that writes files


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_taylorfo_scores_with_the_training_loss_applied_to_each_sample(bundle):
    parser = _parser(bundle, "prune_taylorfo.json")
    scoring = parser.get_parsed_content("taylorfo#scoring_loss")
    training = parser.get_parsed_content("loss")
    assert isinstance(scoring, PerSampleLoss) and scoring.loss is training
    assert isinstance(training, DiceCELoss) and training.dice.batch  # the batch-pooling loss, wrapped
