"""The one exact k-NN index (``ml/mapping/knn.py``) against a brute-force search."""

from __future__ import annotations

import numpy as np
import pytest

from ml.mapping.knn import ExactL2Index


def _brute(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    d = np.linalg.norm(queries[:, None, :] - vectors[None, :, :], axis=2)
    rows = np.argsort(d, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(d, rows, axis=1), rows


def test_search_equals_brute_force_with_euclidean_distances(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(200, 16)).astype(np.float32)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    index = ExactL2Index.build(vectors)
    assert len(index) == 200 and index.dim == 16
    distances, rows = index.search(queries, 7)
    expected_d, expected_rows = _brute(vectors, queries, 7)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)  # distances, not squared
    one_d, one_rows = index.search(queries[0], 7)  # a single (d,) query, searched on one thread
    np.testing.assert_array_equal(one_rows[0], rows[0])
    index.write(tmp_path / "index.faiss")
    np.testing.assert_array_equal(ExactL2Index.read(tmp_path / "index.faiss").search(queries, 7)[1], rows)
    assert index.search(queries, 1000)[1].shape == (5, 200)  # k capped at the index size


def test_neighbours_of_a_row_leave_the_row_out_but_keep_its_duplicates():
    vectors = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    index = ExactL2Index.build(vectors)
    distances, rows = index.neighbors_of_row(0, vectors, 2)
    assert rows.tolist() == [1, 2] and distances.tolist() == pytest.approx([0.0, 1.0])
    far = index.neighbors_of_row(3, vectors, 10)[1].tolist()
    assert far[0] == 2 and sorted(far[1:]) == [0, 1]  # the two duplicates tie, in either order


def test_bad_queries_are_refused():
    index = ExactL2Index.build(np.zeros((3, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.zeros((1, 5)), 2)
    with pytest.raises(ValueError, match="at least 1"):
        index.search(np.zeros((1, 4)), 0)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        ExactL2Index.build(np.zeros(4))
