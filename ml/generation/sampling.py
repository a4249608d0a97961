"""The three ways Court et al. (J. Chem. Inf. Model. 60, 4518, 2020) generate crystals with the
trained VAE, each a list of :class:`ml.generation.records.GeneratedCrystal`:

- **random generation** (:func:`random_crystals`): z from the latent prior with a chosen
  formation-energy decile as the condition;
- **targeted generation** (:func:`targeted_crystals`): z ~ N(μ_base, variance · I) around a known
  compound, then the funnel of :mod:`ml.generation.funnel`;
- **interpolation** (:func:`interpolated_crystals`): points on the straight line between two
  compounds' latent means, the condition moving with them.

Each takes a :class:`ml.generation.generative_model.GenerativeModel` (``model``), whose methods
``sample``, ``sample_around`` and ``interpolate`` call these.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ml.generation.latent_prior import PRIOR_FILE, PRIORS
from ml.generation.records import GeneratedCrystal, GenerationError, Progress, check_count


def random_crystals(model, decile: int, n: int, seed: int = 0, progress: Progress = None,
                    prior: str | None = None) -> list[GeneratedCrystal]:
    """Random generation with a chosen formation-energy decile (0 = most stable).

    Args:
        prior: ``"fitted"`` (the mixture fitted to the training crystals' μ of that decile,
            :mod:`ml.generation.latent_prior`; the default when the model has one) or ``"normal"``
            (z ~ N(0, I), the paper's).

    Raises:
        GenerationError: ``n`` < 1, a decile outside 0–9, an unknown prior, or ``"fitted"``
        for a model without one.
    """
    check_count(n)
    condition = model.condition([decile] * n)
    prior = prior or ("fitted" if model.prior is not None else "normal")
    if prior not in PRIORS:
        raise GenerationError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
    if prior == "fitted":
        if model.prior is None:
            raise GenerationError(f"this model has no fitted latent prior ({PRIOR_FILE}); use prior 'normal'")
        z = torch.from_numpy(model.prior.sample(int(decile), n, np.random.default_rng(seed)))
    else:
        z = torch.randn(n, model.vae.config.latent_dim, generator=torch.Generator().manual_seed(seed))
    return model.decode(z, condition, progress)


def targeted_crystals(model, material_id: str, variance: float, n: int, decile: int | None = None, seed: int = 0,
                      progress: Progress = None) -> list[GeneratedCrystal]:
    """Targeted generation: z ~ N(μ_base, variance · I) around a known material, then the funnel
    (each crystal's ``funnel_stage`` is set).

    Args:
        variance: of each latent coordinate (the paper's 0.5; the standard deviation is √variance).
        decile: condition; default the base's own decile.

    Raises:
        GenerationError: unknown id, id outside the VAE's set, ``variance`` ≤ 0, ``n`` < 1.
    """
    check_count(n)
    if not (isinstance(variance, (int, float)) and math.isfinite(variance) and variance > 0):
        raise GenerationError(f"variance must be a positive number, got {variance!r}")
    mu, _, own = model.encode(material_id)
    noise = torch.randn(n, len(mu), generator=torch.Generator().manual_seed(seed))
    z = mu.cpu()[None] + math.sqrt(variance) * noise
    crystals = model.decode(z, model.condition([own if decile is None else decile] * n), progress)
    model.apply_funnel(crystals, material_id)
    return crystals


def interpolated_crystals(model, id_a: str, id_b: str, steps: int = 10,
                          progress: Progress = None) -> list[GeneratedCrystal]:
    """Decode ``steps`` points on the straight line from μ_a to μ_b (both ends included); the
    condition moves linearly from a's one-hot decile to b's; each crystal's ``t`` is its place
    on the line (0 = a, 1 = b).

    Raises:
        GenerationError: an unknown id or one outside the VAE's set, ``steps`` < 2.
    """
    if not isinstance(steps, int) or steps < 2 or steps > 1000:
        raise GenerationError(f"steps must be an integer from 2 to 1000, got {steps!r}")
    mu, _, deciles = model.encode_rows(np.array([model.row_of(id_a), model.row_of(id_b)]))
    t = torch.linspace(0, 1, steps)
    z = (1 - t)[:, None] * mu[0].cpu()[None] + t[:, None] * mu[1].cpu()[None]
    ca, cb = model.condition([deciles[0]]), model.condition([deciles[1]])
    condition = (1 - t)[:, None] * ca + t[:, None] * cb
    return model.decode(z, condition, progress, t=t.tolist())
