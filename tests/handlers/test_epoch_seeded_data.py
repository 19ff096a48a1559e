from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointLoader, CheckpointSaver, MeanSquaredError, from_engine
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from monai.transforms import Compose, RandFlipd, RandGaussianNoised, RandRotate90d
from torch import nn

from monai_pruning.engine import PruningRecord
from monai_pruning.handlers import EpochSeededData
from monai_pruning.handlers.epoch_seeded_data import epoch_seeds, loader_generators, random_transforms
from monai_pruning.handlers.sauron_pruning import SauronPruning
from monai_pruning.handlers.taylorfo_pruning import TaylorFOPruning

SHAPE = (2, 1, 16, 16)
SEED = 3
KEYS = ["image", "label"]


def _samples(count: int = 8) -> list[dict]:
    images = torch.rand((count, *SHAPE[1:]), generator=torch.Generator().manual_seed(7))
    return [{"image": image, "label": (image > 0.6).float()} for image in images]


def _loader(**kwargs) -> DataLoader:
    """As the bundles build it: random augmentations seeded by the run's seed, a shuffling loader with its generator."""
    transform = Compose(
        [
            RandFlipd(keys=KEYS, prob=0.5, spatial_axis=0),
            RandRotate90d(keys=KEYS, prob=0.5),
            RandGaussianNoised(keys="image", prob=0.5, std=0.1),
        ]
    )
    transform.set_random_state(SEED)
    dataset = CacheDataset(_samples(), transform=transform, progress=False)
    return DataLoader(dataset, batch_size=2, shuffle=True, generator=torch.Generator().manual_seed(SEED), **kwargs)


def _unet() -> nn.Module:
    torch.manual_seed(0)
    return UNet(2, 1, 2, channels=(8, 16, 32), strides=(2, 2), num_res_units=0, norm="batch")


def _handler(method: str):
    if method == "sauron":
        return SauronPruning(tau_start=0.6, tau_max=0.9, kappa=2, example_shape=SHAPE, plot=False)
    if method == "taylorfo":  # scores on the whole training loader after every epoch
        return TaylorFOPruning(prune_count=4, tolerance=None, example_shape=SHAPE, plot=False)
    return None


def _evaluator(net: nn.Module) -> SupervisedEvaluator:
    images = torch.rand(SHAPE, generator=torch.Generator().manual_seed(8))
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(
            [{"image": image, "label": torch.cat([image <= 0.5, image > 0.5]).float()} for image in images], batch_size=2
        ),
        network=net,
        key_val_metric={"val_mse": MeanSquaredError(output_transform=from_engine(["pred", "label"]))},
    )


def _run(epochs: int, method: str | None, seeded: bool = True, ckpt_dir=None, resume_from=None, **taylorfo):
    """
    Trains the bundles' way (shuffled augmented loader, DiceCELoss(batch=True)); returns the network, the pruning
    handler and, per epoch, each batch seen (images and labels) with torch's global random state when it was used.
    """
    net = _unet()
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)
    if taylorfo.pop("validate_first", False):
        taylorfo.update(validator=_evaluator(net), baseline_before_training=True, metric_mode="min")
    handler = TaylorFOPruning(example_shape=SHAPE, plot=False, tolerance=None, **taylorfo) if taylorfo else None
    handler = handler or _handler(method)
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=epochs,
        train_data_loader=_loader(),
        network=net,
        optimizer=optimizer,
        loss_function=DiceCELoss(to_onehot_y=True, softmax=True, squared_pred=True, batch=True),
        # as in the bundles: the reseeding listed before the pruning handler
        train_handlers=[h for h in (EpochSeededData(seed=SEED) if seeded else None, handler) if h is not None],
    )
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    trainer.add_event_handler(
        Events.ITERATION_STARTED,
        lambda e: seen.setdefault(e.state.epoch, []).append(
            (torch.cat([e.state.batch[k].as_tensor() for k in KEYS]), torch.get_rng_state())
        ),
    )
    if ckpt_dir is not None:
        save_dict = {"pruning": PruningRecord(net, optimizer), "model": net, "optimizer": optimizer, "trainer": trainer}
        if handler is not None:
            save_dict["pruner"] = handler
        CheckpointSaver(str(ckpt_dir), save_dict, save_interval=1, n_saved=None).attach(trainer)
        if resume_from is not None:
            CheckpointLoader(str(resume_from), dict(save_dict)).attach(trainer)
    trainer.run()
    return net, handler, seen


def _same_batches(first: list, second: list) -> bool:
    """The same tensors (batches, or batches with random states) in the same order."""
    pairs = [(a, b) for x, y in zip(first, second) for a, b in zip(x, y)] if first and isinstance(first[0], tuple) else (
        list(zip(first, second))
    )
    return len(first) == len(second) and all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize("method", ["sauron", "taylorfo"])
