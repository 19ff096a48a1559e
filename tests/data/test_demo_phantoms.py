"""
The demo phantoms: written in the real layouts, read back by the real readers, realistic, non-degenerate, and too
hard for a single intensity threshold (raw or after per-image standardisation), so a network must learn shape.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_pruning.data import (
    best_threshold_dice,
    brain_phantom,
    kidney_phantom,
    read_kits,
    read_kvasir_seg,
    read_msd,
    write_brain_phantoms,
    write_kidney_phantoms,
    write_polyp_phantoms,
)
from monai_pruning.data.demo_data import DEMO_WRITERS

# Enough cases for stable statistics, few enough to keep the test set fast; the default sizes are checked elsewhere.
SAMPLE = {"polyp": 16, "kidney": 6, "brain": 6}
WRITERS = {"polyp": write_polyp_phantoms, "kidney": write_kidney_phantoms, "brain": write_brain_phantoms}
READERS = {"polyp": read_kvasir_seg, "kidney": read_kits, "brain": read_msd}


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """Per task: the reader's items, (image, label) arrays read back from disk, affines, seconds per case."""
    out = {}
    for task, writer in WRITERS.items():
        root = tmp_path_factory.mktemp(task)
        start = time.perf_counter()
        writer(root, num_cases=SAMPLE[task], seed=0)
        per_case = (time.perf_counter() - start) / SAMPLE[task]
        items = READERS[task](root)
        arrays, affines = [], []
        for item in items:
            if task == "polyp":
                arrays.append((np.asarray(Image.open(item["image"])), np.asarray(Image.open(item["label"]))))
                affines.append(None)
            else:
                image, label = nib.load(item["image"]), nib.load(item["label"])
                arrays.append((np.asarray(image.dataobj), np.asarray(label.dataobj)))
                affines.append(image.affine)
        out[task] = {"root": root, "items": items, "arrays": arrays, "affines": affines, "per_case": per_case}
    return out


def _binary(task: str, label: np.ndarray) -> np.ndarray:
    return label[..., 0] > 127 if task == "polyp" else label > 0


@pytest.mark.parametrize("task", ["polyp", "kidney", "brain"])
def test_phantoms_are_read_back_by_the_real_reader(phantoms, task):
    assert len(phantoms[task]["items"]) == SAMPLE[task]


@pytest.mark.parametrize("task", ["polyp", "kidney", "brain"])
def test_single_threshold_cannot_segment_phantoms(phantoms, task):
    pairs = [(image.astype(np.float32), _binary(task, label)) for image, label in phantoms[task]["arrays"]]
    assert best_threshold_dice(pairs) < 0.5
    standardised = [((i - i.mean()) / i.std(), m) for i, m in pairs]
    assert best_threshold_dice(standardised) < 0.5


@pytest.mark.parametrize(
    "task, low, high, present",
    [("polyp", 0.02, 0.3, 0.75), ("kidney", 0.003, 0.05, 1.0), ("brain", 0.0005, 0.03, 1.0)],
)
def test_foreground_fraction_is_sensible_and_present_in_most_cases(phantoms, task, low, high, present):
    fractions = np.array([_binary(task, label).mean() for _, label in phantoms[task]["arrays"]])
    assert low <= fractions.mean() <= high
    assert (fractions > 0).mean() >= present
    assert fractions.max() < 0.5  # background is always present


@pytest.mark.parametrize("task", ["polyp", "kidney", "brain"])
def test_generation_of_the_default_set_takes_seconds(phantoms, task):
    default_cases = DEMO_WRITERS[task][1]
    assert phantoms[task]["per_case"] * default_cases < 30.0


def test_polyp_frames_look_like_kvasir_seg(phantoms):
    sizes = set()
    for image, mask in phantoms["polyp"]["arrays"]:
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert mask.shape == image.shape  # 3-channel JPEG mask of the frame's size
        assert 200 <= image.shape[0] <= 320 and 200 <= image.shape[1] <= 320 and image.shape[0] != image.shape[1]
        assert len(np.unique(mask)) > 2  # JPEG compression noise, as in the real masks
        red, green, blue = (image[..., c].astype(float).mean() for c in range(3))
        assert red > green and red > blue  # pinkish mucosa
        sizes.add(image.shape[:2])
    assert len(sizes) > len(phantoms["polyp"]["arrays"]) // 2


