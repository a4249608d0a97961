"""Exact Euclidean nearest neighbours: the one k-NN index of matmap (the map's embeddings, the
baseline descriptors), a thin layer over faiss' ``IndexFlatL2``.

Neighbours are searched in the embedding (or descriptor) space, never on the 2D map. Distances
come back as Euclidean distances in the vectors' own units (faiss returns squared ones). A
search of a single query runs on one OpenMP thread: spread over every core, one exact search of
141k × 128 took 37 ms instead of 10 ms on a busy 2-core machine (``bench/locate_threads.py``);
batches keep faiss' threads. faiss is imported on first use, so importing this module is cheap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ExactL2Index:
    """Exact L2 k-NN over ``n`` fixed vectors of dimension ``d``.

    Build with :meth:`build` (from vectors) or :meth:`read` (a file written by :meth:`write`).
    """

    def __init__(self, faiss_index) -> None:
        self.faiss_index = faiss_index

    @classmethod
    def build(cls, vectors: np.ndarray) -> ExactL2Index:
        """An index of ``vectors`` ``(n, d)`` (copied as float32).

        Raises:
            ValueError: not a 2-D array.
        """
        import faiss

        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2:
            raise ValueError(f"vectors must be (n, d), got shape {vectors.shape}")
        index = faiss.IndexFlatL2(vectors.shape[1])
        index.add(vectors)
        return cls(index)

    @classmethod
    def read(cls, path: str | Path) -> ExactL2Index:
        """The index stored at ``path`` (faiss' own format)."""
        import faiss

        return cls(faiss.read_index(str(path)))

    def write(self, path: str | Path) -> None:
        """Store the index at ``path`` (faiss' own format)."""
        import faiss

        faiss.write_index(self.faiss_index, str(path))

    def __len__(self) -> int:
        return int(self.faiss_index.ntotal)

    @property
    def dim(self) -> int:
        """Dimension d of the vectors."""
        return int(self.faiss_index.d)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest vectors of each query, nearest first.

        Args:
            queries: ``(m, d)`` or ``(d,)``.
            k: neighbours per query (at most the index size; rows of -1 never occur then).

        Returns:
            ``(distances, rows)``, each ``(m, min(k, n))``: Euclidean distances (≥ 0) and row
            numbers of the indexed vectors.

        Raises:
            ValueError: ``k`` < 1 or queries of another dimension.
        """
        queries = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if queries.shape[1] != self.dim:
            raise ValueError(f"queries have {queries.shape[1]} dimensions, the index {self.dim}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        k = min(int(k), len(self))
        if len(queries) == 1:
            squared, rows = self._search_on_one_thread(queries, k)
        else:
            squared, rows = self.faiss_index.search(queries, k)
        return np.sqrt(np.maximum(squared, 0)), rows

    def _search_on_one_thread(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss' search on one OpenMP thread (this thread's setting, restored afterwards)."""
        import faiss

        before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.faiss_index.search(query, k)
        finally:
            faiss.omp_set_num_threads(before)

    def neighbors_of_row(self, row: int, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest OTHER vectors of indexed row ``row`` (``vectors`` the indexed ones):
        ``(distances, rows)``, each ``(≤ k,)``; an exact duplicate of the row is kept, the row
        itself is not."""
        distances, rows = self.search(np.asarray(vectors[row]), k + 1)
        keep = (rows[0] >= 0) & (rows[0] != row)
        return distances[0][keep][:k], rows[0][keep][:k]
