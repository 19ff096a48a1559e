"""The one exception type that the data layer raises for problems in a user's dataset or arguments."""

from __future__ import annotations

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """
    A dataset folder, file or data-preparation argument is unusable.

    The message is always a single line naming the folder, file, case or argument at fault, because it is what a user
    sees when ``python -m monai.bundle run`` stops before training; line breaks in the given message are folded into
    spaces so that a message built from a third-party error text stays on one line.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