def test_a_run_resumed_from_its_checkpoint_sees_the_same_batches_and_ends_with_the_same_network(tmp_path, method):
    full_net, full, full_seen = _run(4, method, ckpt_dir=tmp_path / "full")
    assert sum(row["removed_now"] for row in full.history.rows[2:]) > 0  # cuts after the resume point
    assert not _same_batches(full_seen[3], full_seen[4])  # the data differ from epoch to epoch
    checkpoint = next((tmp_path / "full").glob("*epoch=2.pt"))
    resumed_net, resumed, resumed_seen = _run(4, method, ckpt_dir=tmp_path / "resumed", resume_from=checkpoint)
    assert sorted(resumed_seen) == [3, 4]
    for epoch in (3, 4):  # the same order and augmentations, although the resumed run started its streams anew
        assert _same_batches(resumed_seen[epoch], full_seen[epoch]), f"epoch {epoch}: other batches or random state"
    assert resumed.history.rows[-1]["widths"] == full.history.rows[-1]["widths"]
    assert resumed_net.state_dict().keys() == full_net.state_dict().keys()
    for key, value in full_net.state_dict().items():
        torch.testing.assert_close(resumed_net.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize(
    "seeded, taylorfo",
    [
        (True, {"prune_count": 2, "epoch_level": False, "score_batches": 1}),  # scored between two iterations
        (False, {"prune_count": 2, "score_batches": 2}),  # scored at epoch end, without the per-epoch reseeding
        (True, {"prune_count": 2, "score_batches": 2, "validate_first": True}),  # a validation before epoch 1
    ],
    ids=["iteration_level_scoring", "epoch_level_scoring_unseeded", "validated_before_training"],
)
def test_a_pruned_run_and_its_unpruned_control_train_on_the_same_batches(seeded, taylorfo):
    _, _, control = _run(3, None, seeded=seeded)
    _, handler, pruned = _run(3, None, seeded=seeded, **taylorfo)
    assert handler.steps > 0
    for epoch in (1, 2, 3):
        assert _same_batches(pruned[epoch], control[epoch]), f"epoch {epoch}: other batches or random state"


def test_reseeding_gives_an_epoch_the_same_batches_however_far_the_streams_moved_before():
    loader, seeding = _loader(), EpochSeededData(seed=SEED)
    seeding.reseed(5, loader)
    first = [batch["image"].as_tensor() for batch in loader]
    for _ in range(3):  # other epochs, extra passes
        list(loader)
    seeding.reseed(5, loader)
    assert _same_batches([batch["image"].as_tensor() for batch in loader], first)
    seeding.reseed(6, loader)
    assert not _same_batches([batch["image"].as_tensor() for batch in loader], first)
    other = EpochSeededData(seed=SEED + 1)
    other.reseed(5, loader)
    assert not _same_batches([batch["image"].as_tensor() for batch in loader], first)


def test_epoch_seeds_are_distinct_per_epoch_and_process_and_repeat_for_the_same_inputs():
    seeds = epoch_seeds(0, 1)
    assert epoch_seeds(0, 1) == seeds and len(set(seeds.values())) == len(seeds)
    assert epoch_seeds(0, 2) != seeds and epoch_seeds(0, 1, process=1) != seeds and epoch_seeds(1, 1) != seeds
    assert 0 <= seeds["numpy"] < 2**32


def test_the_loader_generator_and_every_random_transform_of_the_dataset_are_found():
    loader = _loader()
    assert loader_generators(loader) == [loader.generator]
    found = random_transforms(loader.dataset)
    assert loader.dataset.transform in found  # the Compose and its three random members
    names = {type(t).__name__ for t in found}  # a dictionary transform holds its array transform: both found
    assert names >= {"Compose", "RandFlipd", "RandRotate90d", "RandGaussianNoised", "RandGaussianNoise"}
    assert loader_generators([{"image": torch.zeros(1)}]) == []


def test_persistent_workers_and_bad_settings_are_refused_in_one_line():
    loader = _loader(num_workers=1, persistent_workers=True)
    with pytest.raises(ValueError, match="EpochSeededData: the training DataLoader has persistent_workers=True"):
        EpochSeededData(dataloader=loader)
    with pytest.raises(ValueError, match=r"EpochSeededData: `seed` must be an int >= 0, got -1"):
        EpochSeededData(seed=-1)
    with pytest.raises(ValueError, match=r"EpochSeededData: `global_rng` must be true or false, got 'yes'"):
        EpochSeededData(global_rng="yes")
