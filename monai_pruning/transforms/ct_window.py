"""CT intensity normalisation in Hounsfield units: clip to a window, then z-score or rescale."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.data.meta_obj import get_track_meta
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_pruning.transforms.errors import TransformError

__all__ = ["CTWindowNormalize", "CTWindowNormalized", "KITS19_WINDOW_HU", "KITS19_FOREGROUND_MEAN_STD_HU"]

# nnU-Net's KiTS19 preprocessing (Isensee & Maier-Hein, 2019): the 0.5 and 99.5 percentiles of the foreground
# (kidney + tumour) intensities, and the mean and standard deviation of the foreground voxels, all in HU.
KITS19_WINDOW_HU = (-79.0, 304.0)
KITS19_FOREGROUND_MEAN_STD_HU = (101.0, 76.9)

_MODES = ("zscore", "rescale")


class CTWindowNormalize(Transform):
    """
    Clip a CT image to an intensity window in Hounsfield units (HU), then normalise it.

    A fixed window and fixed statistics, rather than per-image ones, are what CT needs: HU are calibrated, so the same
    tissue has the same value in every scan, and per-image z-scoring would shift kidney intensities depending on how
    much air or bone happens to be in the field of view. The defaults are nnU-Net's KiTS19 foreground statistics.

    Args:
        a_min: lower end of the window, in HU.
        a_max: upper end of the window, in HU.
        mean: intensity subtracted after clipping in ``"zscore"`` mode, in HU.
        std: divisor after subtracting ``mean`` in ``"zscore"`` mode, in HU; must be positive.
        mode: ``"zscore"`` gives ``(clip(x) - mean) / std`` (unitless, about zero-mean over the foreground);
            ``"rescale"`` gives ``(clip(x) - a_min) / (a_max - a_min)``, in [0, 1].
        dtype: data type of the output, float32 by default; None keeps the input's, which truncates integer HU
            images to whole z-scores, so leave it set unless the input is already floating point.

    Example::

        norm = CTWindowNormalize()                      # KiTS19: window -79..304 HU, mean 101.0, std 76.9
        img = norm(ct)                                  # (1, H, W, D) HU -> z-scores
        unit = CTWindowNormalize(-1000, 1000, mode="rescale")(ct)  # -> [0, 1]

    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self,
        a_min: float = KITS19_WINDOW_HU[0],
        a_max: float = KITS19_WINDOW_HU[1],
        mean: float = KITS19_FOREGROUND_MEAN_STD_HU[0],
        std: float = KITS19_FOREGROUND_MEAN_STD_HU[1],
        mode: str = "zscore",
        dtype: DtypeLike | torch.dtype = np.float32,
    ) -> None:
        for arg_name, value in (("a_min", a_min), ("a_max", a_max), ("mean", mean), ("std", std)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TransformError(f"CTWindowNormalize: {arg_name} must be a finite number, got {value!r}.")
        if a_min >= a_max:
            raise TransformError(f"CTWindowNormalize: a_min ({a_min}) must be below a_max ({a_max}).")
        if std <= 0:
            raise TransformError(f"CTWindowNormalize: std must be positive, got {std}.")
        if mode not in _MODES:
            raise TransformError(f"CTWindowNormalize: mode must be one of {list(_MODES)}, got {mode!r}.")
        self.a_min = float(a_min)
        self.a_max = float(a_max)
        self.mean = float(mean)
        self.std = float(std)
        self.mode = mode
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: CT image in HU, any shape (channel-first by MONAI convention); integer types are accepted.
        """
        img_t = convert_to_tensor(img, track_meta=get_track_meta())
        # float32 holds every int16 HU value exactly at half the memory of float64 (a KiTS volume is ~512x512x600);
        # half-precision inputs are widened too, so the arithmetic is not done with a 10-bit mantissa
        work_dtype = torch.float64 if img_t.dtype == torch.float64 else torch.float32
        windowed = torch.clamp(img_t.to(work_dtype), min=self.a_min, max=self.a_max)
        if self.mode == "zscore":
            out_t = (windowed - self.mean) / self.std
        else:
            out_t = (windowed - self.a_min) / (self.a_max - self.a_min)
        out, *_ = convert_to_dst_type(out_t, dst=img, dtype=self.dtype)
        return out


class CTWindowNormalized(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_pruning.transforms.CTWindowNormalize`.

    Args:
        keys: keys of the CT images to normalise (never the labels). See also: monai.transforms.MapTransform
        a_min: lower end of the window, in HU.
        a_max: upper end of the window, in HU.
        mean: intensity subtracted after clipping in ``"zscore"`` mode, in HU.
        std: divisor after subtracting ``mean`` in ``"zscore"`` mode, in HU.
        mode: ``"zscore"`` or ``"rescale"`` (to [0, 1]).
        dtype: data type of the output, float32 by default.
        allow_missing_keys: don't raise an exception if a key is missing.

    Example (bundle config)::

        {"_target_": "monai_pruning.transforms.CTWindowNormalized", "keys": "image", "a_min": -79, "a_max": 304,
         "mean": 101.0, "std": 76.9}

    """

    backend = CTWindowNormalize.backend

    def __init__(
        self,
        keys: KeysCollection,
        a_min: float = KITS19_WINDOW_HU[0],
        a_max: float = KITS19_WINDOW_HU[1],
        mean: float = KITS19_FOREGROUND_MEAN_STD_HU[0],
        std: float = KITS19_FOREGROUND_MEAN_STD_HU[1],
        mode: str = "zscore",
        dtype: DtypeLike | torch.dtype = np.float32,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalizer = CTWindowNormalize(a_min=a_min, a_max=a_max, mean=mean, std=std, mode=mode, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalizer(d[key])
        return d
