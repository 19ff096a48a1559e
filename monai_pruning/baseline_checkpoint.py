"""Keep the unpruned baseline's checkpoint when a pruning run starts from it and then writes ``model.pt``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from monai_pruning.distributed import rank_zero_first

__all__ = ["keep_baseline"]


def keep_baseline(model_path: str | os.PathLike, baseline_path: str | os.PathLike) -> str:
    """Return ``baseline_path``, first copying ``model_path`` there if no baseline was kept yet.

    A pruning overlay (``prune_taylorfo.json``) fine-tunes from the trained baseline and saves the pruned model as
    ``models/model.pt``, the file inference uses.  Copying the baseline aside once, before that, keeps it for the
    next pruning run and for the side-by-side benchmark.

    In a ``torch.distributed`` process group every rank must call it (rank 0 copies, the others then find the copy).

    Raises:
        FileNotFoundError: neither file exists (the baseline was never trained).
    """
    baseline = Path(baseline_path)
    with rank_zero_first():  # under torchrun: rank 0 copies, the other ranks then find the copy
        if baseline.is_file():
            return str(baseline)
        source = Path(model_path)
        if not source.is_file():
            raise FileNotFoundError(
                f"no baseline checkpoint: neither {baseline} nor {source} exists; train the baseline first "
                "(configs/train.json) or pass --baseline_checkpoint <path>"
            )
        partial = baseline.with_name(baseline.name + ".partial")
        shutil.copyfile(source, partial)
        os.replace(partial, baseline)
        return str(baseline)
