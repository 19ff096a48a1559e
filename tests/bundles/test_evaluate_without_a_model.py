"""Evaluation before any training: every bundle's evaluate.json says in one line that there is no trained model and
how to get one, instead of torch's ``[Errno 2]`` with a traceback."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from bundle_cli import BUNDLES, configs, copy_bundle, run_python

BUNDLE_NAMES = ["brain_mri_segmentation", "kidney_ct_segmentation", "polyp_endoscopy_segmentation"]
NO_MODEL = "no trained model at {}: train first (configs/train.json), or set --checkpoint <path>"


@pytest.mark.parametrize("name", BUNDLE_NAMES)
def test_evaluation_config_without_a_trained_model_fails_with_a_one_line_message_naming_the_file(tmp_path, name):
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / name / "configs" / part) for part in ("train.json", "evaluate.json")])
    parser.update({"bundle_root": str(tmp_path)})
    with pytest.raises(RuntimeError) as failure:  # MONAI wraps the expression's error
        parser.get_parsed_content("validate#handlers")
    assert str(failure.value.__cause__) == NO_MODEL.format(tmp_path / "models" / "model.pt")


def test_polyp_evaluation_before_training_prints_one_error_line_and_no_traceback(tmp_path):
    root = copy_bundle("polyp_endoscopy_segmentation", tmp_path / "bundle")
    result = run_python(root, "-m", "monai.bundle", "run", "--config_file", configs("train.json", "evaluate.json"),
                        "--meta_file", "configs/metadata.json", "--demo_cases", "10", "--roi_size", "[64,64]",
                        "--network_def#filters", "[4,8,8,16,16]", timeout=300)
    assert result.returncode != 0
    assert f"ERROR: {NO_MODEL.format('./models/model.pt')}" in result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr
