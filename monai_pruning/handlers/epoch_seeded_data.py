"""
The training data stream as a function of (seed, epoch): the same batches and augmentations in epoch k whether the
run got there uninterrupted, was resumed from a checkpoint, or ran extra passes over the loader on the way.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from monai.data.utils import set_rnd
from monai.utils import IgniteInfo, min_version, optional_import

from monai_pruning.config_values import ConfigValueError, read_flag
from monai_pruning.distributed import rank

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["EpochSeededData", "epoch_seeds", "loader_generators", "random_transforms", "DataStreamState"]


def epoch_seeds(seed: int, epoch: int, process: int = 0) -> dict[str, int]:
    """
    Independent seeds for the random streams of one epoch, mixed from ``(seed, epoch, process)`` by numpy's
    ``SeedSequence`` (nearby inputs give unrelated seeds): ``"loader"`` (shuffle order, worker base seed),
    ``"transforms"`` (random augmentations), ``"torch"``, ``"numpy"`` and ``"python"`` (the global generators).
    """
    words = np.random.SeedSequence([int(seed), int(epoch), int(process)]).generate_state(5, dtype=np.uint64)
    names = ("loader", "transforms", "torch", "numpy", "python")
    seeds = {name: int(word) for name, word in zip(names, words)}
    seeds["numpy"] %= 2**32  # numpy's global seed is 32-bit
    return seeds


def loader_generators(loader: Any) -> list[torch.Generator]:
    """
    The torch generators a data loader draws from: its own ``generator`` (the base seed of its workers; the shuffle
    order of the ``RandomSampler`` that ``shuffle=True`` builds) and any other generator of its sampler or batch
    sampler. Empty for a plain list of batches or a loader that draws from torch's global generator.
    """
    found: list[torch.Generator] = []
    batch_sampler = getattr(loader, "batch_sampler", None)
    for owner in (loader, getattr(loader, "sampler", None), batch_sampler, getattr(batch_sampler, "sampler", None)):
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
    return found


def random_transforms(obj: Any) -> list[Any]:
    """
    Every object reachable from ``obj`` (a dataset, a ``Compose``) through attributes, lists and tuples that holds a
    numpy ``RandomState`` as ``R``, as MONAI's random transforms and ``Compose`` do: the objects whose states decide
    the augmentations drawn in this process. Tensors and arrays are not searched.
    """
    found: list[Any] = []
    seen: set[int] = set()
    pending = [obj]
    while pending:
        item = pending.pop()
        if isinstance(item, (torch.Tensor, np.ndarray, str, bytes, dict)) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, (list, tuple)):
            pending.extend(reversed(item))
            continue
        attributes = getattr(item, "__dict__", None)
        if not isinstance(attributes, dict):
            continue
        if isinstance(getattr(item, "R", None), np.random.RandomState):
            found.append(item)
        pending.extend(value for key, value in reversed(list(attributes.items())) if not key.startswith("__"))
    return found


class DataStreamState:
    """
    A snapshot of a data loader's random streams in this process (its generators, the states of its dataset's random
    transforms) and of the global generators of numpy and Python, put back by :meth:`restore`: an extra pass over the
    loader (scoring) between them leaves the training data stream where it was. Torch's global generator is not
    included (``torch.random.fork_rng`` covers it).
    """

    def __init__(self, loader: Any = None) -> None:
        self.generators = [(g, g.get_state()) for g in loader_generators(loader)] if loader is not None else []
        dataset = getattr(loader, "dataset", None)
        transforms = random_transforms(dataset) if dataset is not None else []
        self.transforms = [(t, t.R, t.R.get_state(), "R" in vars(t)) for t in transforms]
        self.numpy_state = np.random.get_state()
        self.python_state = random.getstate()

    def restore(self) -> None:
        """Put every saved state back (also the ``RandomState`` objects a reseeding may have replaced)."""
        for generator, state in self.generators:
            generator.set_state(state)
        for transform, generator, state, own in self.transforms:
            if own:
                transform.R = generator
            elif "R" in vars(transform):
                del transform.R
            generator.set_state(state)
        np.random.set_state(self.numpy_state)
        random.setstate(self.python_state)


class EpochSeededData:
    """
    Reseeds the training data stream at the start of every epoch from ``(seed, epoch, rank)``.

    A data loader seeded once and MONAI's random transforms (each with its own numpy ``RandomState``, seeded when the
    ``Compose`` is built) move on with every draw: a run resumed at epoch k would start them from the seed again and
    see epoch 1's batches and augmentations, and any extra pass over the loader (TaylorFO scoring) would shift every
    later epoch. Deriving each epoch's state from ``(seed, epoch)`` makes epoch k the same in every case, with
    nothing to save in the checkpoint. At ``Events.EPOCH_STARTED`` (before the epoch's iterator is made) it reseeds
    the following, and once more if the previous epoch's iterator then reports its end
    (``Events.DATALOADER_STOP_ITERATION`` before the epoch's first batch): Ignite asks that iterator for one more
    batch, and torch's ``RandomSampler`` draws a further permutation on its way out, which a resumed run (with no
    such iterator) would not:

    - the loader's generators (:func:`loader_generators`): the shuffle order, and the base seed from which MONAI's
      ``worker_init_fn`` seeds the random transforms of each worker process;
    - the random transforms of the loader's dataset, used when the loader has no workers (``set_rnd``, as MONAI's
      ``DataLoader`` does once when it is built: a ``Compose`` reseeds its members);
    - with ``global_rng``: torch's (CPU and every CUDA device), numpy's and Python's global generators, which dropout,
      a sampler without a generator and transforms without their own state draw from.

    Under ``torchrun`` the rank is mixed in, so every rank augments differently; a ``DistributedSampler`` orders the
    data by its own ``seed`` and the epoch (set by MONAI's trainer). ``persistent_workers=True`` with workers is
    refused: such workers keep their transforms' states from epoch to epoch, out of reach of the main process.

    Its place among the trainer's handlers does not matter to the pruning handlers: what they run at epoch start
    (TaylorFO's validation before training) leaves every random stream as it was. Let it reseed the loader the
    trainer iterates (the default).

    Args:
        seed: base seed, an int >= 0 (the bundle's ``seed``).
        dataloader: the loader to reseed; None: the trainer's ``engine.state.dataloader`` at every epoch.
        global_rng: also reseed the global generators of torch, numpy and Python.

    Example (bundle config, in the trainer's handlers)::

        {"_target_": "monai_pruning.handlers.EpochSeededData", "seed": "@seed"}
    """

    def __init__(self, seed: int = 0, dataloader: Any = None, global_rng: bool = True) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"EpochSeededData: `seed` must be an int >= 0, got {seed!r}.")
        try:
            global_rng = read_flag(global_rng, "global_rng")
        except ConfigValueError as err:
            raise ValueError(f"EpochSeededData: {err}") from None
        if dataloader is not None:
            _check_loader(dataloader)
        self.seed = seed
        self.dataloader = dataloader
        self.global_rng = global_rng
        self._before_first_batch = False

    def attach(self, engine: Engine) -> None:
        """Reseed at every ``Events.EPOCH_STARTED`` of ``engine``; its loader is checked now when it is known."""
        loader = self.dataloader if self.dataloader is not None else getattr(engine, "data_loader", None)
        if loader is not None:
            _check_loader(loader)
        engine.add_event_handler(Events.EPOCH_STARTED, self)
        engine.add_event_handler(Events.DATALOADER_STOP_ITERATION, self._stale_iterator_ended)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_drawn)

    def __call__(self, engine: Engine) -> None:
        """Epoch start: every stream to its state for this epoch."""
        self.reseed(int(engine.state.epoch), engine.state.dataloader if self.dataloader is None else self.dataloader)
        self._before_first_batch = True

    def _stale_iterator_ended(self, engine: Engine) -> None:
        if self._before_first_batch:  # the last epoch's iterator drew on its way out: start this epoch again
            self(engine)

    def _batch_drawn(self, engine: Engine) -> None:
        self._before_first_batch = False

    def reseed(self, epoch: int, loader: Any) -> dict[str, int]:
        """Set every stream of ``loader`` (and the global ones) to its state for ``epoch``; returns the seeds."""
        _check_loader(loader)
        seeds = epoch_seeds(self.seed, epoch, rank())
        for index, generator in enumerate(loader_generators(loader)):
            generator.manual_seed((seeds["loader"] + index) % 2**64)
        dataset = getattr(loader, "dataset", None)
        if dataset is not None:
            set_rnd(dataset, seeds["transforms"])
        if self.global_rng:
            torch.manual_seed(seeds["torch"])
            np.random.seed(seeds["numpy"])
            random.seed(seeds["python"])
        return seeds


def _check_loader(loader: Any) -> None:
    if getattr(loader, "persistent_workers", False) and getattr(loader, "num_workers", 0) > 0:
        raise ValueError(
            "EpochSeededData: the training DataLoader has persistent_workers=True, whose workers keep their random "
            "transforms' states across epochs where they cannot be reseeded; set persistent_workers=False."
        )
