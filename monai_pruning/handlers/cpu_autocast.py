"""Mixed-precision forward passes on the CPU for MONAI engines, whose ``amp=True`` autocasts on CUDA only."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys, IgniteInfo, min_version, optional_import

Events, _ = optional_import("ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Events")
if TYPE_CHECKING:
    from ignite.engine import Engine
else:
    Engine, _ = optional_import(
        "ignite.engine", IgniteInfo.OPT_IMPORT_VERSION, min_version, "Engine", as_type="decorator"
    )

__all__ = ["CpuAutocast"]

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


class CpuAutocast:
    """
    Runs each iteration's network forward pass under ``torch.autocast("cpu")`` and hands the prediction on in
    float32, so the loss, its backward, post-processing and metrics stay in full precision.

    On CPUs with bfloat16 units (``avx512_bf16``, AMX) the convolutions of a training iteration take about half the
    time; elsewhere autocast still works but gains little. MONAI's ``SupervisedTrainer`` / ``SupervisedEvaluator``
    with ``amp=True`` autocast on CUDA only, hence this handler. The bundles attach it to the trainer only
    (``--cpu_bfloat16 true``), so validation and evaluation measure the network in float32, as it is deployed; with
    ``enabled=False`` it attaches nothing. Scoring passes that run outside iterations (TaylorFO's, at epoch end) stay
    in float32, and Sauron computes its regulariser in float32 on the bfloat16 maps. The autocast context opens at
    ``ITERATION_STARTED`` and closes at the engine's ``FORWARD_COMPLETED``; parameters and optimizer state stay
    float32.

    Example (a bundle's ``train.json``)::

        "train#handlers#cpu_autocast": {
            "_target_": "monai_pruning.handlers.CpuAutocast",
            "enabled": "$monai_pruning.config_values.read_flag(@cpu_bfloat16, 'cpu_bfloat16')"
        }

    Args:
        dtype: ``"bfloat16"`` (default; float32's range, so no loss scaling is needed) or ``"float16"``.
        enabled: False makes :meth:`attach` a no-op.
        pred_key: where the engine keeps the prediction in ``engine.state.output``.
    """

    def __init__(self, dtype: str = "bfloat16", enabled: bool = True, pred_key: str = CommonKeys.PRED) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"CpuAutocast: dtype must be one of {sorted(_DTYPES)}, got {dtype!r}.")
        if not isinstance(enabled, bool):
            raise ValueError(f"CpuAutocast: enabled must be true or false, got {enabled!r}.")
        self.dtype = _DTYPES[dtype]
        self.enabled = enabled
        self.pred_key = pred_key
        self._contexts: dict[int, torch.autocast] = {}

    def attach(self, engine: Engine) -> None:
        """Open autocast when each iteration starts and close it once the engine's forward pass is done."""
        if not self.enabled:
            return
        device = engine.state.device
        if device is not None and device.type != "cpu":
            raise ValueError(f"CpuAutocast: the engine runs on {device}; use the engine's own amp=True there.")
        engine.add_event_handler(Events.ITERATION_STARTED, self._open)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self)

    def _open(self, engine: Engine) -> None:
        self._close(engine)  # an iteration that raised before its forward pass ended left one open
        context = torch.autocast("cpu", dtype=self.dtype)
        context.__enter__()
        self._contexts[id(engine)] = context

    def _close(self, engine: Engine) -> None:
        context = self._contexts.pop(id(engine), None)
        if context is not None:
            context.__exit__(None, None, None)

    def __call__(self, engine: Engine) -> None:
        """Close autocast and give the loss and the metrics a float32 prediction (differentiable cast)."""
        self._close(engine)
        output = engine.state.output
        if isinstance(output, dict) and isinstance(output.get(self.pred_key), torch.Tensor):
            output[self.pred_key] = output[self.pred_key].float()
