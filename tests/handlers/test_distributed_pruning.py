"""
The pruning handlers under DistributedDataParallel: two CPU processes (gloo), each with its own data.

Every worker saves what it ended with; the assertions run here, in the test process. Identical parameters on both
ranks after training past a cut can only come from gradients synchronised by a wrapper that knows the new
parameters, since the ranks see different images (checked too).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from ignite.engine import Events
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import MeanDice, ValidationHandler, from_engine
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from monai_pruning.criteria import DeltaPruneAccumulator, PerSampleLoss
from monai_pruning.distributed import sum_each_over_ranks
from monai_pruning.engine import ChannelPruner
from monai_pruning.handlers.feature_taps import FeatureTaps
from monai_pruning.handlers.pruning_base import HISTORY_JSON, PruningHandlerError
from monai_pruning.handlers.sauron_pruning import SauronPruning
from monai_pruning.handlers.taylorfo_pruning import TaylorFOPruning
from monai_pruning.handlers.taylorfo_scoring import score_channels, summed_weight_gradients

from process_groups import gloo_group, run_ranks

WORLD = 2
SHAPE = (2, 1, 32, 32)

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=1, norm="batch")


def _rank_data(rank: int, batches: int = 3) -> list[dict]:
    """Different images on every rank, the same on every call."""
    generator = torch.Generator().manual_seed(100 + rank)
    images = torch.randn((batches * SHAPE[0], *SHAPE[1:]), generator=generator)
    labels = (images.roll(1, dims=-1) > 0.5).float()
    return [{"image": images[i : i + SHAPE[0]], "label": labels[i : i + SHAPE[0]]} for i in range(0, len(images), 2)]


def _evaluator(wrapper: nn.Module, rank: int) -> SupervisedEvaluator:
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=_rank_data(10 + rank, batches=1),
        network=wrapper,
        postprocessing=lambda data: {**data, "pred": (data["pred"].argmax(1, keepdim=True) == 1).float()},
        key_val_metric={"val_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        decollate=False,
    )


def _trainer(wrapper: nn.Module, evaluator: SupervisedEvaluator, handler, rank: int, epochs: int):
    return SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=_rank_data(rank),
        network=wrapper,
        optimizer=torch.optim.Adam(wrapper.module.parameters(), lr=0.01),
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True),
        train_handlers=[ValidationHandler(validator=evaluator, interval=1), handler],
        decollate=False,
    )


def _worker(rank: int, init_file: str, out: str, method: str) -> None:
    os.environ["LOCAL_RANK"] = str(rank)  # as torchrun sets it; Ignite warns without
    torch.set_num_threads(1)
    with gloo_group(init_file, rank, WORLD):
        net = _unet()
        widths_before = sum(ChannelPruner(net, SHAPE).widths().values())
        wrapper = nn.parallel.DistributedDataParallel(net)
        output_dir = Path(out) / f"rank{rank}"
        evaluator = _evaluator(wrapper, rank)
        common = {"example_shape": SHAPE, "output_dir": output_dir, "plot": False, "validator": evaluator}
        if method == "sauron":
            handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, seed=3, **common)
        elif method == "sauron_target":  # the first cut is limited to the target, then pruning stops
            handler = SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, seed=3, target_macs_reduction=0.1, **common)
        elif method == "taylorfo":
            handler = TaylorFOPruning(prune_count=6, score_batches=2, tolerance=None, **common)
        elif method == "weight_gradient":  # its weight gradients summed over the ranks in one collective
            handler = TaylorFOPruning(criterion="weight_gradient", prune_count=6, score_batches=2, tolerance=None,
                                      **common)
        else:  # "rollback": the first validation after the cut fails, the cut is undone
            handler = TaylorFOPruning(prune_count=6, score_batches=2, tolerance=0.0, baseline_metric=1.01, **common)
        trainer = _trainer(wrapper, evaluator, handler, rank, epochs=3)
        losses: list[float] = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(e.state.output["loss"].item()))
        trainer.run()
        torch.save(
            {
                "state": {k: v.detach().clone() for k, v in net.state_dict().items()},
                "widths_before": widths_before,
                "widths": handler.history.rows[-1]["widths"],
                "first_loss": losses[0],
                "wrapper_replaced": trainer.network is not wrapper,
                "wraps_the_network": isinstance(trainer.network, nn.parallel.DistributedDataParallel)
                and trainer.network.module is net,
                "validator_follows": evaluator.network is trainer.network,
                "events": [row.get("events") for row in handler.history.rows],
            },
            Path(out) / f"result{rank}.pt",
        )


def _run(method: str, tmp_path: Path) -> list[dict]:
    run_ranks(_worker, WORLD, str(tmp_path / "init"), str(tmp_path), method)
    return [torch.load(tmp_path / f"result{r}.pt", weights_only=True) for r in range(WORLD)]


def _assert_replicas_identical(results: list[dict]) -> None:
    assert results[0]["first_loss"] != results[1]["first_loss"]  # the ranks trained on different data
    assert results[0]["widths"] == results[1]["widths"]
    for name, value in results[0]["state"].items():
        assert torch.equal(value, results[1]["state"][name]), name
    for result in results:
        assert result["wraps_the_network"] and result["validator_follows"]


@pytest.mark.parametrize("method", ["sauron", "sauron_target", "taylorfo", "weight_gradient"])
def test_ddp_ranks_cut_the_same_channels_and_keep_identical_replicas_after_the_cut(method, tmp_path):
    results = _run(method, tmp_path)
    _assert_replicas_identical(results)
    assert sum(results[0]["widths"].values()) < results[0]["widths_before"]
    assert all(result["wrapper_replaced"] for result in results)
    # only rank 0 writes the records
    assert (tmp_path / "rank0" / HISTORY_JSON).is_file()
    assert not (tmp_path / "rank1").exists()
    rows = json.loads((tmp_path / "rank0" / HISTORY_JSON).read_text())
    assert len(rows) == 3
    if method == "sauron_target":
        assert rows[0]["removed_now"] > 0 and 0.8 < rows[0]["macs_ratio"] <= 0.9
        assert [row["removed_now"] for row in rows[1:]] == [0, 0] and rows[2]["penalty"] is None


def test_ddp_rollback_restores_the_validated_network_on_every_rank_and_training_stays_in_sync(tmp_path):
    results = _run("rollback", tmp_path)
    _assert_replicas_identical(results)
    assert sum(results[0]["widths"].values()) == results[0]["widths_before"]
    assert any("rollback" in (events or "") for events in results[0]["events"])


def _summed_worker(rank: int, init_file: str, out: str, compute) -> None:
    """Save ``compute([rank])`` (this rank's data, summed over the group) as ``<out>/rank<rank>.pt``."""
    torch.set_num_threads(1)
    with gloo_group(init_file, rank, WORLD):
        torch.save(compute([rank]), Path(out) / f"rank{rank}.pt")


def _summed_on_ranks(compute, tmp_path: Path) -> list[dict[str, torch.Tensor]]:
    run_ranks(_summed_worker, WORLD, str(tmp_path / "init"), str(tmp_path), compute)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def _signed_scores(ranks: list[int]) -> dict[str, torch.Tensor]:
    """Signed TaylorFO scores of the seeded network over the data of ``ranks``, summed over the process group."""
    net = _unet()
    handler = TaylorFOPruning(example_shape=SHAPE, reduction="signed")
    handler.pruner = ChannelPruner(net, SHAPE)
    taps = FeatureTaps(net, handler.pruner.graph.consumer_taps(), gradients=True)
    batches = [(d["image"], d["label"]) for r in ranks for d in _rank_data(r)]
    # the scoring loss the bundles ship: their training loss (its Dice pools the batch) applied to each sample on its
    # own, so that (with BatchNorm in eval mode while scoring) splitting the batches over the ranks cannot change it
    loss = PerSampleLoss(DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True))
    return score_channels(net, taps, batches, loss_function=loss, reduction="signed", merge=handler.sum_accumulators)


