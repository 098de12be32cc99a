"""Shared fixtures. Tests never download anything; models are random-init or trained by our own scripts."""

from __future__ import annotations

import os

import pytest

# 2-core CI machine: keep every native runtime from oversubscribing the cores under pytest-xdist
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    try:
        import torch
    except ImportError:  # the torch-free runtime tests run without it
        yield
        return
    torch.manual_seed(0)
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session", autouse=True)
def _step_cache(tmp_path_factory):
    """Steps cache their outputs (edgeformer.steps): tests get a cache of their own, never the user's. One per
    session (per xdist worker), so a test that re-runs a step with the same inputs sees a hit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEFORMER_CACHE_DIR", str(tmp_path_factory.mktemp("step-cache")))
        mp.delenv("EDGEFORMER_NO_CACHE", raising=False)
        yield
