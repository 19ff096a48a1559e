"""Turn lossy, multi-channel mask images (Kvasir-SEG JPEGs) into clean one-channel {0, 1} label maps."""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_pruning.transforms.errors import TransformError
from monai_pruning.transforms.image_source import describe_image_source

__all__ = ["BinarizeMask", "BinarizeMaskd"]

# Mask images are grey (1), grey + alpha (2), RGB (3) or RGBA (4); more channels means the image is not channel-first.
_MAX_MASK_CHANNELS = 4


class BinarizeMask(Transform):
    """
    Average the channels of a channel-first mask image and threshold it into a single-channel {0, 1} mask.

    Kvasir-SEG stores its polyp masks as 3-channel JPEGs, so the "binary" masks carry compression noise around the
    edges (values such as 3 or 251) and sometimes a slight colour cast. Averaging the channels first makes the result
    independent of which channel the noise landed in; the threshold then snaps every pixel to 0 or 1.

    Pixels whose channel mean is greater than or equal to ``threshold`` become 1 (the same rule as
    ``monai.transforms.AsDiscrete``).

    Args:
        threshold: cut-off on the intensity scale of the input, 128 by default for 8-bit images (0-255).
        dtype: data type of the returned mask; float32 by default, which the MONAI losses and metrics expect.

    Example::

        mask = BinarizeMask()(np.stack([jpeg_mask] * 3))  # (3, H, W) uint8 -> (1, H, W) float32 in {0, 1}

    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, threshold: float = 128.0, dtype: DtypeLike | torch.dtype = np.float32) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not np.isfinite(threshold):
            raise TransformError(f"BinarizeMask: threshold must be a finite number, got {threshold!r}.")
        self.threshold = float(threshold)
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first mask, shape (C, spatial...), with C in 1..4.
        """
        shape = tuple(img.shape)
        if len(shape) < 2:
            raise TransformError(
                f"BinarizeMask: expected a channel-first image (C, spatial...), got shape {shape}"
                f"{describe_image_source(img)}."
            )
        if shape[0] > _MAX_MASK_CHANNELS:
            raise TransformError(
                f"BinarizeMask: expected at most {_MAX_MASK_CHANNELS} channels first, got shape {shape}"
                f"{describe_image_source(img)}; is the image channel-last (add EnsureChannelFirstd first)?"
            )
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        channel_mean = img_t.float().mean(dim=0, keepdim=True)
        peak = float(channel_mean.max()) if channel_mean.numel() > 0 else 0.0
        if self.threshold > 1.0 and 0.0 < peak <= 1.0:
            warnings.warn(
                f"BinarizeMask: the mask{describe_image_source(img)} looks scaled to [0, 1] (max {peak:.3g}) but "
                f"the threshold is {self.threshold:g}, so every pixel becomes 0; lower the threshold or drop the "
                "intensity scaling for masks.",
                stacklevel=2,
            )
        mask = channel_mean >= self.threshold
        out, *_ = convert_to_dst_type(mask, dst=img, dtype=self.dtype)
        return out


class BinarizeMaskd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_pruning.transforms.BinarizeMask`.

    Args:
        keys: keys of the mask images to binarize. See also: monai.transforms.MapTransform
        threshold: cut-off on the intensity scale of the input, 128 by default for 8-bit images (0-255).
        dtype: data type of the returned mask; float32 by default.
        allow_missing_keys: don't raise an exception if a key is missing.

    Example (bundle config, after ``LoadImaged`` and ``EnsureChannelFirstd``)::

        {"_target_": "monai_pruning.transforms.BinarizeMaskd", "keys": "label", "threshold": 128}

    """

    backend = BinarizeMask.backend

    def __init__(
        self,
        keys: KeysCollection,
        threshold: float = 128.0,
        dtype: DtypeLike | torch.dtype = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.binarizer = BinarizeMask(threshold=threshold, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.binarizer(d[key])
            except TransformError as err:
                raise TransformError(f"{err} [key '{key}']") from None
        return d
