"""Kvasir-SEG and CVC-ClinicDB readers on tiny files written in the real layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_pruning.data import DatasetError, detect_layout, read_cvc_clinicdb, read_kvasir_seg


def _picture(path: Path, size=(12, 10), channels=3) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (size[1], size[0], channels) if channels > 1 else (size[1], size[0])
    Image.fromarray(np.full(shape, 128, dtype=np.uint8)).save(path)


def _kvasir(root: Path, names=("cju0a", "cju0b", "cju1c")) -> Path:
    for name in names:
        _picture(root / "images" / f"{name}.jpg")
        _picture(root / "masks" / f"{name}.jpg")
    return root


def test_kvasir_pairs_images_with_same_named_masks(tmp_path):
    items = read_kvasir_seg(_kvasir(tmp_path / "Kvasir-SEG"))
    assert [item["case"] for item in items] == ["cju0a", "cju0b", "cju1c"]
    for item in items:
        assert Path(item["image"]).parent.name == "images" and Path(item["label"]).parent.name == "masks"
        assert Path(item["image"]).name == Path(item["label"]).name


def test_kvasir_accepts_parent_holding_single_kvasir_folder(tmp_path):
    _kvasir(tmp_path / "Kvasir-SEG")
    (tmp_path / "kavsir_bboxes.json").write_text("{}")
    assert len(read_kvasir_seg(tmp_path)) == 3


def test_kvasir_ignores_macos_resource_files(tmp_path):
    root = _kvasir(tmp_path)
    (root / "images" / "._cju0a.jpg").write_bytes(b"\x00\x05\x16\x07")
    (root / "masks" / ".DS_Store").write_bytes(b"junk")
    assert len(read_kvasir_seg(root)) == 3


def test_kvasir_image_without_mask_names_count_and_files(tmp_path):
    root = _kvasir(tmp_path, names=[f"img{i}" for i in range(8)])
    for i in range(6):
        (root / "masks" / f"img{i}.jpg").unlink()
    with pytest.raises(DatasetError, match=r"images without a mask .*: 6 \(first 5: img0.jpg, img1.jpg"):
        read_kvasir_seg(root)


def test_kvasir_mask_without_image_is_an_error(tmp_path):
    root = _kvasir(tmp_path)
    _picture(root / "masks" / "orphan.jpg")
    with pytest.raises(DatasetError, match=r"masks without an image .*1 \(orphan.jpg\)"):
        read_kvasir_seg(root)


def test_kvasir_missing_or_wrong_folder_errors_name_the_path(tmp_path):
    with pytest.raises(DatasetError, match="does not exist: .*nowhere"):
        read_kvasir_seg(tmp_path / "nowhere")
    (tmp_path / "other").mkdir()
    with pytest.raises(DatasetError, match="no Kvasir-SEG layout in .*other: expected images/ and masks/"):
        read_kvasir_seg(tmp_path / "other")


def test_kvasir_empty_folders_report_no_pairs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DatasetError, match="no Kvasir-SEG image/mask pairs"):
        read_kvasir_seg(tmp_path)


def test_kvasir_two_files_with_one_stem_is_an_error(tmp_path):
    root = _kvasir(tmp_path)
    _picture(root / "images" / "cju0a.png")
    with pytest.raises(DatasetError, match="same name stem 'cju0a'"):
        read_kvasir_seg(root)


def test_cvc_pairs_numeric_names_in_numeric_order(tmp_path):
    for n in (1, 2, 10):
        _picture(tmp_path / "Original" / f"{n}.tif")
        _picture(tmp_path / "Ground Truth" / f"{n}.tif", channels=1)
    items = read_cvc_clinicdb(tmp_path)
    assert [item["case"] for item in items] == ["1", "2", "10"]
    assert all(Path(item["label"]).parent.name == "Ground Truth" for item in items)


def test_cvc_prefers_png_copy_when_png_and_tif_copies_exist(tmp_path):
    for folder, suffix in (("PNG", "png"), ("TIF", "tif")):
        _picture(tmp_path / folder / "Original" / f"1.{suffix}")
        _picture(tmp_path / folder / "Ground Truth" / f"1.{suffix}", channels=1)
    (item,) = read_cvc_clinicdb(tmp_path)
    assert item["image"].endswith("1.png")


def test_cvc_copies_side_by_side_are_detected_as_one_dataset_as_the_reader_reads_them(tmp_path):
    for folder, suffix in (("PNG", "png"), ("TIF", "tif")):
        _picture(tmp_path / folder / "Original" / f"1.{suffix}")
        _picture(tmp_path / folder / "Ground Truth" / f"1.{suffix}", channels=1)
    assert detect_layout("polyp", tmp_path) == "cvc_clinicdb"


def test_cvc_frame_without_mask_is_an_error(tmp_path):
    _picture(tmp_path / "Original" / "1.png")
    _picture(tmp_path / "Original" / "2.png")
    _picture(tmp_path / "Ground Truth" / "1.png", channels=1)
    with pytest.raises(DatasetError, match=r"images without a mask .*1 \(2.png\)"):
        read_cvc_clinicdb(tmp_path)


@pytest.mark.parametrize("suffix", ["tif", "tiff", "png", "jpg", "jpeg", "JPG"])
def test_cvc_reads_every_format_its_copies_circulate_in(tmp_path, suffix):
    for n in (1, 2):
        _picture(tmp_path / "Original" / f"{n}.{suffix}")
        _picture(tmp_path / "Ground Truth" / f"{n}.{suffix}", channels=1)
    items = read_cvc_clinicdb(tmp_path)
    assert [Path(item["image"]).name for item in items] == [f"1.{suffix}", f"2.{suffix}"]


@pytest.mark.parametrize("copies, chosen", [(("JPG", "TIF"), "TIF"), (("JPG", "PNG", "TIF"), "PNG")])
def test_cvc_prefers_a_lossless_copy_to_a_jpeg_copy_beside_it(tmp_path, copies, chosen):
    for folder in copies:
        _picture(tmp_path / folder / "Original" / f"1.{folder.lower()}")
        _picture(tmp_path / folder / "Ground Truth" / f"1.{folder.lower()}", channels=1)
    (item,) = read_cvc_clinicdb(tmp_path)
    assert Path(item["image"]).parent.parent.name == chosen
