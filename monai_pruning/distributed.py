"""
What pruning needs from ``torch.distributed`` under torchrun + DistributedDataParallel (``docs/design.md``).

Every rank holds a replica of the network and sees its own share of the data. A cut must be the same on every rank,
so the statistics behind it are summed over the ranks, rank 0 decides, and its decision is sent to all others as
plain data (JSON, never pickle). After a cut the parameters are new tensors that the old
``DistributedDataParallel`` reducer does not know about, so the replica is wrapped again with the same settings.

Without an initialised process group (one process), every function here is the identity or a no-op.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
from collections.abc import Iterator, Mapping
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "broadcast_plain",
    "end_process_group",
    "is_distributed",
    "rank",
    "rank_zero_first",
    "rewrap",
    "sum_each_over_ranks",
    "sum_over_ranks",
    "unwrap_network",
    "world_size",
    "wrapper_is_stale",
]


def _initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return world_size() > 1


def rank() -> int:
    """This process's rank; 0 without a process group."""
    return dist.get_rank() if _initialized() else 0


def world_size() -> int:
    """Number of processes in the process group; 1 without one."""
    return dist.get_world_size() if _initialized() else 1


def unwrap_network(network: nn.Module) -> nn.Module:
    """The network inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper, else ``network`` itself."""
    if isinstance(network, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
        return network.module
    return network


def _collective_device() -> torch.device:
    """NCCL only moves CUDA tensors; every other backend (gloo on the CPU) takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """A new tensor holding the element-wise sum of ``tensor`` over all ranks, on ``tensor``'s device and dtype."""
    if not is_distributed():
        return tensor.clone()
    work = tensor.detach().as_subclass(torch.Tensor).to(_collective_device(), torch.float64, copy=True)
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device, tensor.dtype)


def sum_each_over_ranks(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """
    :func:`sum_over_ranks` of every tensor of ``tensors`` (any shapes), in one collective; every rank must give the
    same names and shapes. Each result keeps its tensor's device and dtype.
    """
    if not tensors:
        return {}
    flat = sum_over_ranks(torch.cat([t.detach().double().cpu().flatten() for t in tensors.values()]))
    parts = flat.split([t.numel() for t in tensors.values()])
    return {name: part.view_as(t).to(t.device, t.dtype) for (name, t), part in zip(tensors.items(), parts)}


def broadcast_plain(value: Any, src: int = 0) -> Any:
    """
    ``value`` as rank ``src`` holds it, on every rank. Only JSON data (dicts with str keys, lists, str, numbers,
    bools, None) travels: decisions are plain data, and nothing received is ever unpickled.
    """
    if not is_distributed():
        return value
    device = _collective_device()
    payload = json.dumps(value).encode("utf-8") if rank() == src else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, src=src)
    buffer = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    if rank() == src:
        buffer.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    dist.broadcast(buffer, src=src)
    return json.loads(bytes(buffer.cpu().tolist()).decode("utf-8")) if rank() != src else value


@contextlib.contextmanager
def rank_zero_first() -> Iterator[None]:
    """
    Run the block on rank 0 first and on the other ranks after it, e.g. to write files (demo data, a split) once
    and have the others read them. Rank 0 reaches the barrier even when its block raises, so the other ranks run
    the block themselves (and usually raise the same error) instead of waiting for the collective timeout.
    """
    if not is_distributed():
        yield
        return
    if rank() != 0:
        dist.barrier()
        yield
        return
    try:
        yield
    finally:
        dist.barrier()


# settings of DistributedDataParallel.__init__ that the wrapper keeps under the same attribute name
_KEPT_SETTINGS = (
    "device_ids",
    "output_device",
    "dim",
    "process_group",
    "find_unused_parameters",
    "gradient_as_bucket_view",
    "static_graph",
    "mixed_precision",
    "skip_all_reduce_unused_params",
    "batched_grad_copy",
    "forward_sync_buffers",
)


