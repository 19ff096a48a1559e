"""
Atomic file writes: a reader (or a run killed half-way) sees either the old file or the new one, never a torn one.

The content goes to a temporary file in the destination's own folder (so the final rename never crosses a file
system), is flushed to disk, and then replaces the destination with ``os.replace``, which is atomic on POSIX and
Windows. Missing parent folders are created.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text"]

# permissions of a new file (rw-r--r--): tempfile creates 0600 files, which would otherwise become the final mode
_NEW_FILE_MODE = stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH


def _destination(path: str | os.PathLike, where: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: path must be a str or os.PathLike, got {type(path).__name__}.")
    destination = Path(path)
    if destination.is_dir():
        raise ValueError(f"{where}: {str(destination)!r} is a folder, expected a file path.")
    return destination


def atomic_write_bytes(path: str | os.PathLike, data: bytes, where: str = "atomic_write_bytes") -> Path:
    """
    Write ``data`` to ``path`` atomically and return the path.

    An existing file keeps its permission bits; a new one gets rw-r--r--.

    Args:
        path: destination file; its parent folders are created if missing.
        data: the complete new content.
        where: name of the caller, put at the start of error messages.

    Raises:
        ValueError: ``path`` is an existing folder.
    """
    destination = _destination(path, where)
    destination.parent.mkdir(parents=True, exist_ok=True)
    mode = stat.S_IMODE(destination.stat().st_mode) if destination.exists() else _NEW_FILE_MODE
    handle, temporary = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, destination)
    except BaseException:
        # also on KeyboardInterrupt: leave no temporary file behind, and the destination untouched
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    return destination


def atomic_write_text(
    path: str | os.PathLike, text: str, encoding: str = "utf-8", where: str = "atomic_write_text"
) -> Path:
    """
    Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`) and return the path.

    Line endings are written exactly as given (no platform translation), so CSV files keep the ``\\r\\n`` that the
    csv module produces.
    """
    return atomic_write_bytes(path, text.encode(encoding), where=where)
