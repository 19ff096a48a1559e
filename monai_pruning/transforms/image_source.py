"""Where an image came from, for error messages that point at the offending file."""

from __future__ import annotations

from typing import Any

from monai.data import MetaTensor
from monai.utils import ImageMetaKey


def describe_image_source(img: Any) -> str:
    """
    Return ``" in <filename>"`` when ``img`` is a MetaTensor that remembers the file it was loaded from, else ``""``.

    Data-dependent errors (an unexpected label value, too few channels) are raised while a DataLoader worker is deep
    inside a Compose; naming the file is what lets a user find the one broken case among hundreds.
    """
    if not isinstance(img, MetaTensor):
        return ""
    source = img.meta.get(ImageMetaKey.FILENAME_OR_OBJ)
    if isinstance(source, (list, tuple)):
        source = source[0] if len(source) > 0 else None
    return f" in {source}" if isinstance(source, str) and source else ""
