"""Keep an optimizer attached to a network whose parameters were replaced by smaller ones.

After a cut the optimizer still holds the old ``nn.Parameter`` objects: left alone it would keep updating tensors the
network no longer uses.  Each old parameter is swapped for its replacement in ``param_groups`` (hyper-parameters
untouched) and every per-parameter state tensor of the old shape (SGD ``momentum_buffer``, Adam/AdamW ``exp_avg``,
``exp_avg_sq``, ``max_exp_avg_sq``) is cut with the same indices; scalars such as ``step`` are carried over.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from monai_pruning.engine.surgery import ParameterSlice

__all__ = ["follow_parameter_slices"]


def follow_parameter_slices(optimizer: torch.optim.Optimizer, slices: Iterable[ParameterSlice]) -> int:
    """Re-point ``optimizer`` at the new parameters and cut its state alike; returns how many were replaced.

    A slice whose ``kept`` is empty means the parameter was reallocated rather than cut (a network resized from a
    pruning record): its state is dropped, since the optimizer's own ``load_state_dict`` is expected to follow.
    """
    by_old = {id(s.old): s for s in slices}
    replaced = 0
    for group in optimizer.param_groups:
        for k, param in enumerate(group["params"]):
            cut = by_old.get(id(param))
            if cut is None:
                continue
            group["params"][k] = cut.new
            state = optimizer.state.pop(param, None)
            if state and cut.kept:
                optimizer.state[cut.new] = {
                    key: cut.apply(value)
                    if isinstance(value, torch.Tensor) and value.shape == param.shape and value.dim() > 0
                    else value
                    for key, value in state.items()
                }
            replaced += 1
    return replaced
