"""Fixtures of every test."""

from __future__ import annotations

import sys

import pytest


@pytest.fixture(autouse=True)
def torch_thread_count_kept():
    """Fail a test that leaves torch on another intra-op thread count than it found.

    A leaked count slows every later test, and it changes float32 rounding, so a later build
    gives another t-SNE layout than one made before (``ml.threads``). Set it with
    ``ml.threads.torch_threads``."""
    torch = sys.modules.get("torch")
    before = None if torch is None else torch.get_num_threads()
    yield
    if before is not None:
        after = torch.get_num_threads()
        assert after == before, f"the test left torch on {after} threads instead of {before} (use ml.threads.torch_threads)"
