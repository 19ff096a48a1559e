"""Bundle trainings shared by several test modules: each runs once per test session, on first use."""

from __future__ import annotations

import pytest

from bundle_cli import TINY_3D, configs, copy_bundle, monai_bundle


@pytest.fixture(scope="session")
def trained_3d_bundle(tmp_path_factory):
    """
    ``trained_3d_bundle(name)``: a copy of the 3D bundle ``name`` after its plain training (``train.json``) on tiny
    demo data (``TINY_3D``, two epochs, one OpenMP thread), trained the first time it is asked for.

    The bundle's own module (test_kidney_bundle.py, test_brain_bundle.py) evaluates, infers and exports in this
    folder; tests that train further (the pruning overlays) copy its ``models/`` and ``data/`` into a fresh copy
    of the bundle instead of training their own baseline.
    """
    trained = {}

    def train(name: str):
        if name not in trained:
            root = copy_bundle(name, tmp_path_factory.mktemp(name))
            # the tiny 3-D networks gain nothing from more threads, and two threads waiting for each other on a busy
            # machine made every training step about 8x slower
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("OMP_NUM_THREADS", "1")
                monai_bundle(root, "run", "--config_file", configs("train.json"), "--meta_file",
                             "configs/metadata.json", *TINY_3D)
            trained[name] = root
        return trained[name]

    return train
