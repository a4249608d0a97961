"""The VAE's condition: formation-energy deciles (edges from the training split, one-hot labels)."""

from __future__ import annotations

import numpy as np


def decile_edges(formation_energy_per_atom, n_deciles: int = 10) -> np.ndarray:
    """Inner bin edges, eV/atom, at the quantiles ``1/n … (n-1)/n`` of the given (training)
    values, shape ``(n_deciles - 1,)``.

    Raises:
        ValueError: no finite value.
    """
    values = np.asarray(formation_energy_per_atom, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        raise ValueError("no finite formation energies to cut into deciles")
    return np.quantile(values, np.arange(1, n_deciles) / n_deciles)


def assign_deciles(formation_energy_per_atom, edges: np.ndarray) -> np.ndarray:
    """Bin index ``0 … len(edges)`` of each value (0 = most negative, i.e. most stable),
    int64 ``(n,)``; a value equal to an edge goes to the upper bin."""
    return np.searchsorted(np.asarray(edges), np.asarray(formation_energy_per_atom, dtype=float), side="right").astype(
        np.int64
    )


def one_hot_deciles(decile, n_deciles: int = 10) -> np.ndarray:
    """The VAE's condition: float32 ``(n, n_deciles)`` one-hot rows of the decile indices.

    Raises:
        ValueError: an index outside ``0 … n_deciles - 1``.
    """
    decile = np.asarray(decile, dtype=np.int64)
    if decile.size and (decile.min() < 0 or decile.max() >= n_deciles):
        raise ValueError(f"decile indices must be in 0–{n_deciles - 1}")
    return np.eye(n_deciles, dtype=np.float32)[decile]
