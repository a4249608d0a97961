"""Synthetic voxel tensors of the real shapes for the voxel VAE's tests (``test_vae3d*.py``): a tiny
configuration, a tiny model, and crystals of two atoms each.

Imported by the test modules (``from vae_tensors import ...``) like ``tests/ml/voxel_store.py``.
"""

from __future__ import annotations

import torch

from ml.models.vae3d import CondVAE3D, VAE3DConfig, one_hot_decile
from ml.models.vae3d_slots import EMPTY

G = 16  # the smallest grid the model accepts (4 max-pools)
V = 5  # element classes in the tiny vocabulary
E = 3  # element embedding length
LATENT = 8
TWO = torch.tensor([2, 2])  # the site count of two crystals of :func:`tiny_crystals`


def tiny_config(**kw) -> VAE3DConfig:
    return VAE3DConfig(**{"n_species": V, "species_embedding": E, "latent_dim": LATENT, "channels": (4, 4, 8, 8),
                          "grid": G, **kw})


def tiny_vae(**kw) -> CondVAE3D:
    return CondVAE3D(tiny_config(**kw))


def tiny_crystals(n: int, seed: int = 0):
    """``n`` synthetic crystals of two atoms each: density ``(n, G, G, G)`` (unit Gaussians),
    species ``(n, G, G, G)`` class indices (−1 empty) of two different elements, cell length
    ``(n,)`` Å and one-hot deciles ``(n, 10)``."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.arange(G, dtype=torch.float32)
    density = torch.zeros(n, G, G, G)
    species = torch.full((n, G, G, G), EMPTY, dtype=torch.long)
    for i in range(n):
        elements = torch.randperm(V, generator=g)[:2]
        for atom, element in enumerate(elements):
            centre = torch.randint(0, G, (3,), generator=g).float() if atom == 0 else (centre + G / 2) % G
            delta = [(axis - centre[k] + G / 2) % G - G / 2 for k in range(3)]  # periodic offsets
            d2 = delta[0][:, None, None] ** 2 + delta[1][None, :, None] ** 2 + delta[2][None, None, :] ** 2
            density[i] += torch.exp(-d2 / (2 * 1.2**2))
            species[i][d2 <= 4.0] = int(element)
    lattice = 3.0 + 3.0 * torch.rand(n, generator=g)
    condition = one_hot_decile(torch.randint(0, 10, (n,), generator=g))
    return density, species, lattice, condition
