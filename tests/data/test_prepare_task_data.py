"""The bundles' data entry point: demo rule, layout detection, checks, split file reuse and one-line errors."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from monai_pruning.data import DatasetError, prepare_task_data
from monai_pruning.data import demo_data


def _kvasir(root: Path, count: int) -> Path:
    for i in range(count):
        for folder in ("images", "masks"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 10, 3), 200, dtype=np.uint8)).save(root / folder / f"k{i:02d}.jpg")
    return root


def _kits_case(root: Path, name: str, label_value: int = 1) -> None:
    (root / name).mkdir(parents=True, exist_ok=True)
    label = np.zeros((5, 5, 4), dtype=np.uint8)
    label[2, 2, 2] = label_value
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 4), dtype=np.int16), np.eye(4)), root / name / "imaging.nii.gz")
    nib.save(nib.Nifti1Image(label, np.eye(4)), root / name / "segmentation.nii.gz")


def test_missing_demo_dir_gets_phantoms_in_real_layout_with_loud_warning(tmp_path, caplog):
    demo = tmp_path / "bundle" / "data" / "polyp"
    with caplog.at_level(logging.WARNING, logger="monai_pruning.data"):
        data = prepare_task_data("polyp", str(demo), str(demo), str(tmp_path / "out"), demo_cases=5)
    assert (demo / "images").is_dir() and (demo / "masks").is_dir()
    assert data["info"]["synthetic"] is True and data["info"]["layout"] == "kvasir"
    assert data["info"]["num_cases"] == 5
    assert sum(len(data[name]) for name in ("training", "validation", "test")) == 5
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "SYNTHETIC" in message and "dataset_dir" in message


def test_demo_phantoms_are_not_regenerated_when_present(tmp_path, monkeypatch):
    demo = tmp_path / "demo"
    prepare_task_data("polyp", str(demo), str(demo), demo_cases=3)
    before = {p: p.stat().st_mtime_ns for p in demo.rglob("*.jpg")}
    monkeypatch.setattr(demo_data, "DEMO_WRITERS", {})  # any regeneration would now fail
    data = prepare_task_data("polyp", str(demo), str(demo), demo_cases=9)
    assert data["info"]["synthetic"] and data["info"]["num_cases"] == 3
    assert {p: p.stat().st_mtime_ns for p in demo.rglob("*.jpg")} == before


def test_typo_in_dataset_dir_is_an_error_and_writes_nothing(tmp_path):
    demo = tmp_path / "demo"
    with pytest.raises(DatasetError, match=r"dataset_dir does not exist: .*demoo .*only to demo_dir"):
        prepare_task_data("kidney", str(tmp_path / "demoo"), str(demo))
    assert not demo.exists() and not (tmp_path / "demoo").exists()


def test_equal_paths_are_compared_after_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = prepare_task_data("brain", "./data/../data/brain", str(tmp_path / "data" / "brain"), demo_cases=3)
    assert data["info"]["synthetic"] and data["info"]["dataset_dir"] == str(tmp_path / "data" / "brain")


def test_existing_folder_without_dataset_lists_layouts_looked_for(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no polyp dataset in .*empty: looked for Kvasir-SEG .*; CVC-ClinicDB"):
        prepare_task_data("polyp", str(tmp_path / "empty"), str(tmp_path / "demo"))


def test_real_data_in_demo_dir_is_used_as_is(tmp_path):
    demo = _kvasir(tmp_path / "demo", 5)
    data = prepare_task_data("polyp", str(demo), str(demo))
    assert data["info"]["synthetic"] is False
    assert not (demo / demo_data.PHANTOM_MARKER).exists()
    assert sorted(item["case"] for name in ("training", "validation", "test") for item in data[name]) == [
        f"k{i:02d}" for i in range(5)
    ]


def test_demo_phantoms_cannot_satisfy_a_different_explicit_layout(tmp_path):
    with pytest.raises(DatasetError, match=r"demo phantoms exist only in the 'msd' layout, not 'atlas'"):
        prepare_task_data("brain", str(tmp_path / "d"), str(tmp_path / "d"), layout="atlas")


def test_default_demo_sizes_are_80_polyp_24_kidney_24_brain(tmp_path, monkeypatch):
    asked = {}

    def record(task):
        def writer(root, num_cases, seed):
            asked[task] = num_cases
            raise RuntimeError("stop after recording")

        return writer

    for task in ("polyp", "kidney", "brain"):
        monkeypatch.setitem(demo_data.DEMO_WRITERS, task, (record(task), demo_data.DEMO_WRITERS[task][1]))
        with pytest.raises(RuntimeError):
            prepare_task_data(task, str(tmp_path / task), str(tmp_path / task))
    assert asked == {"polyp": 80, "kidney": 24, "brain": 24}


def test_concurrent_callers_write_the_demo_set_once(tmp_path, monkeypatch):
    calls = []
    writer, size = demo_data.DEMO_WRITERS["polyp"]
    monkeypatch.setitem(demo_data.DEMO_WRITERS, "polyp", (lambda *a, **k: calls.append(1) or writer(*a, **k), size))
    demo, results = tmp_path / "demo", []
    threads = [
        threading.Thread(target=lambda: results.append(prepare_task_data("polyp", str(demo), str(demo), demo_cases=3)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 3
    assert all(r["test"] == results[0]["test"] for r in results)


def test_split_is_saved_and_reused_even_with_another_seed(tmp_path):
    root, out = _kvasir(tmp_path / "kvasir", 10), tmp_path / "out"
    first = prepare_task_data("polyp", str(root), output_dir=str(out), seed=1)
    saved = json.loads((out / "split.json").read_text())
    assert saved["seed"] == 1 and saved["test"] == [item["case"] for item in first["test"]]
    second = prepare_task_data("polyp", str(root), output_dir=str(out), seed=2)
    assert second["info"]["split_reused"] is True
    assert all(first[name] == second[name] for name in ("training", "validation", "test"))
    assert (out / "dataset_check.json").is_file()


def test_same_seed_gives_same_split_in_fresh_output_dirs(tmp_path):
    root = _kvasir(tmp_path / "kvasir", 10)
    a = prepare_task_data("polyp", str(root), output_dir=str(tmp_path / "a"), seed=4)
    b = prepare_task_data("polyp", str(root), output_dir=str(tmp_path / "b"), seed=4)
    assert a["validation"] == b["validation"] and a["test"] == b["test"]


def test_saved_split_with_new_cases_is_reused_and_warns(tmp_path, caplog):
    root, out = _kvasir(tmp_path / "kvasir", 6), tmp_path / "out"
    first = prepare_task_data("polyp", str(root), output_dir=str(out))
    _kvasir(root, 8)
    with caplog.at_level(logging.WARNING, logger="monai_pruning.data"):
        second = prepare_task_data("polyp", str(root), output_dir=str(out))
    assert second["training"] == first["training"]
    assert "k06, k07" in caplog.text


def test_saved_split_naming_missing_cases_is_an_error(tmp_path):
    root, out = _kvasir(tmp_path / "kvasir", 6), tmp_path / "out"
    prepare_task_data("polyp", str(root), output_dir=str(out))
    for folder in ("images", "masks"):
        (root / folder / "k05.jpg").unlink()
    with pytest.raises(DatasetError, match=r"split.json names cases that are not in the dataset: 1 \(k05\)"):
        prepare_task_data("polyp", str(root), output_dir=str(out))


def test_msd_info_carries_dataset_json_modality_and_labels_and_checks_against_them(tmp_path):
    root = tmp_path / "Task04_Hippocampus"
    names = [f"hippocampus_{i:03d}" for i in range(5)]
    for i, name in enumerate(names):
        for folder in ("imagesTr", "labelsTr"):
            (root / folder).mkdir(parents=True, exist_ok=True)
        label = np.zeros((4, 5, 3), dtype=np.uint8)
        label[1, 1, 1] = 2
        nib.save(nib.Nifti1Image(np.ones((4, 5, 3), dtype=np.float32), np.eye(4)), root / "imagesTr" / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(label, np.eye(4)), root / "labelsTr" / f"{name}.nii.gz")
    meta = {
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "training": [{"image": f"./imagesTr/{n}.nii.gz", "label": f"./labelsTr/{n}.nii.gz"} for n in names],
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    info = prepare_task_data("brain", str(root))["info"]
    assert info["layout"] == "msd" and info["modality"] == {"0": "MRI"} and info["labels"]["2"] == "Posterior"
    meta["labels"] = {"0": "background", "1": "Anterior"}
    (root / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match=r"case hippocampus_000: label values \[0, 2\] .* expected set \[0, 1\]"):
        prepare_task_data("brain", str(root))


def test_kits_label_outside_0_to_3_is_an_error(tmp_path):
    for i in range(4):
        _kits_case(tmp_path, f"case_{i:05d}", label_value=4 if i == 2 else 2)
    with pytest.raises(DatasetError, match=r"case case_00002: label values \[0, 4\] .*\[0, 1, 2, 3\]"):
        prepare_task_data("kidney", str(tmp_path))


def test_too_few_cases_for_the_fractions_is_an_error(tmp_path):
    root = _kvasir(tmp_path / "kvasir", 2)
    with pytest.raises(DatasetError, match="the training split is empty: 2 cases with val_fraction=0.2"):
        prepare_task_data("polyp", str(root))


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"task": "liver"}, "unknown task 'liver'"),
        ({"layout": "msd"}, "layout 'msd' is not valid for task 'polyp'"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"demo_cases": 0}, "demo_cases must be a positive integer"),
        ({"val_fraction": 1.2}, "val_fraction must be a number in"),
        ({"dataset_dir": ""}, "dataset_dir must be a folder path"),
    ],
)
def test_bad_arguments_give_one_line_errors_naming_the_argument(tmp_path, kwargs, pattern):
    arguments = {"task": "polyp", "dataset_dir": str(_kvasir(tmp_path / "k", 5)), **kwargs}
    with pytest.raises(DatasetError, match=pattern) as error:
        prepare_task_data(**arguments)
    assert "\n" not in str(error.value)


def test_corrupt_file_error_is_one_line_without_chained_traceback(tmp_path):
    root = _kvasir(tmp_path / "k", 5)
    (root / "masks" / "k03.jpg").write_bytes(b"\xff\xd8\xff garbage\nwith a newline")
    with pytest.raises(DatasetError, match=r"cannot read .*masks/k03.jpg") as error:
        prepare_task_data("polyp", str(root))
    assert "\n" not in str(error.value) and error.value.__suppress_context__


def test_existing_demo_dir_with_unrelated_files_gets_phantoms_beside_them(tmp_path):
    demo = tmp_path / "demo"
    demo.mkdir()
    (demo / "README.txt").write_text("put data here")
    data = prepare_task_data("kidney", str(demo), str(demo), demo_cases=2, val_fraction=0.0, test_fraction=0.0)
    assert (demo / "README.txt").read_text() == "put data here"
    assert data["info"]["layout"] == "kits" and len(data["training"]) == 2 and data["test"] == []


def test_half_dataset_in_demo_dir_is_not_overwritten(tmp_path):
    demo = tmp_path / "demo"
    (demo / "images").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"cannot write demo phantoms into .*demo: images already there"):
        prepare_task_data("polyp", str(demo), str(demo), demo_cases=2)
    assert not any(p.name.startswith(".phantoms-") for p in demo.iterdir())


def test_folder_with_two_polyp_layouts_needs_explicit_layout(tmp_path):
    _kvasir(tmp_path, 5)
    for i in range(5):
        for folder in ("Original", "Ground Truth"):
            (tmp_path / folder).mkdir(exist_ok=True)
            Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(tmp_path / folder / f"{i}.png")
    with pytest.raises(DatasetError, match=r"several dataset layouts \(kvasir, cvc_clinicdb\): pass layout="):
        prepare_task_data("polyp", str(tmp_path))
    assert prepare_task_data("polyp", str(tmp_path), layout="cvc_clinicdb")["info"]["layout"] == "cvc_clinicdb"
