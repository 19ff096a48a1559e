from __future__ import annotations

import csv
import logging
import math

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader, Dataset, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.handlers import HausdorffDistance, MeanDice, from_engine
from monai.metrics import DiceMetric, HausdorffDistanceMetric
from monai.networks.nets import UNet
from monai.transforms import Activationsd, AsDiscreted, Compose

from monai_pruning.handlers.case_metrics_report import (
    CaseMetricsReport,
    case_ids_from_filenames,
    column_means,
    filenames_from_batch,
    format_table,
)

NUM_CLASSES = 3  # background, kidney, tumour


def _kits_like_cases(count: int = 4) -> list[dict]:
    """Small 2D images in KiTS's file layout: every case has an ``imaging`` file in its own ``case_xxxxx`` folder."""
    generator = torch.Generator().manual_seed(0)
    cases = []
    for i in range(count):
        label = torch.zeros(1, 32, 32)
        label[0, 4:14, 4:14] = 1
        label[0, 18:28, 16 + i : 26 + i] = 2
        image = torch.rand(1, 32, 32, generator=generator) + 0.5 * label
        cases.append(
            {
                "image": MetaTensor(image, meta={"filename_or_obj": f"/data/kits/case_{i:05d}/imaging.nii.gz"}),
                "label": MetaTensor(label, meta={"filename_or_obj": f"/data/kits/case_{i:05d}/segmentation.nii.gz"}),
            }
        )
    return cases


def _postprocessing() -> Compose:
    return Compose(
        [
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=NUM_CLASSES),
        ]
    )


def _run_evaluator(cases: list[dict], report: CaseMetricsReport, batch_size: int = 3):
    torch.manual_seed(0)
    network = UNet(spatial_dims=2, in_channels=1, out_channels=NUM_CLASSES, channels=(4, 8), strides=(2,))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(Dataset(cases), batch_size=batch_size),
        network=network,
        postprocessing=_postprocessing(),
        key_val_metric={
            "val_mean_dice": MeanDice(include_background=False, output_transform=from_engine(["pred", "label"]))
        },
        additional_metrics={
            "val_hd95": HausdorffDistance(
                include_background=False, percentile=95, output_transform=from_engine(["pred", "label"])
            )
        },
        val_handlers=[report],
    )
    evaluator.run()
    return evaluator, network


