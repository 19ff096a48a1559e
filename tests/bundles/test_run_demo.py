"""bundles/run_demo.sh end to end on tiny settings: baseline, TaylorFO and Sauron trained, evaluated and compared."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bundle_cli import BUNDLES, copy_bundle

NAME = "polyp_endoscopy_segmentation"
TINY = ["--num_epochs", "2", "--val_interval", "1", "--demo_cases", "10", "--batch_size", "2",
        "--roi_size", "[64,64]", "--network_def#filters", "[4,8,8,16,16]"]
# tiny networks trained two epochs: let TaylorFO keep its cuts whatever the noisy validation says, and let Sauron's
# thresholds start high enough to cut channels the regulariser had no time to bring together
METHOD_OVERRIDES = {"TAYLORFO_OVERRIDES": "--taylorfo#tolerance 1.0",
                    "SAURON_OVERRIDES": "--sauron#tau_start 0.8 --sauron#tau_max 0.8"}


def _run_demo(bundles: Path, *args: str, env: dict, timeout: float = 400) -> subprocess.CompletedProcess:
    """``bash bundles/run_demo.sh <args>`` with this interpreter first on PATH; all of it killed after ``timeout``."""
    process = subprocess.Popen(["bash", str(bundles / "run_demo.sh"), *args], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"run_demo.sh did not finish within {timeout:.0f} s:\n{output[-4000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, output, None)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    bundles = tmp_path_factory.mktemp("demo") / "bundles"
    root = copy_bundle(NAME, bundles)
    for script in ("run_demo.sh", "logging_brief.conf"):
        shutil.copy(BUNDLES / script, bundles / script)
    env = {**os.environ, **METHOD_OVERRIDES, "OMP_NUM_THREADS": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("VERBOSE", None)
    result = _run_demo(bundles, NAME, *TINY, env=env)
    assert result.returncode == 0, result.stdout[-4000:]
    return root, result.stdout


def test_the_demo_compares_baseline_taylorfo_and_sauron_and_both_pruned_models_have_fewer_macs(demo):
    root, _ = demo
    summary = json.loads((root / "report" / "summary.json").read_text())
    models = {model["name"]: model for model in summary["models"]}
    assert list(models) == ["baseline", "TaylorFO", "Sauron (demo schedule)"]
    assert models["TaylorFO"]["macs"] < models["baseline"]["macs"]
    assert models["Sauron (demo schedule)"]["macs"] < models["baseline"]["macs"]
    assert all(0.0 <= model["dice"] <= 1.0 and model["latency_s"] > 0 for model in models.values())
    page = (root / "report" / "summary.md").read_text()
    for name in models:
        assert re.search(rf"^\| {re.escape(name)} \| [\d,]+", page, re.MULTILINE), name
    assert (root / "report" / "summary.png").stat().st_size > 0
    assert len(list((root / "predictions").glob("*_mask.png"))) == 10  # every demo frame segmented


def test_the_demo_prints_phases_one_line_per_epoch_the_table_and_where_the_pruned_model_is(demo):
    root, output = demo
    assert len(re.findall(r"^==> \[\d/6 at \d+:\d\d\] ", output, re.MULTILINE)) == 6
    epoch_lines = re.findall(r"^\S+  epoch \d/2  loss \d\.\d{4}  val_mean_dice \S+  MACs left \d+\.\d%", output,
                             re.MULTILINE)
    assert len(epoch_lines) == 3 * 2  # three trainings, two epochs each
    assert "Iter:" not in output and "writing:" not in output  # only with VERBOSE=1
    assert re.search(r"^TaylorFO +[\d,]+ \(0\.\d\dx\)", output, re.MULTILINE)  # the table, in the terminal
    last = output.strip().splitlines()[-3:]
    assert f"{root}/models/taylorfo/model.pt" in last[0]
    assert last[-1].endswith(f"python -m monai_pruning.pack_bundle {root} --output {NAME}_pruned.zip")
