"""Values that arrive from ``python -m monai.bundle run ... --id value`` and must mean what the user typed.

The bundle command line hands ``--resume false`` to the config as the *string* ``'false'``, which Python reads as
true in ``if @resume``. Config expressions and handlers read such settings through :func:`read_flag`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConfigValueError", "read_flag"]


class ConfigValueError(ValueError):
    """A config value that cannot mean what its setting needs (printed as one line by the bundle error hook)."""


def read_flag(value: Any, name: str) -> bool:
    """
    ``value`` as a bool: a bool as it is, the strings ``true``/``false`` (any case, as typed on the command line) for
    what they say.

    Raises:
        ConfigValueError: anything else, naming the setting (a typo must not turn a setting on or off silently).

    Example (bundle config)::

        "$@resume_loader.attach(@train#trainer) if monai_pruning.config_values.read_flag(@resume, 'resume') else None"
    """
    if isinstance(value, bool):
        return value
    word = value.strip().lower() if isinstance(value, str) else None
    if word in ("true", "false"):
        return word == "true"
    raise ConfigValueError(f"`{name}` must be true or false, got {value!r}.")
