"""Shared fixtures.

``tiny_metadataset``: a small synthetic Double-digits meta-dataset (the real pipeline of
``neuromaml data build --source synthetic``, 100 classes "00".."99" x 6 samples, frames
(2, 16, 32, 100), the authors' split of 64 / 16 / 20 classes), built once per test session
in a temporary folder (about 3 s on 2 cores). Returns the Path of the .h5.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_PER_CLASS = 6


@pytest.fixture(scope="session")
def tiny_metadataset(tmp_path_factory) -> Path:
    from neuromaml.meta.metadataset import build_metadataset

    out = tmp_path_factory.mktemp("tiny_metadataset") / "tiny.h5"
    build_metadataset("synthetic", out, per_class=TINY_PER_CLASS, seed=0)
    return out


def pytest_configure(config):
    # Lava sets the multiprocessing start method at import; import it before any tqdm bar does
    from neuromaml.lavacompat import prepare_lava

    prepare_lava()
    # as the neuromaml command does: freed activation tensors stay in the heap
    from neuromaml.sysperf import keep_freed_memory

    keep_freed_memory()
