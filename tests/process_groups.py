"""
Test code on the ranks of a gloo process group, each rank in its own spawned process, with deadlines.

The pytest process itself never joins a process group: gloo's threads and sockets then cannot outlive a test or
meet state left by earlier ones. A collective that never completes raises after ``COLLECTIVE_TIMEOUT`` inside the
rank, and ranks that do not finish by ``deadline`` are killed, so a stuck test fails with a message instead of
holding the whole suite until CI gives up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT = timedelta(seconds=120)


@contextlib.contextmanager
def gloo_group(init_file: str | Path, rank: int, world_size: int) -> Iterator[None]:
    """This process as ``rank`` of a gloo group that meets in ``init_file``; destroyed on leaving the block."""
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def run_ranks(worker: Callable[..., None], world_size: int, *args: object, deadline: float = 300.0) -> None:
    """
    ``worker(rank, *args)`` in ``world_size`` spawned processes. An exception in a rank fails the test with that
    rank's traceback; ranks still running after ``deadline`` seconds are killed and the test fails.
    """
    ranks = mp.start_processes(worker, args=args, nprocs=world_size, join=False, start_method="spawn")
    give_up = time.monotonic() + deadline
    while not ranks.join(timeout=1.0):
        if time.monotonic() > give_up:
            for process in ranks.processes:
                process.kill()
            for process in ranks.processes:
                process.join()
            pytest.fail(f"{getattr(worker, '__name__', worker)} on {world_size} rank(s) did not finish within "
                        f"{deadline:.0f} s (a collective that never completed?)", pytrace=False)