def _expected_metrics(cases: list[dict], network: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    """Per-case Dice and HD95 of the foreground classes, computed directly with monai.metrics."""
    dice_metric = DiceMetric(include_background=False, reduction="none")
    hd_metric = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    network.eval()
    dice, hd95 = [], []
    with torch.no_grad():
        for case in cases:
            logits = network(case["image"].as_tensor()[None])
            pred = torch.nn.functional.one_hot(logits.argmax(1), NUM_CLASSES).permute(0, 3, 1, 2).float()
            label = torch.nn.functional.one_hot(case["label"].as_tensor().long(), NUM_CLASSES)
            label = label.permute(0, 3, 1, 2).float()
            dice.append(dice_metric(pred, label)[0].numpy())
            hd95.append(hd_metric(pred, label)[0].numpy())
    return np.stack(dice), np.stack(hd95)


def _read_csv(path) -> list[list[str]]:
    with open(path, newline="") as f:
        return list(csv.reader(f))


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One evaluator run shared by the tests that only read its outputs (a real run costs ~1 s)."""
    output_dir = tmp_path_factory.mktemp("eval")
    cases = _kits_like_cases()
    report = CaseMetricsReport(output_dir=str(output_dir), class_names=["kidney", "tumor"], name="test_case_metrics")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("test_case_metrics")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        evaluator, network = _run_evaluator(cases, report)
    finally:
        logger.removeHandler(handler)
    return {"report": report, "cases": cases, "evaluator": evaluator, "network": network, "records": records}


def test_csv_has_one_row_per_case_with_dice_and_hd95_equal_to_monai_metrics(evaluated):
    rows = _read_csv(evaluated["report"].output_path)
    header, body = rows[0], rows[1:-1]
    assert header == ["case", "val_mean_dice_kidney", "val_mean_dice_tumor", "val_hd95_kidney", "val_hd95_tumor"]
    assert [r[0] for r in body] == [f"case_{i:05d}/imaging" for i in range(4)]
    dice, hd95 = _expected_metrics(evaluated["cases"], evaluated["network"])
    assert np.isfinite(hd95).all() and (dice > 0).all(), "the fixture should give non-degenerate predictions"
    values = np.array([[float(v) for v in r[1:]] for r in body])
    np.testing.assert_allclose(values[:, :2], dice, rtol=1e-5)
    np.testing.assert_allclose(values[:, 2:], hd95, rtol=1e-5)


def test_mean_row_is_the_column_mean_and_matches_the_evaluator_aggregate(evaluated):
    rows = _read_csv(evaluated["report"].output_path)
    assert rows[-1][0] == "mean"
    values = np.array([[float(v) for v in r[1:]] for r in rows[1:-1]])
    mean = np.array([float(v) for v in rows[-1][1:]])
    np.testing.assert_allclose(mean, values.mean(axis=0), rtol=1e-9)
    metrics = evaluated["evaluator"].state.metrics
    assert math.isclose(mean[:2].mean(), metrics["val_mean_dice"], rel_tol=1e-5)
    assert math.isclose(mean[2:].mean(), metrics["val_hd95"], rel_tol=1e-5)


def test_the_same_table_is_logged_as_readable_text(evaluated):
    messages = [r.getMessage() for r in evaluated["records"]]
    report_messages = [m for m in messages if "per-case metrics of 4 cases" in m]
    assert len(report_messages) == 1
    text = report_messages[0]
    assert evaluated["report"].output_path in text
    lines = text.splitlines()
    header = ["case", "val_mean_dice_kidney", "val_mean_dice_tumor", "val_hd95_kidney", "val_hd95_tumor"]
    assert lines[1].split() == header
    assert lines[3].startswith("case_00000/imaging") and lines[-1].startswith("mean")
    first_dice = float(_read_csv(evaluated["report"].output_path)[1][1])
    assert lines[3].split()[1] == f"{first_dice:.4f}"


def test_default_report_lists_every_metric_with_numbered_classes_and_filenames_reset_each_run(tmp_path):
    cases = _kits_like_cases(2)
    cases[0]["image"].meta["filename_or_obj"] = "/data/kvasir/images/cju0qkwl35piu0993l0dewei2.jpg"
    cases[1]["image"].meta["filename_or_obj"] = "/data/kvasir/images/cju0qoxqj9q6s0835b43399p4.jpg"
    report = CaseMetricsReport(output_dir=str(tmp_path / "new" / "folder"), filename="per_case.csv")
    evaluator, _ = _run_evaluator(cases, report, batch_size=1)
    evaluator.run()  # a second run (e.g. the next validation) must not accumulate the first run's filenames
    rows = _read_csv(tmp_path / "new" / "folder" / "per_case.csv")
    assert rows[0] == ["case", "val_mean_dice_class1", "val_mean_dice_class2", "val_hd95_class1", "val_hd95_class2"]
    assert [r[0] for r in rows[1:]] == ["cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "mean"]


def test_unknown_metric_name_is_rejected_naming_the_available_metrics(tmp_path):
    report = CaseMetricsReport(output_dir=str(tmp_path), metric_names=["val_dice"])
    with pytest.raises(ValueError, match=r"metric_names \['val_dice'\] .* available: \['val_mean_dice', 'val_hd95'\]"):
        _run_evaluator(_kits_like_cases(2), report)


def test_class_names_that_do_not_match_the_metric_channels_are_rejected(tmp_path):
    report = CaseMetricsReport(output_dir=str(tmp_path), class_names=["lesion"])
    with pytest.raises(ValueError, match="class_names \\['lesion'\\] has 1 names but metric 'val_mean_dice' has 2"):
        _run_evaluator(_kits_like_cases(2), report)
    assert not (tmp_path / "case_metrics.csv").exists()


def test_missing_image_key_is_reported_at_the_first_iteration(tmp_path):
    report = CaseMetricsReport(output_dir=str(tmp_path), image_key="img")
    with pytest.raises(ValueError, match="no key 'img'"):
        _run_evaluator(_kits_like_cases(2), report)


def test_usable_from_a_bundle_config(tmp_path):
    config = {
        "report": {
            "_target_": "monai_pruning.handlers.case_metrics_report.CaseMetricsReport",
            "output_dir": str(tmp_path),
            "metric_names": "val_hd95",
            "class_names": ["kidney", "tumor"],
        }
    }
    report = ConfigParser(config).get_parsed_content("report")
    assert isinstance(report, CaseMetricsReport)
    _run_evaluator(_kits_like_cases(2), report)
    assert _read_csv(tmp_path / "case_metrics.csv")[0] == ["case", "val_hd95_kidney", "val_hd95_tumor"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"filename": ""}, "filename must be a non-empty string"),
        ({"class_names": "kidney"}, "class_names must be a list"),
        ({"class_names": ["a", "a"]}, "class_names must be unique"),
        ({"decimals": -1}, "decimals must be a non-negative int"),
    ],
)
def test_invalid_constructor_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=f"^CaseMetricsReport: {message}"):
        CaseMetricsReport(**kwargs)


def test_case_ids_are_file_stems_lengthened_by_folders_only_where_needed():
    filenames = [
        "/kvasir/images/cju0qkwl35piu0993l0dewei2.jpg",
        "/msd/Task01/imagesTr/BRATS_001.nii.gz",
        "/kits/case_00000/imaging.nii.gz",
        "/kits/case_00001/imaging.nii.gz",
        "C:\\data\\kits\\case_00002\\imaging.nii.gz",
        None,
        "/kvasir/images/cju0qkwl35piu0993l0dewei2.jpg",
    ]
    assert case_ids_from_filenames(filenames) == [
        "cju0qkwl35piu0993l0dewei2",
        "BRATS_001",
        "case_00000/imaging",
        "case_00001/imaging",
        "case_00002/imaging",
        "case_0005",
        "cju0qkwl35piu0993l0dewei2",
    ]


def test_case_ids_extend_to_deeper_folders_when_parents_also_collide():
    assert case_ids_from_filenames(["/a/site1/x.png", "/b/site1/x.png"]) == ["a/site1/x", "b/site1/x"]


def test_column_means_skip_nan_but_keep_infinite_distances():
    values = np.array([[0.5, 1.0, np.nan], [np.nan, np.inf, np.nan], [0.7, 2.0, np.nan]])
    means = column_means(values)
    np.testing.assert_allclose(means[0], 0.6)
    assert means[1] == np.inf and np.isnan(means[2])
    with pytest.raises(ValueError, match="expected a 2D"):
        column_means(np.zeros(3))


def test_filenames_are_read_from_collated_decollated_and_meta_dict_batches():
    collated = {"image": MetaTensor(torch.zeros(2, 1, 4, 4), meta={"filename_or_obj": ["a/x.png", "a/y.png"]})}
    assert filenames_from_batch(collated) == ["a/x.png", "a/y.png"]
    decollated = [{"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": "b/z.nii.gz"})}]
    assert filenames_from_batch(decollated) == ["b/z.nii.gz"]
    plain = {"image": torch.zeros(2, 1, 4, 4), "image_meta_dict": {"filename_or_obj": ["c/1.png", "c/2.png"]}}
    assert filenames_from_batch(plain) == ["c/1.png", "c/2.png"]
    assert filenames_from_batch([{"image": torch.zeros(1, 4, 4)}]) == [None]
    with pytest.raises(ValueError, match="cannot read filenames from a batch of type int"):
        filenames_from_batch(3)


def test_format_table_aligns_columns_and_prints_non_finite_values():
    text = format_table(["case", "dice"], [["a", 0.5], ["long_case_id", float("nan")], ["mean", float("inf")]], 2)
    lines = text.splitlines()
    assert lines[0] == "case          dice"
    assert lines[2] == "a             0.50"
    assert lines[3].endswith(" nan") and lines[4].endswith(" inf")
    assert len({len(line) for line in lines}) == 1
