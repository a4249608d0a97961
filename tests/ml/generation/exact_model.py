"""A generative model that decodes exactly what it encodes, for the tests of the generative model,
its modes, the funnel and the records (``from exact_model import ...``)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ml.generation.generative_model import GenerativeModel
from ml.models.vae3d import DecodedGrids, VAE3DConfig
from ml.training.vae import class_lookup, species_vocabulary
from voxel_store import G, TinyDataset


class ExactVAE(nn.Module):
    """A stand-in for a perfect VAE: z is the one-hot row of the store; decoding a z gives that
    crystal's true density, certain species logits and its cell length."""

    def __init__(self, arrays, lookup: np.ndarray, n_species: int) -> None:
        super().__init__()
        self.config = VAE3DConfig(n_species=n_species, latent_dim=len(arrays), channels=(4, 4, 8, 8), grid=G)
        self.density = torch.from_numpy(np.asarray(arrays.density, np.float32))
        self.species = torch.from_numpy(lookup[np.asarray(arrays.species)])
        self.lattice = torch.from_numpy(np.asarray(arrays.lattice, np.float32)[:, 0])
        self.n_sites = torch.from_numpy(np.asarray(arrays.n_sites, np.int64))

    def encode(self, density, species, lattice, condition):
        rows = ((self.density[None] - density[:, None]) ** 2).flatten(2).sum(-1).argmin(1)
        return F.one_hot(rows, len(self.density)).float(), torch.zeros(len(rows), len(self.density))

    def decode(self, z, condition):
        rows = z.argmax(1)
        classes = self.species[rows]
        logits = 10.0 * F.one_hot(classes.clamp(0, self.config.n_species - 1), self.config.n_species)
        logits = logits.permute(0, 4, 1, 2, 3).float() * (classes >= 0)[:, None]
        return DecodedGrids(self.density[rows][:, None], logits, self.lattice[rows], self.n_sites[rows])


class StubEnergy:
    """A formation-energy predictor that predicts ``value`` eV/atom for every structure."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, structures):
        return np.full(len(structures), self.value)


def exact_model(store, predictors=None, chunk: int = 32) -> GenerativeModel:
    """A :class:`GenerativeModel` around :class:`ExactVAE` for the ``store`` fixture (ids ``x-1`` …
    ``x-6``; ``mp-elsewhere`` is in the dataset but not in the VAE's set)."""
    arrays, selection, _ = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    vae = ExactVAE(arrays, lookup, len(vocabulary))
    return GenerativeModel(vae, vocabulary, arrays, selection, predictors or {}, torch.device("cpu"),
                           TinyDataset(arrays, extra_ids=("mp-elsewhere",)), chunk=chunk)
