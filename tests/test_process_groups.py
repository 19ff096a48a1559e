"""
The spawned ranks of the process-group test helper end cleanly, even with gloo threads still at work.

A rank whose worker has returned may still have a gloo worker thread releasing a finished collective (the flaky DDP
tests: that thread was descheduled on a loaded machine). If it releases a tensor whose Python object it owns while the
interpreter shuts down, Python ends it with ``pthread_exit`` and the rank aborts. Here the late release is made
likely: each rank drops tensors right after their collectives, and keeps the GIL from gloo's threads until it blocks
or shuts down. Against a helper that lets the interpreter shut down, about one run in four aborts a rank.
"""

from __future__ import annotations

import sys

import pytest
import torch
import torch.distributed as dist
from torch import nn

from process_groups import gloo_group, run_ranks

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")


def _late_release_worker(rank: int, init_file: str) -> None:
    torch.set_num_threads(1)
    sys.setswitchinterval(5.0)  # a thread waiting for the GIL gets it only when this one blocks, or at shutdown
    with gloo_group(init_file, rank, 2):
        nn.parallel.DistributedDataParallel(nn.Linear(2, 2))  # from here on torch itself keeps the group alive
        for _ in range(20):  # each time, gloo's thread may still hold the collective when the tensor is let go
            tensor = torch.ones(1 << 12)
            dist.all_reduce(tensor)
            del tensor


def test_ranks_end_cleanly_while_a_gloo_thread_still_releases_a_collective(tmp_path):
    run_ranks(_late_release_worker, 2, str(tmp_path / "init"), deadline=120.0)
