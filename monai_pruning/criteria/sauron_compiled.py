"""
Sauron's regulariser (delta_opt with its pooled maps) and scoring (delta_prune) through ``torch.compile``, with a
fallback to the eager functions of :mod:`monai_pruning.criteria.sauron`.

The compiled functions are written as plain tensor operations in the order of the paper (min-max normalise, 2x average
pool, RMS distance to channel 0; the normalisation is affine per map, so it is applied after pooling, which gives the
same values) and compiled once with dynamic shapes: a cut changes a layer's channel count, and every layer has its
own map size, without a recompilation for either (only a group cut down to 2 channels compiles once more: a
dimension of size 1 is specialised). Autograd differentiates the compiled graph, so the gradient
equals the eager one except where a map's minimum or maximum is attained at several positions (the compiled one
shares it between them, the eager one gives it to the first).

Where compilation is unavailable (no C++ compiler for inductor, an unsupported Python) or fails, one warning says so
and every later call runs the eager functions.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from monai_pruning.criteria.sauron import (
    _at_least_float32,
    _check_channel_run,
    _check_feature_map,
    delta_opt_and_pooled,
    delta_prune,
)

__all__ = ["CompiledSauronTerms"]


def _pool_2x(maps: torch.Tensor) -> torch.Tensor:
    """2x average pooling along every spatial axis of size >= 2 (an odd size drops its last slice)."""
    pooled, window = maps, 1
    for axis in range(2, maps.ndim):
        size = pooled.shape[axis]
        if size < 2:
            continue
        pairs = list(pooled.shape)
        pairs[axis : axis + 1] = [size // 2, 2]
        pooled = pooled.narrow(axis, 0, size // 2 * 2).reshape(pairs).sum(axis + 1)
        window *= 2
    return pooled / window


def _delta_opt_terms(
    features: torch.Tensor, start: int, length: int, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C - 1) delta_opt distances of channels ``[start, start + length)`` and their detached pooled maps."""
    maps = features.narrow(1, start, length)
    flat = maps.flatten(2)
    view = maps.shape[:2] + (1,) * (maps.ndim - 2)
    low = flat.amin(dim=-1).reshape(view)
    scale = flat.amax(dim=-1).reshape(view) - low + eps
    pooled = _pool_2x(maps)
    normalized = (pooled - low) / scale
    distances = ((normalized[:, 1:] - normalized[:, :1]).square().flatten(2).mean(dim=-1) + eps).sqrt()
    return distances, pooled.detach()


def _delta_prune_scores(pooled: torch.Tensor, reference: int, eps: float) -> torch.Tensor:
    """(C,) delta_prune of already pooled maps against channel ``reference``."""
    distances = (pooled - pooled.narrow(1, reference, 1)).square().flatten(2).mean(dim=-1).sqrt()
    distances = distances / (distances.amax(dim=1, keepdim=True) + eps)
    scores = distances.mean(dim=0)
    keep = torch.arange(scores.shape[0], device=scores.device) != reference
    return scores * keep


class CompiledSauronTerms:
    """
    ``delta_opt_and_pooled`` and ``delta_prune`` compiled with ``torch.compile(dynamic=True)``, same signatures and
    results as the eager functions; what :class:`~monai_pruning.handlers.SauronPruning` runs with ``compile=True``.

    Compilation happens at the first call of each (and once more for a new number of spatial dims, dtype or grad
    mode), not at construction; it takes from seconds to a minute of CPU time with inductor.

    Args:
        backend: the ``torch.compile`` backend (``"inductor"`` generates fused C++ kernels on a CPU; ``"aot_eager"``
            only traces, for tests), or a backend callable.

    Example::

        terms = CompiledSauronTerms()
        distances, pooled = terms.delta_opt_and_pooled(features, channels=(0, 16))
        scores = terms.delta_prune(pooled, reference=3, pooled=True)
    """

    def __init__(self, backend: str | Callable[..., Any] = "inductor") -> None:
        self.backend = backend
        self.fallback_reason: str | None = None
        self._delta_opt = torch.compile(_delta_opt_terms, dynamic=True, backend=backend)
        self._delta_prune = torch.compile(_delta_prune_scores, dynamic=True, backend=backend)
        if not torch._dynamo.is_dynamo_supported():
            self._fall_back("torch.compile is not supported on this Python or platform")

    @property
    def compiled(self) -> bool:
        """False once compilation was found unavailable: the eager functions run instead."""
        return self.fallback_reason is None

    def _fall_back(self, reason: str) -> None:
        self.fallback_reason = reason
        warnings.warn(f"Sauron: torch.compile unavailable ({reason}); the regulariser and scoring run eagerly.",
                      RuntimeWarning, stacklevel=3)

    def _first_line(self, err: BaseException) -> str:
        """The first line of the innermost error: a compiler failure wraps the backend's own (e.g. no compiler)."""
        while (getattr(err, "inner_exception", None) or err.__cause__) is not None:
            err = getattr(err, "inner_exception", None) or err.__cause__
        text = str(err).strip()
        return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")

    def delta_opt_and_pooled(
        self, features: torch.Tensor, eps: float = 1e-8, channels: tuple[int, int] | None = None,
        clip_fraction: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        As :func:`~monai_pruning.criteria.delta_opt_and_pooled`, compiled; with ``clip_fraction`` above 0 (quantile
        normalisation), eager.
        """
        where = "CompiledSauronTerms.delta_opt_and_pooled"
        _check_feature_map(features, where)
        start, length = _check_channel_run(channels, features.shape[1], where)
        if clip_fraction:
            return delta_opt_and_pooled(features, eps, (start, length), clip_fraction)
        if self.compiled and length >= 2:
            try:
                return self._delta_opt(_at_least_float32(features), start, length, float(eps))
            except Exception as err:  # noqa: BLE001 - any compiler failure: fall back, say why once
                self._fall_back(self._first_line(err))
        return delta_opt_and_pooled(features, eps, (start, length))

    def delta_prune(
        self, features: torch.Tensor, reference: int, eps: float = 1e-15, pooled: bool = False
    ) -> torch.Tensor:
        """As :func:`~monai_pruning.criteria.delta_prune`, compiled (the maps are pooled eagerly if not yet)."""
        if not self.compiled or not pooled:
            return delta_prune(features, reference, eps, pooled)
        _check_feature_map(features, "CompiledSauronTerms.delta_prune")
        channels = features.shape[1]
        if isinstance(reference, bool) or not isinstance(reference, int) or not 0 <= reference < channels:
            raise ValueError(
                f"CompiledSauronTerms.delta_prune: `reference` must be a channel index in [0, {channels}), "
                f"got {reference!r}."
            )
        try:
            with torch.no_grad():
                return self._delta_prune(_at_least_float32(features.detach()), reference, float(eps))
        except Exception as err:  # noqa: BLE001
            self._fall_back(self._first_line(err))
        return delta_prune(features, reference, eps, pooled)