def test_polyp_colour_alone_does_not_separate_polyp_from_mucosa(phantoms):
    gaps = []
    for image, mask in phantoms["polyp"]["arrays"]:
        fg = _binary("polyp", mask)
        if fg.any():
            inside, outside = image[fg].astype(float), image[~fg & (image.sum(-1) > 30)].astype(float)
            gaps.append(np.abs(inside.mean(0) - outside.mean(0)).max() / outside.std(0).mean())
    assert np.median(gaps) < 1.0


def test_kidney_volumes_are_ct_in_hounsfield_units_with_mm_spacing(phantoms):
    tumours = 0
    for (hu, label), affine in zip(phantoms["kidney"]["arrays"], phantoms["kidney"]["affines"]):
        assert hu.dtype == np.int16 and label.dtype == np.uint8
        assert 56 <= hu.shape[0] <= 72 and 40 <= hu.shape[2] <= 56
        assert np.all((np.abs(np.diag(affine)[:3]) > 3.0) & (np.abs(np.diag(affine)[:3]) < 7.0))
        assert hu.min() >= -1024 and np.percentile(hu, 5) < -800  # air
        assert hu.max() > 400  # bone
        assert 30 < np.median(hu[label == 1]) < 150  # enhancing parenchyma
        assert set(np.unique(label)) <= {0, 1, 2, 3}
        tumours += bool((label == 2).any())
    assert tumours >= len(phantoms["kidney"]["arrays"]) // 2


def test_kidney_has_distractors_of_similar_density_outside_the_kidneys(phantoms):
    for hu, label in phantoms["kidney"]["arrays"]:
        kidney = np.median(hu[label == 1])
        similar_outside = np.count_nonzero((np.abs(hu - kidney) < 15) & (label == 0))
        assert similar_outside > 2 * np.count_nonzero(label == 1)


def test_brain_volumes_are_msd_t1w_with_positive_intensities(phantoms):
    meta = json.loads((Path(phantoms["brain"]["root"]) / "dataset.json").read_text())
    assert meta["modality"] == {"0": "T1w"} and meta["labels"] == {"0": "background", "1": "lesion"}
    assert meta["numTraining"] == SAMPLE["brain"]
    for (t1, lesion), affine in zip(phantoms["brain"]["arrays"], phantoms["brain"]["affines"]):
        assert t1.shape == (48, 56, 48) and lesion.shape == t1.shape
        assert np.all((np.abs(np.diag(affine)[:3]) > 3.0) & (np.abs(np.diag(affine)[:3]) < 4.5))
        assert t1.min() >= 0 and set(np.unique(lesion)) <= {0, 1}


def test_brain_lesions_have_look_alikes_elsewhere_in_the_head(phantoms):
    for t1, lesion in phantoms["brain"]["arrays"]:
        fg = lesion > 0
        low, high = np.percentile(t1[fg], [25, 75])
        look_alike = np.count_nonzero((t1 >= low) & (t1 <= high) & ~fg)
        assert look_alike > 2 * np.count_nonzero(fg)


def test_same_seed_gives_identical_volumes_and_other_seeds_differ():
    first = kidney_phantom(np.random.default_rng([0, 1]))
    again = kidney_phantom(np.random.default_rng([0, 1]))
    other = kidney_phantom(np.random.default_rng([1, 1]))
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[0].shape != other[0].shape or not np.array_equal(first[0], other[0])
    assert np.array_equal(brain_phantom(np.random.default_rng(3))[0], brain_phantom(np.random.default_rng(3))[0])


def test_writing_more_cases_keeps_the_first_ones(tmp_path):
    write_polyp_phantoms(tmp_path / "a", num_cases=2, seed=7)
    write_polyp_phantoms(tmp_path / "b", num_cases=3, seed=7)
    for name in ("images", "masks"):
        first = (tmp_path / "a" / name / "phantom_polyp_0001.jpg").read_bytes()
        assert first == (tmp_path / "b" / name / "phantom_polyp_0001.jpg").read_bytes()