def test_ddp_scores_summed_over_ranks_equal_the_scores_of_all_their_batches_in_one_process(tmp_path):
    per_rank = _summed_on_ranks(_signed_scores, tmp_path)
    alone = _signed_scores(list(range(WORLD)))
    assert set(per_rank[0]) == set(alone)
    for group, expected in alone.items():
        assert torch.equal(per_rank[0][group], per_rank[1][group])
        torch.testing.assert_close(per_rank[0][group], expected, rtol=1e-5, atol=1e-7)
    # the absolute value of the summed signed scores, not the sum of each rank's absolute values
    own = [_signed_scores([rank]) for rank in range(WORLD)]
    assert any(not torch.allclose(alone[g], own[0][g] + own[1][g], rtol=1e-3) for g in alone)


def _weight_gradients(ranks: list[int]) -> dict[str, torch.Tensor]:
    """Conv weight gradients of the training loss over the data of ``ranks``, summed over the process group."""
    net = _unet()
    convs = [name for name, module in net.named_modules() if isinstance(module, nn.Conv2d | nn.ConvTranspose2d)]
    batches = [(d["image"], d["label"]) for r in ranks for d in _rank_data(r)]
    grads = summed_weight_gradients(net, convs, batches, DiceCELoss(to_onehot_y=True, softmax=True))
    return sum_each_over_ranks(grads)