def rewrap(wrapper: nn.parallel.DistributedDataParallel) -> nn.parallel.DistributedDataParallel:
    """
    A new ``DistributedDataParallel`` around ``wrapper.module`` with the old wrapper's settings (devices, process
    group, bucket size, unused-parameter search, static graph, ...). Collective: every rank must call it, after the
    same cut. The new wrapper broadcasts rank 0's parameters and buffers, so the replicas start identical.
    """
    if not isinstance(wrapper, nn.parallel.DistributedDataParallel):
        raise TypeError(f"rewrap: expected a DistributedDataParallel, got {type(wrapper).__name__}.")
    accepted = inspect.signature(type(wrapper).__init__).parameters
    settings = {name: getattr(wrapper, name) for name in _KEPT_SETTINGS if name in accepted and hasattr(wrapper, name)}
    if "forward_sync_buffers" not in accepted and "broadcast_buffers" in accepted:  # before torch 2.13
        settings["broadcast_buffers"] = getattr(wrapper, "broadcast_buffers", True)
    if "bucket_cap_mb" in accepted and getattr(wrapper, "bucket_bytes_cap", None):
        settings["bucket_cap_mb"] = wrapper.bucket_bytes_cap / (1024 * 1024)
    return type(wrapper)(wrapper.module, **settings)


def wrapper_is_stale(wrapper: nn.parallel.DistributedDataParallel) -> bool:
    """
    Whether ``wrapper.module`` holds parameters that ``wrapper`` was not built around, as after a pruning record
    loaded from a checkpoint reallocated them. The old reducer waits for gradients of parameters that are no longer
    in the graph: DDP stops at the next iteration with "Expected to have finished reduction in the prior iteration"
    (a misleading hint at unused parameters), or, with ``find_unused_parameters``, the replicas drift apart.
    Local: every rank answers for its own wrapper.
    """
    if not isinstance(wrapper, nn.parallel.DistributedDataParallel):
        raise TypeError(f"wrapper_is_stale: expected a DistributedDataParallel, got {type(wrapper).__name__}.")
    known = getattr(wrapper, "_module_parameters", None)
    if known is None:  # a torch without this attribute: assume the worst, a rewrap is only a broadcast
        return True
    ignored = getattr(wrapper, "parameters_to_ignore", set())
    current = [p for name, p in wrapper.module.named_parameters() if name not in ignored]
    return len(current) != len(known) or any(a is not b for a, b in zip(current, known))


#: What a ``DistributedDataParallel`` wrapper holds that keeps its process group (and gloo's threads) alive.
_GROUP_HOLDERS = ("reducer", "logger", "process_group")


def end_process_group() -> None:
    """
    Destroy the default process group at the end of a run, after releasing every ``DistributedDataParallel``
    wrapper's hold on it; a no-op without one.

    A wrapper's reducer keeps the process group alive after ``destroy_process_group()`` (a bundle's config and its
    trainer hold their wrappers until the interpreter exits), so gloo's worker threads met the interpreter's
    shutdown, where now and then they aborted a run that had succeeded ("terminate called without an active
    exception", SIGABRT; ``tests/process_groups.py`` says why). Measured on this project's 2-core machine (torch 2.13,
    two ranks under torchrun: a wrapper, three training steps, then the end of the run): 7 of 155 runs aborted with
    ``destroy_process_group()`` alone, none of 155 with the wrappers' holds released first, none of 120 with this
    function. Released here, the group is destroyed while the interpreter is fully alive. Call it last (the bundles'
    ``finalize``): the wrappers cannot run another step.
    """
    if not _initialized():
        return
    for item in gc.get_objects():
        if isinstance(item, nn.parallel.DistributedDataParallel):
            for name in _GROUP_HOLDERS:
                item.__dict__.pop(name, None)
    gc.collect()
    dist.destroy_process_group()
    gc.collect()
