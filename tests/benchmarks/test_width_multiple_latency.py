"""The width-multiple latency check: which widths it times, against which dense networks, and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from monai_pruning.engine import ChannelPruner, PruningRecord
from tests.benchmarks.benchmark_scripts import load_script

POLYP = Path(__file__).resolve().parents[2] / "bundles" / "polyp_endoscopy_segmentation"


@pytest.fixture(scope="module")
def script():
    return load_script("width_multiple_latency")


def test_widths_round_up_to_the_multiple_and_never_past_the_unpruned_width(script):
    widths = {"a": 13, "b": 8, "c": 30, "d": 1}
    unpruned = {"a": 16, "b": 16, "c": 32, "d": 4}
    assert script.rounded_widths(widths, unpruned, 8) == {"a": 16, "b": 8, "c": 32, "d": 4}
    assert script.rounded_widths(widths, unpruned, 1) == widths
    with pytest.raises(ValueError, match="the multiple must be an int >= 1, got 0"):
        script.rounded_widths(widths, unpruned, 0)
    with pytest.raises(ValueError, match=r"groups \['e'\] are not groups of the unpruned network"):
        script.rounded_widths({"e": 3}, unpruned, 8)


def test_a_pruned_checkpoint_is_timed_with_its_rounded_widths_each_against_a_dense_network_of_its_macs(script, tmp_path):
    network = script.network_def(POLYP)
    pruner = ChannelPruner(network, (2, 3, 32, 32))
    widths = pruner.widths()
    odd = {name: width - 3 for name, width in widths.items() if width > 8}  # e.g. 32 -> 29
    pruner.cut({name: range(odd[name], widths[name]) for name in odd})
    checkpoint = tmp_path / "model.pt"
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, checkpoint)

    result = script.measure(POLYP, checkpoint, [8], (64, 64), runtimes=["eager"], rounds=1, repeats=1, threads=1)
    pruned, rounded = result["networks"]["pruned"], result["networks"]["multiple_8"]
    assert pruned["widths"] == {**widths, **odd}
    assert rounded["widths"] == widths  # 29 -> 32, 13 -> 16: every cut group back at its unpruned multiple of 8
    assert pruned["macs_fraction"] < rounded["macs_fraction"] == pytest.approx(1.0)
    for entry in (pruned, rounded):
        timing = entry["runtimes"]["eager"]
        assert timing["pruned_over_dense"] == pytest.approx(timing["latency_s"] / timing["dense_latency_s"])
    table = script.markdown_table(result)
    assert "| multiple_8 | 100.0% |" in table and "eager: ms (pruned / dense)" in table


def test_missing_files_are_named_in_one_line(script, tmp_path):
    with pytest.raises(SystemExit, match=r"checkpoint file .*missing.pt not found"):
        script.main([str(POLYP), str(tmp_path / "missing.pt")])
    with pytest.raises(SystemExit, match=r"--multiples must be ints >= 1"):
        script.main([str(POLYP), str(POLYP / "LICENSE"), "--multiples", "0"])
