"""Bidirectional triplet loss of cross-modal metric learning (Suzuki et al. 2022, eq. 1–3)."""

from __future__ import annotations

import torch
from torch import Tensor


def _random_positive(losses: Tensor, generator: torch.Generator | None) -> Tensor:
    """Per row, the loss of one column drawn uniformly among the columns with a positive
    loss (0 for a row without any), shape ``(B,)``."""
    scores = torch.rand(losses.shape, generator=generator, device=losses.device)
    scores = scores.masked_fill(losses <= 0, -1.0)
    pick = scores.argmax(dim=1)
    chosen = losses.gather(1, pick[:, None]).squeeze(1)
    return chosen.clamp_min(0.0)


def bidirectional_triplet_loss(
    crystal: Tensor, xrd: Tensor, margin: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """L = (1 / 2N) Σ_i (L_nx,i + L_ny,i) on unnormalised embeddings, Euclidean distance.

    For the pair (x_i crystal, y_i XRD):
      L_nx,i = max(0, ‖x_i − y_i‖ − ‖x'_i − y_i‖ + m), x'_i another crystal of the batch,
      L_ny,i = max(0, ‖x_i − y_i‖ − ‖x_i − y'_i‖ + m), y'_i another pattern of the batch,
    each negative drawn at random among those that give a positive loss.

    Args:
        crystal: ``(N, D)`` crystal embeddings x. xrd: ``(N, D)`` XRD embeddings y, row i
            the same material as ``crystal[i]``.
        margin: m.
        generator: random source for the choice of negatives.

    Raises:
        ValueError: shapes differ or N < 2.
    """
    if crystal.shape != xrd.shape or crystal.dim() != 2:
        raise ValueError(f"crystal {tuple(crystal.shape)} and xrd {tuple(xrd.shape)} must both be (N, D)")
    n = crystal.shape[0]
    if n < 2:
        raise ValueError("the triplet loss needs at least 2 materials in a batch")
    distance = torch.cdist(crystal, xrd)  # [i, j] = ‖x_i − y_j‖
    positive = distance.diagonal()
    eye = torch.eye(n, dtype=torch.bool, device=distance.device)
    loss_x = (positive[:, None] - distance.t() + margin).masked_fill(eye, 0.0)  # [i, j]: x'_i = x_j
    loss_y = (positive[:, None] - distance + margin).masked_fill(eye, 0.0)  # [i, j]: y'_i = y_j
    return (_random_positive(loss_x, generator).sum() + _random_positive(loss_y, generator).sum()) / (2 * n)
