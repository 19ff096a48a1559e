from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_pruning.report import write_scalars


class _FakeWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float, int]] = []

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        self.calls.append((tag, value, global_step))


_ROW = {
    "epoch": 3,
    "macs": 1.5e9,
    "dice": np.float32(0.75),
    "loss": torch.tensor(0.25),
    "widths": {"encoder.0": 12, "decoder.1": 8},
    "thresholds": {"encoder.0": 0.01, "nested": {"deeper": 2}},
    "method": "sauron",
    "pruned": True,
    "kept": [1, 2, 3],
    "note": None,
    "ratio": math.nan,
}


def test_write_scalars_writes_every_numeric_entry_with_nested_tags():
    writer = _FakeWriter()
    tags = write_scalars(writer, _ROW, step=3)
    assert tags == [
        "pruning/epoch",
        "pruning/macs",
        "pruning/dice",
        "pruning/loss",
        "pruning/widths/encoder.0",
        "pruning/widths/decoder.1",
        "pruning/thresholds/encoder.0",
        "pruning/thresholds/nested/deeper",
        "pruning/ratio",
    ]
    values = {tag: value for tag, value, _ in writer.calls}
    assert values["pruning/widths/encoder.0"] == 12.0 and values["pruning/loss"] == 0.25
    assert math.isnan(values["pruning/ratio"])
    assert {step for _, _, step in writer.calls} == {3}
    assert all(type(value) is float for _, value, _ in writer.calls)


def test_write_scalars_without_prefix_uses_bare_keys():
    writer = _FakeWriter()
    write_scalars(writer, {"widths": {"a": 1}}, step=0, prefix="")
    assert writer.calls == [("widths/a", 1.0, 0)]


@pytest.mark.parametrize(
    "writer, row, step, error, message",
    [
        (object(), {"a": 1}, 0, TypeError, "writer must have an add_scalar method"),
        (_FakeWriter(), [1], 0, ValueError, "a row must be a mapping"),
        (_FakeWriter(), {"a": 1}, -1, ValueError, "step must be an int >= 0"),
        (_FakeWriter(), {"a": 1}, 1.5, ValueError, "step must be an int >= 0"),
    ],
)
def test_write_scalars_rejects_bad_arguments(writer, row, step, error, message):
    with pytest.raises(error, match=message):
        write_scalars(writer, row, step)


def test_write_scalars_to_real_summary_writer_can_be_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path))
    for epoch in range(3):
        write_scalars(writer, {"macs": 100.0 - epoch, "widths": {"encoder.0": 16 - epoch}}, step=epoch)
    writer.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert set(events.Tags()["scalars"]) == {"pruning/macs", "pruning/widths/encoder.0"}
    widths = events.Scalars("pruning/widths/encoder.0")
    assert [(e.step, e.value) for e in widths] == [(0, 16.0), (1, 15.0), (2, 14.0)]
