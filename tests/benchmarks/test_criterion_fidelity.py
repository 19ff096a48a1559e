"""The criterion-fidelity benchmark: removal costs equal physical removal, its statistics, the script end to end."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import DynUNet

from monai_pruning.engine import ChannelPruner, PruningRecord
from tests.benchmarks.benchmark_scripts import load_script

POLYP = Path(__file__).resolve().parents[2] / "bundles" / "polyp_endoscopy_segmentation"


@pytest.fixture(scope="module")
def script():
    return load_script("criterion_fidelity")


def _dynunet(spatial_dims: int) -> DynUNet:
    torch.manual_seed(0)
    return DynUNet(spatial_dims, 1, 2, kernel_size=[3, 3, 3], strides=[1, 2, 2], upsample_kernel_size=[2, 2],
                   filters=[4, 6, 8], norm_name="instance")


def _batches(spatial_dims: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(1)
    shape = (2, 1, *([8] * spatial_dims))
    return [(torch.randn(shape, generator=generator), torch.randint(0, 2, shape, generator=generator))
            for _ in range(2)]


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_a_channels_removal_cost_equals_the_loss_increase_of_physically_removing_it(script, spatial_dims):
    network, batches = _dynunet(spatial_dims), _batches(spatial_dims)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    pruner = ChannelPruner(network, (1, 1, *([8] * spatial_dims)))
    taps = pruner.graph.consumer_taps()
    base, costs = script.removal_costs(network, {g: taps[g] for g in pruner.prunable_groups}, batches, loss)
    assert base == pytest.approx(script.mean_loss(network, batches, loss))
    for group, values in costs.items():
        assert len(values) == pruner.graph.groups[group].size
        for channel in (0, len(values) - 1):
            pruned = copy.deepcopy(network)
            ChannelPruner(pruned, (1, 1, *([8] * spatial_dims))).cut({group: [channel]})
            removed = script.mean_loss(pruned, batches, loss)
            assert values[channel] == pytest.approx(removed - base, abs=1e-5), (group, channel)
    # the network is left as it was
    assert script.mean_loss(network, batches, loss) == pytest.approx(base)


def test_filters_behind_an_affine_free_instance_norm_have_a_zero_signed_first_order_removal_estimate(script):
    network, batches = _dynunet(2), _batches(2)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    pruner = ChannelPruner(network, (1, 1, 8, 8))
    scores, signed = script.criterion_scores(network, pruner, batches, loss)
    behind_norm = [g for g in signed if "transp_conv" not in g]
    upsampling = [g for g in signed if "transp_conv" in g]  # no normalisation behind a transposed convolution
    assert behind_norm and upsampling
    assert max(signed[g] for g in behind_norm) < 1e-4
    assert min(signed[g] for g in upsampling) > 1e-3
    assert set(scores) == set(script.CRITERIA)
    for criterion in script.CRITERIA:
        assert {g: len(v) for g, v in scores[criterion].items()} == pruner.widths()
    assert np.mean(scores["weight_gradient"]["input_block.conv1.conv"]) == pytest.approx(1.0)


def test_spearman_ranks_ties_together_and_is_undefined_without_an_order(script):
    assert script.spearman([3.0, 1.0, 3.0, 2.0], [9.0, 0.0, 9.0, 5.0]) == pytest.approx(1.0)
    assert script.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert script.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert script.spearman([1, 1, 1], [1, 2, 3]) is None
    assert script.spearman([1, 2], [1, 2]) is None
    with pytest.raises(ValueError, match="3 values against 2"):
        script.spearman([1, 2, 3], [1, 2])


def test_a_mean_normalised_ranking_sends_its_lowest_quarter_into_the_costly_small_group(script):
    # group "wide": 12 cheap channels; group "narrow": 4 channels that are costly to remove
    costs = {"wide": [0.001 * (i + 1) for i in range(12)], "narrow": [0.3, 0.35, 2.0, 2.0]}
    in_loss_units = {"wide": costs["wide"], "narrow": costs["narrow"]}  # a criterion that is the cost itself
    mean_normalised = {g: list(np.asarray(v) / np.mean(v)) for g, v in costs.items()}
    result = script.fidelity({"taylorfo": in_loss_units, "weight_gradient": mean_normalised}, costs)
    assert result["taylorfo"]["global"] == pytest.approx(1.0)
    assert result["taylorfo"]["per_group"] == {"wide": pytest.approx(1.0), "narrow": pytest.approx(1.0)}
    assert result["taylorfo"]["lowest"]["cost"] == pytest.approx(0.001 + 0.002 + 0.003 + 0.004)
    # per group the order is right, yet globally the narrow group's two cheapest channels (0.26 and 0.30 of their
    # mean) rank among the four lowest, with the wide group's two cheapest (0.15 and 0.31 of theirs)
    assert result["weight_gradient"]["per_group"]["narrow"] == pytest.approx(1.0)
    lowest = result["weight_gradient"]["lowest"]
    assert lowest["cost"] == pytest.approx(0.001 + 0.002 + 0.3 + 0.35)
    assert lowest["most_hit"][0] == {"group": "narrow", "share": 0.5}
    assert lowest["chosen"] == {"wide": [0, 1], "narrow": [0, 1]}
    assert result["single_costs"]["lowest"]["cost"] == pytest.approx(result["taylorfo"]["lowest"]["cost"])
    # the engine's floor: a group never gives up its last 2 channels, however low they rank
    floored = script.fidelity({"taylorfo": {"wide": costs["wide"], "narrow": [-1.0] * 4}}, costs)
    assert floored["taylorfo"]["lowest"]["chosen"] == {"wide": [0, 1], "narrow": [0, 1]}


def test_the_joint_cost_is_the_loss_increase_of_removing_the_whole_lowest_quarter_at_once(script):
    network, batches = _dynunet(2), _batches(2)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    table = {"taylorfo": {"lowest": {"chosen": {"input_block.conv1.conv": [0, 2], "bottleneck.conv1.conv": [1]}}},
             "filter_l1": {"per_group": {}}}
    joint = script.joint_removal_costs(network, (1, 1, 8, 8), table, batches, loss)
    pruned = copy.deepcopy(network)
    ChannelPruner(pruned, (1, 1, 8, 8)).cut({"input_block.conv1.conv": [0, 2], "bottleneck.conv1.conv": [1]})
    expected = script.mean_loss(pruned, batches, loss) - script.mean_loss(network, batches, loss)
    assert joint == {"taylorfo": pytest.approx(expected)} and expected != 0.0
    measured_base = script.mean_loss(network, batches, loss)
    assert script.joint_removal_costs(network, (1, 1, 8, 8), table, batches, loss, base=measured_base + 1.0) == {
        "taylorfo": pytest.approx(expected - 1.0)}  # a base already measured is used, not measured again
    assert ChannelPruner(network, (1, 1, 8, 8)).widths()["input_block.conv1.conv"] == 4  # the network is not cut


def test_the_script_scores_a_bundle_checkpoint_and_writes_its_tables(script, tmp_path):
    root = tmp_path / "bundle"
    shutil.copytree(POLYP / "configs", root / "configs")
    tiny = {"demo_dir": str(tmp_path / "demo"), "demo_cases": "10", "roi_size": "[64,64]", "batch_size": "2",
            "network_def#filters": "[4,8,8,16,16]"}
    overrides = [f"{k}={v}" for k, v in tiny.items()]
    parser_network = script.ConfigParser()
    parser_network.read_config(str(root / "configs" / "train.json"))
    parser_network["network_def#filters"] = [4, 8, 8, 16, 16]
    network = parser_network.get_parsed_content("network_def")
    checkpoint = tmp_path / "model.pt"
    torch.save({"pruning": PruningRecord(network).state_dict(), "model": network.state_dict()}, checkpoint)
    groups = ["input_block.conv1.conv", "upsamples.3.transp_conv.conv"]
    out = tmp_path / "out"
    script.main([str(root), str(checkpoint), "--out", str(out), "--batches", "1", "--groups", *groups,
                 *[a for o in overrides for a in ("--set", o)]])
    result = json.loads((out / "criterion_fidelity.json").read_text())
    assert list(result["costs"]) == groups and result["batches"] == 1
    assert {g: len(v) for g, v in result["costs"].items()} == {groups[0]: 4, groups[1]: 4}
    assert set(result["fidelity"]) == {*script.CRITERIA, "single_costs"}
    text = (out / "criterion_fidelity.md").read_text()
    assert "| input_block.conv1.conv | 4 |" in text and "removed at once" in text
    assert all("joint_cost" in result["fidelity"][c]["lowest"] for c in (*script.GLOBAL_CRITERIA, "single_costs"))
    with pytest.raises(SystemExit, match=r"\['nope'\] are not prunable groups"):
        script.main([str(root), str(checkpoint), "--out", str(out), "--groups", "nope",
                     *[a for o in overrides for a in ("--set", o)]])
    with pytest.raises(SystemExit, match="does not exist"):
        script.main([str(root), str(tmp_path / "missing.pt"), "--out", str(out)])
