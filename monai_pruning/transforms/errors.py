"""The exception our transforms raise for a setting or an input image the user has to fix."""

from __future__ import annotations

__all__ = ["TransformError"]


class TransformError(ValueError):
    """
    A transform's setting (from a bundle config) or the image it was given is unusable: a channel name that the
    modality mapping does not have, a label value outside the mapping, a channel-last image.

    It is a ``ValueError``, so callers catching that keep working, and it is one of the errors a bundle reports as a
    single ``ERROR:`` line (:mod:`monai_pruning.cli_errors`), since it names the setting or file at fault; line
    breaks in the message are folded into spaces.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
