from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from monai_pruning.report import PruningHistory, flatten_row, to_plain_data


def _row(epoch: int) -> dict:
    return {
        "epoch": epoch,
        "iteration": 40 * epoch,
        "params": 1000 - epoch,
        "macs": 2.0e9 / (epoch + 1),
        "time_s": 1.5 * epoch,
        "widths": {"encoder.0": 16 - epoch, "decoder.1": 8},
        "thresholds": {"encoder.0": 0.01 * epoch},
        "dice": 0.8,
    }


def test_history_appends_rows_in_order_and_hands_out_copies():
    history = PruningHistory()
    history.append(_row(0))
    history.append(_row(1))
    rows = history.rows
    assert [row["epoch"] for row in rows] == [0, 1] and len(history) == 2
    rows[0]["widths"]["encoder.0"] = 999
    rows.append({"epoch": 5})
    assert history.rows[0]["widths"]["encoder.0"] == 16 and len(history) == 2


def test_history_last_hands_out_a_copy_of_the_newest_row_or_none():
    history = PruningHistory()
    assert history.last() is None
    history.append(_row(0))
    history.append(_row(1))
    last = history.last()
    assert last == history.rows[-1] and last["epoch"] == 1
    last["widths"]["encoder.0"] = 999
    assert history.rows[-1]["widths"]["encoder.0"] == 15


def test_history_first_hands_out_a_copy_of_the_oldest_matching_row_or_none():
    history = PruningHistory([_row(0), _row(1), _row(2)])
    assert history.first(lambda row: row["epoch"] > 5) is None
    found = history.first(lambda row: row["epoch"] >= 1)
    assert found == history.rows[1]
    found["widths"]["encoder.0"] = 999
    assert history.rows[1]["widths"]["encoder.0"] == 15


def test_history_copies_the_appended_row_so_later_changes_do_not_leak_in():
    row = _row(0)
    history = PruningHistory([row])
    row["widths"]["encoder.0"] = 1
    assert history.rows[0]["widths"]["encoder.0"] == 16


def test_history_converts_numpy_and_tensor_scalars_and_tuples_to_plain_python():
    history = PruningHistory()
    history.append({"a": np.int64(3), "b": np.float32(0.5), "c": torch.tensor(2.5), "d": (1, 2), "e": np.bool_(True)})
    row = history.rows[0]
    assert row == {"a": 3, "b": 0.5, "c": 2.5, "d": [1, 2], "e": True}
    assert type(row["a"]) is int and type(row["b"]) is float and type(row["c"]) is float and type(row["e"]) is bool


@pytest.mark.parametrize(
    "row, message",
    [
        ([1, 2], "a row must be a mapping"),
        ({"widths": {1: 3}}, r"row 0\['widths'\] has a non-string key 1"),
        ({"widths": {"a": torch.ones(3)}}, r"row 0\['widths'\]\['a'\] is an array of shape \(3,\)"),
        ({"model": torch.nn.ReLU()}, r"row 0\['model'\] is a ReLU, which is not plain JSON-able data"),
        ({"items": [1, object()]}, r"row 0\['items'\]\[1\] is a object"),
    ],
)
def test_history_refuses_rows_that_are_not_plain_data_naming_the_entry(row, message):
    history = PruningHistory()
    with pytest.raises(ValueError, match=message):
        history.append(row)
    assert len(history) == 0


def test_history_state_dict_survives_torch_save_and_weights_only_load(tmp_path):
    history = PruningHistory([_row(0), _row(1)])
    torch.save({"history": history.state_dict()}, tmp_path / "checkpoint.pt")
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    restored = PruningHistory()
    restored.append({"epoch": 99})  # replaced, not extended
    restored.load_state_dict(loaded["history"])
    assert restored.rows == history.rows


@pytest.mark.parametrize("state", [{}, {"rows": "x"}, [1], {"rows": [3]}])
def test_history_load_state_dict_rejects_malformed_state(state):
    with pytest.raises(ValueError):
        PruningHistory().load_state_dict(state)


def test_history_write_json_round_trips_through_read_json(tmp_path):
    history = PruningHistory([_row(0), _row(1), {"epoch": 2, "dice": math.nan}])
    path = history.write_json(tmp_path / "run" / "history.json")
    assert path == tmp_path / "run" / "history.json"
    assert json.loads(path.read_text())[:2] == [_row(0), _row(1)]
    again = PruningHistory.read_json(path)
    assert again.rows[:2] == history.rows[:2] and math.isnan(again.rows[2]["dice"])


def test_history_write_csv_flattens_nested_dicts_into_slash_columns(tmp_path):
    history = PruningHistory([_row(0), {"epoch": 1, "widths": {"encoder.0": 12, "bridge": 4}, "note": None}])
    path = history.write_csv(tmp_path / "history.csv")
    with open(path, newline="") as stream:
        reader = csv.DictReader(stream)
        rows = list(reader)
        columns = reader.fieldnames
    assert columns == [
        "epoch",
        "iteration",
        "params",
        "macs",
        "time_s",
        "widths/encoder.0",
        "widths/decoder.1",
        "thresholds/encoder.0",
        "dice",
        "widths/bridge",
        "note",
    ]
    assert rows[0]["widths/encoder.0"] == "16" and rows[0]["widths/bridge"] == ""
    assert rows[1]["widths/bridge"] == "4" and rows[1]["iteration"] == "" and rows[1]["note"] == ""


def test_history_write_csv_refuses_two_entries_with_the_same_column(tmp_path):
    history = PruningHistory([{"widths/a": 1, "widths": {"a": 2}}])
    with pytest.raises(ValueError, match="flatten to the column 'widths/a'"):
        history.write_csv(tmp_path / "history.csv")
    assert not (tmp_path / "history.csv").exists()


def test_history_writes_replace_old_files_whole_and_leave_no_temporary_files(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("x" * 10_000)
    PruningHistory([{"epoch": 1}]).write_json(path)
    assert json.loads(path.read_text()) == [{"epoch": 1}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.json"]


def test_history_write_into_a_folder_path_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match="is a folder, expected a file path"):
        PruningHistory([{"epoch": 1}]).write_csv(tmp_path)


@pytest.mark.parametrize("content, message", [(None, "file not found"), ("{oops", "not valid JSON"), ("[1]", "list")])
def test_history_read_json_rejects_missing_or_malformed_files(tmp_path, content, message):
    path = tmp_path / "history.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ValueError, match=message):
        PruningHistory.read_json(path)


def test_flatten_row_and_to_plain_data_are_pure():
    row = {"a": {"b": {"c": 1}}, "d": [1, {"e": 2}]}
    assert flatten_row(row) == {"a/b/c": 1, "d": [1, {"e": 2}]}
    assert to_plain_data(row) == row and to_plain_data(row) is not row
