"""Cross-modal retrieval accuracy, the validation metric of Suzuki et al. (2022)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def retrieval_topk(queries: np.ndarray, candidates: np.ndarray, ks: Sequence[int] = (1, 10), chunk: int = 2048) -> dict[int, float]:
    """Share of queries whose own candidate is among their k nearest (Euclidean).

    Query i (an XRD embedding) belongs with candidate i (the crystal embedding of the same
    material); all candidates compete. Ties count against the query.

    Args:
        queries: ``(n, D)``. candidates: ``(n, D)``, row-aligned with ``queries``.
        ks: the k values.

    Returns:
        ``{k: accuracy in [0, 1]}``.

    Raises:
        ValueError: shapes differ or are empty.
    """
    if queries.shape != candidates.shape or len(queries) == 0:
        raise ValueError(f"queries {queries.shape} and candidates {candidates.shape} must be equal, non-empty")
    q = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    c = torch.as_tensor(np.asarray(candidates, dtype=np.float32))
    ranks = []
    for start in range(0, len(q), chunk):
        d = torch.cdist(q[start : start + chunk], c)
        own = d[torch.arange(d.shape[0]), torch.arange(start, start + d.shape[0])]
        ranks.append((d <= own[:, None]).sum(dim=1) - 1)  # candidates at least as close, self excluded
    rank = torch.cat(ranks).numpy()
    return {int(k): float((rank < k).mean()) for k in ks}
