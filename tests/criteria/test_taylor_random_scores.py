from __future__ import annotations

import pytest
import torch

from monai_pruning.criteria.taylor import random_channel_scores, select_global_lowest

SIZES = {"enc": 8, "dec": 5, "mid": 12}


def _scores(seed: int, sizes=SIZES) -> dict[str, torch.Tensor]:
    return random_channel_scores(sizes, torch.Generator().manual_seed(seed))


def test_random_scores_are_reproducible_for_a_seed_and_differ_between_seeds():
    first, again, other = _scores(3), _scores(3), _scores(4)
    assert list(first) == list(SIZES)
    assert all(first[g].shape == (n,) and first[g].dtype == torch.float32 for g, n in SIZES.items())
    assert all(torch.equal(first[g], again[g]) for g in SIZES)
    assert not all(torch.equal(first[g], other[g]) for g in SIZES)
    values = torch.cat(list(first.values()))
    assert values.min() >= 0.0 and values.max() < 1.0 and values.unique().numel() == values.numel()


def test_random_scores_depend_on_the_group_sizes_only_not_on_their_order():
    reordered = _scores(3, dict(reversed(list(SIZES.items()))))
    assert all(torch.equal(reordered[g], _scores(3)[g]) for g in SIZES)


def test_successive_draws_from_one_generator_give_new_scores():
    generator = torch.Generator().manual_seed(0)
    first, second = random_channel_scores(SIZES, generator), random_channel_scores(SIZES, generator)
    assert not torch.equal(first["mid"], second["mid"])


def test_random_selection_keeps_every_group_at_its_floor():
    scores = _scores(1)
    chosen = select_global_lowest(scores, 100, min_channels=3)
    assert {g: n - len(chosen[g]) for g, n in SIZES.items()} == {g: 3 for g in SIZES}


@pytest.mark.parametrize(
    "channels, generator, message",
    [
        ([8, 5], torch.Generator(), "`channels` must be a dict"),
        ({"a": 0}, torch.Generator(), r"channels\['a'\] must be an int >= 1"),
        ({"a": 2.0}, torch.Generator(), r"channels\['a'\] must be an int >= 1"),
        ({"a": 2}, 0, "`generator` must be a torch.Generator"),
    ],
)
def test_bad_arguments_fail_with_a_message_naming_them(channels, generator, message):
    with pytest.raises((TypeError, ValueError), match=message):
        random_channel_scores(channels, generator)
