"""Map label values through a lookup table, e.g. fold KiTS cysts into kidney or merge MSD tumour sub-regions."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import torch
from monai.config import DtypeLike, KeysCollection, NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_pruning.transforms.errors import TransformError
from monai_pruning.transforms.image_source import describe_image_source

__all__ = ["RemapLabels", "RemapLabelsd", "parse_label_mapping"]

# how many offending values an error message lists before it says "..."
_MAX_VALUES_SHOWN = 10


def _parse_label_value(value: object, role: str) -> int | float:
    """Read one mapping key or value as a number; JSON object keys always arrive as strings such as ``"3"``."""
    number: int | float
    if isinstance(value, bool):
        raise TransformError(f"RemapLabels: mapping {role} {value!r} is a bool, expected a label number.")
    if isinstance(value, (int, float)):
        number = value
    elif isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                raise TransformError(f"RemapLabels: mapping {role} {value!r} is not a number.") from None
    else:
        raise TransformError(
            f"RemapLabels: mapping {role} {value!r} has type {type(value).__name__}, expected a number."
        )
    if not math.isfinite(number):
        raise TransformError(f"RemapLabels: mapping {role} {value!r} is not a finite number.")
    return int(number) if float(number).is_integer() else float(number)


def parse_label_mapping(mapping: Mapping) -> dict[int | float, int | float]:
    """
    Turn a user or JSON-config mapping into ``{source label: target label}`` with numeric keys and values.

    String keys and values (``{"3": 1}``, as every JSON object has) are parsed as numbers; integral floats become ints
    so that ``{"1.0": 2}`` and ``{1: 2}`` mean the same thing. Two keys that denote the same label are an error, since
    one of them would be silently ignored.
    """
    if not isinstance(mapping, Mapping):
        raise TransformError(f"RemapLabels: mapping must be a dict of label -> label, got {type(mapping).__name__}.")
    if len(mapping) == 0:
        raise TransformError("RemapLabels: mapping is empty; give at least one {source label: target label} pair.")
    parsed: dict[int | float, int | float] = {}
    for raw_key, raw_value in mapping.items():
        key = _parse_label_value(raw_key, "key")
        if key in parsed:
            raise TransformError(f"RemapLabels: mapping has label {key} twice (key {raw_key!r}).")
        parsed[key] = _parse_label_value(raw_value, "value")
    return parsed


def _format_values(values: list[float]) -> str:
    shown = [int(v) if float(v).is_integer() else v for v in values[:_MAX_VALUES_SHOWN]]
    suffix = ", ..." if len(values) > _MAX_VALUES_SHOWN else ""
    return "[" + ", ".join(str(v) for v in shown) + suffix + "]"


class RemapLabels(Transform):
    """
    Replace label values according to a mapping; every entry is applied to the *original* values, so swaps such as
    ``{1: 2, 2: 1}`` work.

    Datasets disagree with the tasks we train on: KiTS21 has a cyst class (3) that we count as kidney (``{3: 1}``),
    and MSD Task01 has three tumour sub-regions that become one lesion class (``{1: 1, 2: 1, 3: 1}``).

    Args:
        mapping: ``{source label: target label}``. String keys and values, as JSON configs produce, are accepted.
        strict: if True, a label value that is not a key of ``mapping`` raises an error naming the values and the file,
            instead of being kept as it is; include the background (``0: 0``) in the mapping when using it.
        dtype: data type of the output; None (default) keeps the input's.

    Example::

        kidney = RemapLabels({3: 1})(kits_label)                                  # {0,1,2,3} -> {0,1,2}
        lesion = RemapLabels({0: 0, 1: 1, 2: 1, 3: 1}, strict=True)(msd_label)     # {0,1,2,3} -> {0,1}

    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(self, mapping: Mapping, strict: bool = False, dtype: DtypeLike | torch.dtype | None = None) -> None:
        self.mapping = parse_label_mapping(mapping)
        self.strict = strict
        self.dtype = dtype

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: label image of any shape, integer or float.
        """
        labels = convert_to_tensor(img, track_meta=False)
        if self.strict:
            unexpected = [v for v in torch.unique(labels).tolist() if v not in self.mapping]
            if unexpected:
                raise TransformError(
                    f"RemapLabels: label values {_format_values(unexpected)}{describe_image_source(img)} are not in "
                    f"the mapping keys {_format_values(sorted(self.mapping))} (strict=True)."
                )
        remapped = labels.clone()
        for source, target in self.mapping.items():
            remapped[labels == source] = target
        out, *_ = convert_to_dst_type(remapped, dst=img, dtype=self.dtype)
        return out


class RemapLabelsd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_pruning.transforms.RemapLabels`.

    Args:
        keys: keys of the label images to remap. See also: monai.transforms.MapTransform
        mapping: ``{source label: target label}``; string keys from JSON are accepted.
        strict: if True, a label value missing from ``mapping`` raises an error instead of being kept.
        dtype: data type of the output; None (default) keeps the input's.
        allow_missing_keys: don't raise an exception if a key is missing.

    Example (bundle config, KiTS21: cyst -> kidney)::

        {"_target_": "monai_pruning.transforms.RemapLabelsd", "keys": "label", "mapping": {"3": 1}}

    """

    backend = RemapLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        mapping: Mapping,
        strict: bool = False,
        dtype: DtypeLike | torch.dtype | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.remapper = RemapLabels(mapping=mapping, strict=strict, dtype=dtype)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.remapper(d[key])
            except TransformError as err:
                raise TransformError(f"{err} [key '{key}']") from None
        return d
