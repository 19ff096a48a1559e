"""What a bundle's resume checkpoint restores: a resumed run must go on exactly as the run it continues."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import ConfigParser

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
BUNDLE_NAMES = sorted(p.name for p in BUNDLES.iterdir() if (p / "configs").is_dir())


def _resume_keys(bundle: str, overlays: tuple[str, ...]) -> str:
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / name) for name in ("train.json", *overlays)])
    return parser["resume_objects"] + " " + " ".join(parser.get("saver_state", {}))


@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_plain_training_resumes_the_best_model_record_with_the_weights_optimizer_and_schedule(bundle):
    keys = _resume_keys(bundle, ())
    for needed in ("model=@network", "optimizer=@optimizer", "lr_scheduler=@lr_scheduler", "**@saver_state",
                   "best_saver"):
        assert needed in keys, needed


@pytest.mark.parametrize("overlay", ["prune_sauron.json", "prune_taylorfo.json"])
@pytest.mark.parametrize("bundle", BUNDLE_NAMES)
def test_pruning_overlays_resume_their_own_best_model_record_not_the_disabled_saver(bundle, overlay):
    keys = _resume_keys(bundle, (overlay,))
    assert "best_saver" not in keys
    assert "**@pruning_state" in keys
