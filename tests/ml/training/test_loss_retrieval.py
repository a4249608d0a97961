"""The bidirectional triplet loss and the cross-modal retrieval metric."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.training.loss import bidirectional_triplet_loss
from ml.evaluation.retrieval import retrieval_topk


def two_close_pairs() -> tuple[torch.Tensor, torch.Tensor]:
    """4 materials: 0 and 1 close together, 2 and 3 close together, the two groups far apart.

    Each crystal sits 0.1 above its own XRD embedding, so for every row exactly one other
    material (its group partner) gives a positive triplet loss, in both directions.
    """
    places = torch.tensor([[0.0, 0.0], [0.5, 0.0], [10.0, 0.0], [10.0, 0.7]], dtype=torch.float64)
    xrd = places.clone()
    crystal = places + torch.tensor([0.0, 0.1], dtype=torch.float64)
    return crystal, xrd


def direct_loss(crystal: np.ndarray, xrd: np.ndarray, margin: float) -> float:
    """(1 / 2N) Σ_i (L_nx + L_ny), each with the one negative that gives a positive loss."""
    n = len(crystal)
    total = 0.0
    for i in range(n):
        positive = np.linalg.norm(crystal[i] - xrd[i])
        lx = [positive - np.linalg.norm(crystal[j] - xrd[i]) + margin for j in range(n) if j != i]
        ly = [positive - np.linalg.norm(crystal[i] - xrd[j]) + margin for j in range(n) if j != i]
        assert sum(v > 0 for v in lx) == 1 and sum(v > 0 for v in ly) == 1  # the construction
        total += max(lx) + max(ly)
    return total / (2 * n)


def test_equals_direct_computation_with_one_positive_negative_per_row():
    crystal, xrd = two_close_pairs()
    expected = direct_loss(crystal.numpy(), xrd.numpy(), 1.0)
    # with one candidate per row, the random choice of negatives cannot matter
    for seed in range(5):
        loss = bidirectional_triplet_loss(crystal, xrd, 1.0, torch.Generator().manual_seed(seed))
        assert float(loss) == pytest.approx(expected, rel=1e-12)
    assert expected > 0.3  # a real, non-trivial value


def test_margin_enters_linearly():
    crystal, xrd = two_close_pairs()
    low = float(bidirectional_triplet_loss(crystal, xrd, margin=1.0))
    high = float(bidirectional_triplet_loss(crystal, xrd, margin=1.5))
    # every row keeps its single positive negative, so each of the 2N terms grows by 0.5
    assert high - low == pytest.approx(0.5, rel=1e-9)


def test_zero_when_all_materials_are_farther_apart_than_the_margin():
    g = torch.Generator().manual_seed(0)
    places = torch.arange(6, dtype=torch.float32)[:, None] * 5.0 * torch.ones(1, 3)
    crystal = places + 0.01 * torch.randn(6, 3, generator=g)
    xrd = places + 0.01 * torch.randn(6, 3, generator=g)
    assert float(bidirectional_triplet_loss(crystal, xrd, margin=1.0)) == 0.0


def positive_terms(crystal: np.ndarray, xrd: np.ndarray, margin: float) -> list[list[float]]:
    """For each of the 2N (row, direction) terms, the losses of the negatives that are positive."""
    n = len(crystal)
    terms = []
    for i in range(n):
        positive = np.linalg.norm(crystal[i] - xrd[i])
        lx = [positive - np.linalg.norm(crystal[j] - xrd[i]) + margin for j in range(n) if j != i]
        ly = [positive - np.linalg.norm(crystal[i] - xrd[j]) + margin for j in range(n) if j != i]
        terms += [[v for v in lx if v > 0] or [0.0], [v for v in ly if v > 0] or [0.0]]
    return terms


def test_negatives_are_drawn_uniformly_among_the_positive_ones():
    crystal = torch.tensor([[0.0, 0.3], [0.4, 0.0], [-0.6, 0.0], [20.0, 0.0]], dtype=torch.float64)
    xrd = torch.tensor([[0.0, 0.0], [0.4, 0.5], [-0.6, 0.5], [20.0, 0.2]], dtype=torch.float64)
    terms = positive_terms(crystal.numpy(), xrd.numpy(), 1.0)
    assert max(len(t) for t in terms) >= 2  # some rows have a choice
    low = sum(min(t) for t in terms) / 8
    high = sum(max(t) for t in terms) / 8
    expected_mean = sum(np.mean(t) for t in terms) / 8
    draws = np.array([float(bidirectional_triplet_loss(crystal, xrd, 1.0, torch.Generator().manual_seed(s)))
                      for s in range(400)])
    assert np.all(draws >= low - 1e-12) and np.all(draws <= high + 1e-12)
    assert len(np.unique(draws.round(9))) > 2
    # uniform choice: the average over draws is the average of the positive losses
    spread = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - expected_mean) < 4 * spread + 1e-9


def test_gradient_reaches_both_encoders():
    crystal, xrd = two_close_pairs()
    crystal.requires_grad_(True)
    xrd.requires_grad_(True)
    loss = bidirectional_triplet_loss(crystal, xrd)
    loss.backward()
    assert crystal.grad is not None and xrd.grad is not None
    assert crystal.grad.abs().sum() > 0 and xrd.grad.abs().sum() > 0
    # a small step against the gradient lowers the loss
    with torch.no_grad():
        after = bidirectional_triplet_loss(crystal - 0.01 * crystal.grad, xrd - 0.01 * xrd.grad)
    assert float(after) < float(loss.detach())


@pytest.mark.parametrize(
    "crystal, xrd",
    [
        (torch.zeros(4, 3), torch.zeros(4, 2)),
        (torch.zeros(4, 3), torch.zeros(3, 3)),
        (torch.zeros(4), torch.zeros(4)),
        (torch.zeros(1, 3), torch.zeros(1, 3)),
    ],
)
def test_bad_shapes_raise(crystal, xrd):
    with pytest.raises(ValueError):
        bidirectional_triplet_loss(crystal, xrd)


# --------------------------------------------------------------------------- retrieval


def test_retrieval_is_perfect_when_queries_are_the_candidates():
    points = np.random.default_rng(0).normal(size=(50, 8))
    assert retrieval_topk(points, points, ks=(1, 5, 10)) == {1: 1.0, 5: 1.0, 10: 1.0}


def test_retrieval_known_value():
    candidates = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    queries = np.array([[0.0], [0.1], [2.9], [3.0], [-1.0]])
    # rank of the own candidate: q0 0; q1 1 (c0 closer); q2 1 (c3 closer); q3 0; q4 4 (c0…c3 closer)
    result = retrieval_topk(queries, candidates, ks=(1, 2, 4, 5))
    assert result == {1: 0.4, 2: 0.8, 4: 0.8, 5: 1.0}
    # chunking the queries does not change the ranks
    assert retrieval_topk(queries, candidates, ks=(1, 2, 4, 5), chunk=2) == result


def test_retrieval_ties_count_against_the_query():
    candidates = np.array([[0.0], [2.0]])
    queries = np.array([[1.0], [2.0]])  # q0 is as close to c1 as to c0
    assert retrieval_topk(queries, candidates, ks=(1, 2)) == {1: 0.5, 2: 1.0}


def test_retrieval_bad_shapes():
    with pytest.raises(ValueError):
        retrieval_topk(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        retrieval_topk(np.zeros((0, 2)), np.zeros((0, 2)))
