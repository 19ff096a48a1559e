"""PolypGen reader on tiny frames written in the release's layout (data_Cn/images_Cn, data_Cn/masks_Cn/NAME_mask)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_pruning.data import DatasetError, detect_layout, prepare_task_data, read_polypgen


def _picture(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12, 3), value, dtype=np.uint8)).save(path)


def _centre(root: Path, centre: str, names: tuple[str, ...]) -> Path:
    folder = root / f"data_{centre}"
    for name in names:
        _picture(folder / f"images_{centre}" / f"{name}.jpg")
        _picture(folder / f"masks_{centre}" / f"{name}_mask.jpg", value=0)
    return folder


def _release(root: Path) -> Path:
    _centre(root, "C1", ("100H0050", "100S0001"))
    _centre(root, "C2", ("EndoCV2021_001000",))
    _centre(root, "C10", ("EndoCV2021_C10_1",))
    return root


def test_polypgen_pairs_frames_with_their_name_mask_files_and_names_the_centre(tmp_path):
    items = read_polypgen(_release(tmp_path / "PolypGen"))
    assert [(item["centre"], item["case"]) for item in items] == [
        ("C1", "100H0050"),
        ("C1", "100S0001"),
        ("C2", "EndoCV2021_001000"),
        ("C10", "EndoCV2021_C10_1"),
    ]
    for item in items:
        assert Path(item["label"]).name == Path(item["image"]).stem + "_mask.jpg"


def test_polypgen_reads_one_centre_folder_and_a_wrapper_folder(tmp_path):
    _release(tmp_path / "wrapper" / "PolypGen")
    assert len(read_polypgen(tmp_path / "wrapper")) == 4
    assert [item["case"] for item in read_polypgen(tmp_path / "wrapper" / "PolypGen" / "data_C2")] == [
        "EndoCV2021_001000"
    ]


def test_polypgen_is_detected_as_a_polyp_layout(tmp_path):
    assert detect_layout("polyp", _release(tmp_path)) == "polypgen"
    assert detect_layout("polyp", tmp_path / "data_C1") == "polypgen"


def test_polypgen_frame_without_mask_is_refused_naming_the_frame(tmp_path):
    folder = _centre(tmp_path, "C3", ("C3_a", "C3_b"))
    (folder / "masks_C3" / "C3_b_mask.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images without a mask in .*masks_C3: 1 \(C3_b.jpg\)"):
        read_polypgen(tmp_path)


def test_polypgen_mask_not_named_name_mask_is_refused(tmp_path):
    folder = _centre(tmp_path, "C3", ("C3_a",))
    (folder / "masks_C3" / "C3_a_mask.jpg").rename(folder / "masks_C3" / "C3_a.jpg")
    with pytest.raises(DatasetError, match="without the '_mask' name ending .*C3_a.jpg"):
        read_polypgen(tmp_path)


def test_polypgen_same_frame_name_in_two_centres_is_refused(tmp_path):
    _centre(tmp_path, "C1", ("frame1",))
    _centre(tmp_path, "C2", ("frame1",))
    with pytest.raises(DatasetError, match="'frame1' appears in both C1 and C2"):
        read_polypgen(tmp_path)


def test_polypgen_folder_without_centres_is_refused(tmp_path):
    (tmp_path / "data_C1" / "images_C1").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no PolypGen layout"):
        read_polypgen(tmp_path)


def test_prepare_task_data_keeps_the_centre_and_accepts_empty_masks(tmp_path):
    data = prepare_task_data("polyp", str(_release(tmp_path / "PolypGen")), output_dir=str(tmp_path / "out"),
                             val_fraction=0.25, test_fraction=0.25)
    assert data["info"]["layout"] == "polypgen"
    assert not data["info"]["synthetic"]
    cases = data["training"] + data["validation"] + data["test"]
    assert sorted(item["centre"] for item in cases) == ["C1", "C1", "C10", "C2"]
