"""The fitted latent prior of random generation (``ml/generation/latent_prior.py``): per-decile Gaussian
mixtures on synthetic latent means whose clusters we placed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from ml.generation.latent_prior import LatentPrior

N_DECILES = 10
D = 3


def _clusters(per_cluster: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two tight clusters per decile: decile k at (10k, 0, 0) and (10k, 5, 0), σ = 0.1.

    Returns:
        mu ``(n, D)``, deciles ``(n,)``, centres ``(N_DECILES, 2, D)``.
    """
    rng = np.random.default_rng(seed)
    centres = np.zeros((N_DECILES, 2, D))
    centres[:, :, 0] = 10.0 * np.arange(N_DECILES)[:, None]
    centres[:, 1, 1] = 5.0
    mu = centres[:, :, None, :] + 0.1 * rng.standard_normal((N_DECILES, 2, per_cluster, D))
    deciles = np.repeat(np.arange(N_DECILES), 2 * per_cluster)
    return mu.reshape(-1, D), deciles, centres


def _nearest(samples: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to the nearest centre ``(K, D)`` of each sample."""
    distances = np.linalg.norm(samples[:, None, :] - centres[None], axis=-1)
    return distances.argmin(axis=1), distances.min(axis=1)


def test_samples_of_a_decile_land_on_that_deciles_clusters():
    mu, deciles, centres = _clusters()
    prior = LatentPrior.fit(mu, deciles, n_components=2, seed=0)
    assert prior.means.shape == prior.variances.shape == (N_DECILES, 2, D)
    np.testing.assert_allclose(prior.weights.sum(axis=1), 1.0)
    for decile in (0, 3, 9):
        samples = prior.sample(decile, 400, np.random.default_rng(decile))
        assert samples.shape == (400, D) and samples.dtype == np.float32
        which, distance = _nearest(samples, centres.reshape(-1, D))
        assert np.all(which // 2 == decile)  # never near another decile's clusters
        assert np.all(distance < 1.0)  # within 10 σ of a centre
        share = np.mean(which % 2)
        assert 0.35 < share < 0.65  # both clusters drawn, about equally (equal weights)
    # the fitted spread is the clusters' own (σ² = 0.01), not the N(0, I) prior's
    assert np.all(prior.variances < 0.05)


def test_few_points_use_fewer_components_and_the_unused_ones_are_never_drawn():
    mu, deciles, _ = _clusters(per_cluster=2)  # 4 points per decile → at most 2 components
    prior = LatentPrior.fit(mu, deciles, n_components=8, seed=0)
    assert prior.weights.shape == (N_DECILES, 8)
    assert np.all(prior.weights[:, 2:] == 0) and np.all(prior.weights[:, :2] > 0)
    samples = prior.sample(4, 200, np.random.default_rng(1))
    assert np.abs(samples[:, 0] - 40.0).max() < 1.0  # drawn from decile 4's two clusters only


def test_save_load_round_trip(tmp_path):
    mu, deciles, _ = _clusters()
    prior = LatentPrior.fit(mu, deciles, n_components=2, seed=0)
    prior.save(tmp_path / "latent_prior.npz")
    loaded = LatentPrior.load(tmp_path / "latent_prior.npz")
    for name in ("weights", "means", "variances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(prior, name))
    np.testing.assert_array_equal(loaded.sample(7, 50, np.random.default_rng(3)),
                                  prior.sample(7, 50, np.random.default_rng(3)))
    with pytest.raises(FileNotFoundError):
        LatentPrior.load(tmp_path / "missing.npz")


def test_bad_shapes_and_a_decile_with_one_point_are_refused():
    mu, deciles, _ = _clusters(per_cluster=2)
    with pytest.raises(ValueError, match="expected"):
        LatentPrior.fit(mu[:, 0], deciles)  # (n,) instead of (n, D)
    with pytest.raises(ValueError, match="expected"):
        LatentPrior.fit(mu, deciles[:-1])
    keep = np.flatnonzero(deciles != 7)
    lonely = np.concatenate([keep, np.flatnonzero(deciles == 7)[:1]])
    with pytest.raises(ValueError, match="decile 7 has 1 training crystals"):
        LatentPrior.fit(mu[lonely], deciles[lonely])
    with pytest.raises(ValueError, match="decile 7 has 0"):
        LatentPrior.fit(mu[keep], deciles[keep])
