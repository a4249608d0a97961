"""Scoped torch thread counts: library code that wants fewer intra-op threads sets them for
its own work and restores them, so a caller's later work (the next build step, the next test)
runs on the count it had.

Why it matters beyond speed: torch's vectorised element-wise kernels and BLAS split work by the
thread count, so float32 results move by rounding (≈1e-7) with it, and t-SNE amplifies that
into a different layout (``tests/app/test_staged_build.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run torch on ``n`` intra-op threads in the calling thread, restored afterwards (the
    setting is the calling thread's OpenMP one: other threads of a server keep theirs).

    Raises:
        ValueError: ``n`` < 1.
    """
    import torch

    if n < 1:
        raise ValueError(f"a thread count must be at least 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
