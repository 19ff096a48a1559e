from __future__ import annotations

import sys

import pytest

from monai_pruning.cli_errors import install_error_hook, user_error_in_chain
from monai_pruning.config_values import ConfigValueError
from monai_pruning.data.errors import DatasetError
from monai_pruning.handlers import PruningHandlerError
from monai_pruning.transforms import TransformError


def _wrapped(error: BaseException) -> RuntimeError:
    """What MONAI's config resolver and apply_transform make of an error: a RuntimeError raised from it."""
    try:
        try:
            raise error
        except BaseException as inner:
            raise RuntimeError("applying transform <...>") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    "error",
    [
        DatasetError("no images in /data"),
        TransformError("SelectChannels: bad name"),
        PruningHandlerError("SauronPruning: `lam` must be a number >= 0, got -1."),
        ConfigValueError("`resume` must be true or false, got 'yes'."),
    ],
)
def test_our_user_errors_are_found_anywhere_in_the_exception_chain(error):
    assert user_error_in_chain(_wrapped(error)) is error


def test_other_errors_are_not_user_errors():
    assert user_error_in_chain(_wrapped(ValueError("a bug deep in torch"))) is None
    assert user_error_in_chain(None) is None


def test_the_hook_prints_one_line_for_a_user_error_and_defers_to_the_previous_hook_otherwise(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, tb: seen.append(error))
    monkeypatch.delenv("MONAI_PRUNING_TRACEBACK", raising=False)
    install_error_hook()
    wrapped = _wrapped(TransformError("SelectChannels: channel name 'T2w'\n is not one of ['T1w']."))
    sys.excepthook(RuntimeError, wrapped, None)
    assert capsys.readouterr().err.splitlines()[0] == "ERROR: SelectChannels: channel name 'T2w' is not one of ['T1w']."
    other = _wrapped(ValueError("a bug"))
    sys.excepthook(RuntimeError, other, None)
    assert seen == [other]
