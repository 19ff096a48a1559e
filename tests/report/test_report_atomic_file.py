from __future__ import annotations

import os
import stat

import pytest

from monai_pruning.report import atomic_write_bytes, atomic_write_text


def test_atomic_write_creates_missing_folders_and_readable_file(tmp_path):
    path = atomic_write_text(tmp_path / "a" / "b" / "out.txt", "hello\r\n")
    assert path.read_bytes() == b"hello\r\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_atomic_write_keeps_permissions_of_the_file_it_replaces(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_atomic_write_interrupted_before_replace_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "out.txt"
    path.write_text("old content")

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_text(path, "new content")
    assert path.read_text() == "old content"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_write_rejects_folder_and_non_path(tmp_path):
    with pytest.raises(ValueError, match="is a folder"):
        atomic_write_bytes(tmp_path, b"x")
    with pytest.raises(TypeError, match="path must be a str or os.PathLike"):
        atomic_write_bytes(3, b"x")
