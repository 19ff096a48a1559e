"""
Test code on the ranks of a gloo process group, each rank in its own fresh process, with deadlines.

The pytest process itself never joins a process group: gloo's threads and sockets then cannot outlive a test or
meet state left by earlier ones. A collective that never completes raises after ``COLLECTIVE_TIMEOUT`` inside the
rank, and ranks that do not finish by ``deadline`` are killed, so a stuck test fails with a message instead of
holding the whole suite until CI gives up.

A rank that has finished leaves its group in step with the others and ends without shutting the interpreter down.
Interpreter shutdown is what aborted ranks now and then ("terminate called without an active exception", SIGABRT):
``destroy_process_group`` does not stop gloo's threads while anything still holds the group, and torch itself keeps
references to it once a DistributedDataParallel has been built. A gloo worker thread that releases a finished
collective late (descheduled on a loaded machine) frees a tensor whose Python object it owns, and so takes the GIL;
during shutdown Python ends such a thread with ``pthread_exit``, and that unwind through a ``noexcept`` destructor
calls ``std::terminate``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT = timedelta(seconds=120)
# Imported once by the server process that every rank is forked from ("forkserver"), instead of again by every spawned
# rank: seconds per rank on 2 cores. After these imports the server holds a single thread and no process group or
# device state, so each forked rank starts as clean as a spawned one.
PRELOAD = ["torch", "torch.distributed", "torch.nn.parallel", "monai", "ignite.engine", "monai_pruning.handlers"]


@contextlib.contextmanager
def gloo_group(init_file: str | Path, rank: int, world_size: int) -> Iterator[None]:
    """
    This process as ``rank`` of a gloo group that meets in ``init_file``, for a worker run by :func:`run_ranks`.

    Leaving the block normally waits at a barrier until every rank has left its last collective, then destroys the
    group; an exception destroys it at once.
    """
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size, timeout=COLLECTIVE_TIMEOUT
    )
    try:
        yield
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _rank_main(rank: int, worker: Callable[..., None], *args: object) -> None:
    """
    Run ``worker`` and, when it returns, end the process at once: its results are on disk, and a gloo thread still
    alive (the group outlives ``destroy_process_group``) must not meet a shutting-down interpreter. An exception
    goes to ``torch.multiprocessing`` as usual, which reports it to the test.
    """
    worker(rank, *args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def run_ranks(worker: Callable[..., None], world_size: int, *args: object, deadline: float = 300.0) -> None:
    """
    ``worker(rank, *args)`` in ``world_size`` new processes (forked from a server that imported ``PRELOAD`` once); a
    worker joins its group with :func:`gloo_group`.
    An exception in a rank fails the test with that rank's traceback; ranks still running after ``deadline`` seconds
    are killed and the test fails.
    """
    mp.set_forkserver_preload(PRELOAD)  # no effect once the server runs (it keeps what it preloaded first)
    ranks = mp.start_processes(
        _rank_main, args=(worker, *args), nprocs=world_size, join=False, start_method="forkserver"
    )
    give_up = time.monotonic() + deadline
    while not ranks.join(timeout=1.0):
        if time.monotonic() > give_up:
            for process in ranks.processes:
                process.kill()
            for process in ranks.processes:
                process.join()
            pytest.fail(f"{getattr(worker, '__name__', worker)} on {world_size} rank(s) did not finish within "
                        f"{deadline:.0f} s (a collective that never completed?)", pytrace=False)
