"""Shared test set-up: test-support modules importable, one torch thread.

One thread keeps the many tiny forward passes of the suite fast and their timing stable on a 2-core CI machine
(two threads spinning against each other on tiny tensors cost far more than they gain).  Bundle tests run
``python -m monai.bundle`` in subprocesses, which keep torch's default.
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent / "bundles"))
torch.set_num_threads(1)
