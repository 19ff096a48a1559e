"""
MONAI-style transforms for what the supported datasets need and MONAI lacks.

Each family has an array version (``Transform``) and a dictionary version (``MapTransform``, suffix ``d``); all accept
numpy arrays, torch tensors and MetaTensors and return the input's type with its metadata. Refer to them in bundle
configs by their full name, e.g. ``"_target_": "monai_pruning.transforms.RemapLabelsd"``.
"""

from __future__ import annotations

from monai_pruning.transforms.binarize_mask import BinarizeMask, BinarizeMaskd
from monai_pruning.transforms.ct_window import CTWindowNormalize, CTWindowNormalized
from monai_pruning.transforms.errors import TransformError
from monai_pruning.transforms.remap_labels import RemapLabels, RemapLabelsd
from monai_pruning.transforms.select_channels import SelectChannels, SelectChannelsd

__all__ = [
    "BinarizeMask",
    "BinarizeMaskd",
    "CTWindowNormalize",
    "CTWindowNormalized",
    "RemapLabels",
    "RemapLabelsd",
    "SelectChannels",
    "SelectChannelsd",
    "TransformError",
]