def test_ddp_weight_gradients_summed_over_ranks_equal_those_of_all_their_batches_in_one_process(tmp_path):
    """What the weight_gradient criterion ranks by under DDP: every rank's batches, as one process would see them."""
    per_rank = _summed_on_ranks(_weight_gradients, tmp_path)
    alone = _weight_gradients(list(range(WORLD)))
    own = _weight_gradients([0])
    for name, expected in alone.items():
        assert torch.equal(per_rank[0][name], per_rank[1][name]) and per_rank[0][name].shape == expected.shape
        torch.testing.assert_close(per_rank[0][name], expected, rtol=1e-5, atol=1e-7)
    assert any(not torch.allclose(own[name], alone[name]) for name in alone)  # rank 1's batches counted


def _maps(rank: int) -> torch.Tensor:
    return torch.rand((2, 6, 8, 8), generator=torch.Generator().manual_seed(50 + rank))


def _first_reference(seed: int) -> int:
    return int(torch.randint(6, (1,), generator=torch.Generator().manual_seed(seed)).item())


def _delta_prune_worker(rank: int, init_file: str, out: str) -> None:
    result = {}
    with gloo_group(init_file, rank, WORLD):
        # the same seed on every rank: one window over both ranks' samples
        for case, seed in (("same", 0), ("different", 0 if rank == 0 else _differing_seed())):
            handler = SauronPruning(seed=seed)
            handler.pruner = SimpleNamespace(widths=lambda: {"g": 6})
            accumulator = DeltaPruneAccumulator(handler.generator)
            accumulator.update(_maps(rank))
            try:
                handler.sum_accumulators({"g": accumulator})
                scores, reference = accumulator.compute()
                result[case] = {"scores": scores.tolist(), "reference": reference, "samples": accumulator.num_samples}
            except PruningHandlerError as err:
                result[case] = {"error": str(err)}
    (Path(out) / f"delta{rank}.json").write_text(json.dumps(result))


def _differing_seed() -> int:
    return next(seed for seed in range(1, 100) if _first_reference(seed) != _first_reference(0))


def test_ddp_delta_prune_windows_merge_over_ranks_and_differing_references_fail_on_every_rank(tmp_path):
    run_ranks(_delta_prune_worker, WORLD, str(tmp_path / "init"), str(tmp_path))
    results = [json.loads((tmp_path / f"delta{r}.json").read_text()) for r in range(WORLD)]
    alone = DeltaPruneAccumulator(torch.Generator().manual_seed(0))
    for rank in range(WORLD):
        alone.update(_maps(rank))
    scores, reference = alone.compute()
    for result in results:
        assert result["same"]["reference"] == reference and result["same"]["samples"] == 4
        torch.testing.assert_close(torch.tensor(result["same"]["scores"]), scores)
        assert "different reference channels" in result["different"]["error"]
