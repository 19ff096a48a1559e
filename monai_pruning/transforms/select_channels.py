"""Keep a subset of image channels, chosen by index or by the modality names of an MSD dataset.json."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor

from monai_pruning.transforms.errors import TransformError
from monai_pruning.transforms.image_source import describe_image_source

__all__ = ["SelectChannels", "SelectChannelsd", "parse_modality", "resolve_channels"]

logger = logging.getLogger(__name__)


def parse_modality(modality: Mapping) -> list[str]:
    """
    Turn an MSD ``dataset.json`` "modality" mapping (``{"0": "FLAIR", "1": "T1w", ...}``) into the list of channel
    names in channel order.

    The keys must be exactly the channel indices 0..n-1 (as strings or ints), because the position of a name in the
    image is what selection by name relies on.
    """
    if not isinstance(modality, Mapping) or len(modality) == 0:
        raise TransformError(
            f"SelectChannels: modality must be a non-empty dict like {{'0': 'FLAIR'}}, got {modality!r}."
        )
    by_index: dict[int, str] = {}
    for key, name in modality.items():
        try:
            index = int(key) if not isinstance(key, bool) else None
        except (TypeError, ValueError):
            index = None
        if index is None or str(index) != str(key).strip():
            raise TransformError(
                f"SelectChannels: modality key {key!r} is not a channel index (expected '0', '1', ...)."
            )
        if not isinstance(name, str) or not name:
            raise TransformError(f"SelectChannels: modality name for channel {key!r} must be a non-empty string.")
        by_index[index] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise TransformError(f"SelectChannels: modality keys must be 0..{len(by_index) - 1}, got {sorted(by_index)}.")
    return [by_index[i] for i in range(len(by_index))]


def resolve_channels(channels: int | str | Sequence[int | str], names: Sequence[str] | None = None) -> list[int]:
    """
    Turn channel indices and/or names into indices, in the order given.

    Names are matched exactly first and then ignoring case, because MSD mixes cases within one file
    (Task01: "FLAIR", "T1w", "t1gd", "T2w").

    A dataset with a single channel has nothing to choose from: one name that is not its channel's name selects that
    channel, with a warning naming both (MSD Task04_Hippocampus calls its T1-weighted channel "MRI", and a bundle that
    asks for "T1w" should read it as it is). Two or more channels cannot come from one, so that stays an error.
    """
    wanted = [channels] if isinstance(channels, (int, str)) else list(channels)
    if len(wanted) == 0:
        raise TransformError("SelectChannels: channels is empty; give at least one channel index or name.")
    if names is not None and len(names) == 1 and len(wanted) == 1 and isinstance(wanted[0], str):
        if wanted[0].lower() != names[0].lower():
            logger.warning(
                "SelectChannels: the dataset has one channel, %r; using it for the requested channel %r.",
                names[0],
                wanted[0],
            )
        return [0]
    indices: list[int] = []
    for item in wanted:
        if isinstance(item, bool) or not isinstance(item, (int, str)):
            raise TransformError(f"SelectChannels: channel {item!r} must be an int index or a modality name.")
        if isinstance(item, int):
            if item < 0:
                raise TransformError(f"SelectChannels: channel index {item} is negative; use indices from 0.")
            indices.append(item)
            continue
        if names is None:
            raise TransformError(
                f"SelectChannels: channel name {item!r} needs the modality mapping of the dataset.json (modality=...)."
            )
        exact = [i for i, name in enumerate(names) if name == item]
        loose = [i for i, name in enumerate(names) if name.lower() == item.lower()]
        matches = exact or loose
        if len(matches) != 1:
            problem = "is not one of" if not matches else "matches more than one of"
            raise TransformError(f"SelectChannels: channel name {item!r} {problem} the modality names {list(names)}.")
        indices.append(matches[0])
    return indices


class SelectChannels(Transform):
    """
    Keep the given channels of a channel-first image, in the given order.

    MSD multi-modal tasks store all sequences in one 4D file; an experiment that uses only some of them (e.g. a
    FLAIR-only lesion model) should say so by name, so that the config reads the same as the paper and does not
    silently pick the wrong sequence if a dataset orders its channels differently.

    Args:
        channels: channel indices (ints) and/or modality names (strs); a single int or str selects one channel.
            The output always keeps the channel dimension.
        modality: the "modality" mapping of the MSD ``dataset.json`` (``{"0": "FLAIR", "1": "T1w", ...}``); needed
            to select by name. When given, the image must have exactly that many channels. A mapping of one channel
            gives that channel for any one name, with a warning (see :func:`resolve_channels`).

    Example::

        modality = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
        flair_t2 = SelectChannels(["FLAIR", "T2w"], modality=modality)(image)  # (4, H, W, D) -> (2, H, W, D)
        first = SelectChannels(0)(image)                                       # (4, H, W, D) -> (1, H, W, D)

    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]

    def __init__(
        self, channels: int | str | Sequence[int | str], modality: Mapping[str | int, str] | None = None
    ) -> None:
        self.names = parse_modality(modality) if modality is not None else None
        self.indices = resolve_channels(channels, self.names)
        if self.names is not None and max(self.indices) >= len(self.names):
            raise TransformError(
                f"SelectChannels: channel index {max(self.indices)} is out of range for the "
                f"{len(self.names)} modality names {self.names}."
            )

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """
        Args:
            img: channel-first image, shape (C, spatial...).
        """
        shape = tuple(img.shape)
        if len(shape) < 2:
            raise TransformError(
                f"SelectChannels: expected a channel-first image (C, spatial...), got shape {shape}"
                f"{describe_image_source(img)}."
            )
        if self.names is not None and shape[0] != len(self.names):
            raise TransformError(
                f"SelectChannels: image{describe_image_source(img)} has {shape[0]} channels but the modality mapping "
                f"names {len(self.names)} ({self.names})."
            )
        if max(self.indices) >= shape[0]:
            raise TransformError(
                f"SelectChannels: channel index {max(self.indices)} is out of range for an image with {shape[0]} "
                f"channels (shape {shape}){describe_image_source(img)}."
            )
        data = convert_to_tensor(img, track_meta=False)
        selected = torch.index_select(data, 0, torch.as_tensor(self.indices, device=data.device))
        out, *_ = convert_to_dst_type(selected, dst=img)
        return out


class SelectChannelsd(MapTransform):
    """
    Dictionary-based wrapper of :py:class:`monai_pruning.transforms.SelectChannels`.

    Args:
        keys: keys of the images whose channels are selected. See also: monai.transforms.MapTransform
        channels: channel indices and/or modality names.
        modality: the "modality" mapping of the MSD ``dataset.json``; needed to select by name.
        allow_missing_keys: don't raise an exception if a key is missing.

    Example (bundle config, MSD Task01 FLAIR only)::

        {"_target_": "monai_pruning.transforms.SelectChannelsd", "keys": "image", "channels": ["FLAIR"],
         "modality": {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}}

    """

    backend = SelectChannels.backend

    def __init__(
        self,
        keys: KeysCollection,
        channels: int | str | Sequence[int | str],
        modality: Mapping[str | int, str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.selector = SelectChannels(channels=channels, modality=modality)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.selector(d[key])
            except TransformError as err:
                raise TransformError(f"{err} [key '{key}']") from None
        return d
