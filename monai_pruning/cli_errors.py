"""One-line errors for bundle users instead of a traceback through fire, MONAI's config resolver and torch.

``python -m monai.bundle run`` reports any failure with the full traceback, where our own message (a missing
dataset folder, a checkpoint that does not fit) sits in the middle of sixty lines of resolver frames.  Bundles call
:func:`install_error_hook` first in ``initialize``; when one of this package's user-facing errors is anywhere in the
exception chain, only its message is printed.  ``MONAI_PRUNING_TRACEBACK=1`` restores the full traceback.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType

from monai_pruning.config_values import ConfigValueError
from monai_pruning.data.errors import DatasetError
from monai_pruning.engine import PruningError, PruningRecordError, TraceError
from monai_pruning.handlers.pruning_base import PruningHandlerError
from monai_pruning.transforms.errors import TransformError

__all__ = ["USER_ERRORS", "install_error_hook", "user_error_in_chain"]

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigValueError,
    DatasetError,
    PruningError,
    PruningHandlerError,
    PruningRecordError,
    TraceError,
    TransformError,
    FileNotFoundError,
)


def user_error_in_chain(error: BaseException | None) -> BaseException | None:
    """The first of our user-facing errors in ``error``'s cause/context chain, or None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, USER_ERRORS):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def install_error_hook() -> bool:
    """Print our user-facing errors as one line (``ERROR: ...``) and exit with status 1; returns True."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
        found = user_error_in_chain(error)
        if found is None or os.environ.get("MONAI_PRUNING_TRACEBACK"):
            previous(kind, error, tb)
            return
        print(f"ERROR: {' '.join(str(found).split())}", file=sys.stderr)
        print("(set MONAI_PRUNING_TRACEBACK=1 for the full traceback)", file=sys.stderr)

    sys.excepthook = hook
    return True
