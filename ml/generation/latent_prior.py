"""Where to draw latent vectors for random generation: N(0, I), or a mixture fitted to the
training crystals' latent means.

A VAE's aggregate posterior (the training crystals' μ) does not fill N(0, I): with a small KL
weight most of the prior's volume decodes to nothing seen in training. A density fitted ex post
to the training μ (Ghosh et al., "From variational to deterministic autoencoders", ICLR 2020,
section 4) keeps the samples where the decoder has learnt crystals. :class:`LatentPrior` fits one
Gaussian mixture with diagonal covariances per formation-energy decile
(``sklearn.mixture.GaussianMixture``), so ``sample --decile 3`` draws latent vectors like those
of decile-3 training crystals and decodes them with the decile-3 condition.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PRIORS = ("fitted", "normal")
#: File name of a fitted prior, beside the generative model's ``vae.pt``.
PRIOR_FILE = "latent_prior.npz"


@dataclass(frozen=True)
class LatentPrior:
    """Per-decile Gaussian mixtures over the latent space.

    Attributes:
        weights: ``(n_deciles, K)`` mixture weights (rows sum to 1).
        means: ``(n_deciles, K, D)``.
        variances: ``(n_deciles, K, D)`` diagonal covariances.
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray

    @classmethod
    def fit(cls, mu: np.ndarray, deciles: np.ndarray, n_deciles: int = 10, n_components: int = 8,
            seed: int = 0) -> LatentPrior:
        """Fit one mixture per decile to training latent means.

        Args:
            mu: ``(n, D)`` posterior means of the training crystals.
            deciles: ``(n,)`` their deciles 0 … n_deciles − 1.
            n_components: K, components per decile (fewer when a decile has few crystals).

        Raises:
            ValueError: shapes that do not match, or a decile with fewer than 2 crystals.
        """
        from sklearn.mixture import GaussianMixture

        mu = np.asarray(mu, dtype=np.float64)
        deciles = np.asarray(deciles)
        if mu.ndim != 2 or len(mu) != len(deciles):
            raise ValueError(f"mu (n, D) and deciles (n,) expected, got {mu.shape} and {deciles.shape}")
        d = mu.shape[1]
        weights = np.zeros((n_deciles, n_components))
        means = np.zeros((n_deciles, n_components, d))
        variances = np.ones((n_deciles, n_components, d))
        for decile in range(n_deciles):
            points = mu[deciles == decile]
            if len(points) < 2:
                raise ValueError(f"decile {decile} has {len(points)} training crystals; a mixture needs 2")
            k = min(n_components, len(points) // 2)
            gmm = GaussianMixture(k, covariance_type="diag", random_state=seed, reg_covar=1e-4).fit(points)
            weights[decile, :k] = gmm.weights_
            means[decile, :k] = gmm.means_
            variances[decile, :k] = gmm.covariances_
        return cls(weights, means, variances)

    def sample(self, decile: int, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n, D)`` float32 latent vectors of one decile's mixture."""
        k = rng.choice(self.weights.shape[1], size=n, p=self.weights[decile])
        noise = rng.standard_normal((n, self.means.shape[2]))
        return (self.means[decile, k] + np.sqrt(self.variances[decile, k]) * noise).astype(np.float32)

    def save(self, path: str | Path) -> None:
        """Write the mixtures to an ``.npz`` file."""
        np.savez(path, weights=self.weights, means=self.means, variances=self.variances)

    @classmethod
    def load(cls, path: str | Path) -> LatentPrior:
        """Read mixtures written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
        """
        with np.load(path) as data:
            return cls(data["weights"], data["means"], data["variances"])
