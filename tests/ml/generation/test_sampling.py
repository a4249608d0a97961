"""Court et al.'s three modes (``ml/generation/sampling.py``) with an exact stand-in VAE:
interpolation, random generation with either prior, targeted generation, and the requests that
cannot be served."""

from __future__ import annotations

import numpy as np
import pytest

from exact_model import StubEnergy, exact_model
from ml.generation.funnel import FUNNEL_STAGES
from ml.generation.latent_prior import LatentPrior
from ml.generation.records import GenerationError


def test_interpolation_runs_from_one_crystal_to_the_other(store):
    generator = exact_model(store)
    line = generator.interpolate("x-1", "x-3", steps=5)
    assert [c.t for c in line] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # z moves on the straight line from μ(CsCl) to μ(SrTiO3): the exact model decodes whichever is nearer
    assert [c.formula for c in line] == ["CsCl", "CsCl", "CsCl", "SrTiO3", "SrTiO3"]
    # the condition moves from CsCl's decile 4 (−2.1 eV/atom) to SrTiO3's decile 1 (−3.5 eV/atom)
    assert [line[i].decile for i in (0, 1, 3, 4)] == [4, 4, 1, 1]


def test_random_sampling_with_the_normal_and_the_fitted_prior(store):
    generator = exact_model(store)
    formulas = set(store[1]["formula"])
    normal = generator.sample(decile=3, n=6, seed=2)  # no prior fitted: N(0, I)
    assert [c.decile for c in normal] == [3] * 6
    assert all(c.valid and c.formula in formulas for c in normal)
    assert [c.formula for c in generator.sample(decile=3, n=6, seed=2)] == [c.formula for c in normal]
    with pytest.raises(GenerationError, match="no fitted latent prior"):
        generator.sample(decile=3, n=2, prior="fitted")
    # a prior whose decile-d mixture sits on the (d mod 6)-th crystal of the store
    d = generator.vae.config.latent_dim
    means = np.stack([np.eye(d)[[decile % d, decile % d]] for decile in range(10)])
    generator.prior = LatentPrior(np.full((10, 2), 0.5), means, np.full((10, 2, d), 1e-4))
    fitted = generator.sample(decile=3, n=4, seed=0)  # the fitted prior is now the default
    assert [c.formula for c in fitted] == ["AlFe"] * 4 and [c.decile for c in fitted] == [3] * 4
    assert [c.formula for c in generator.sample(decile=2, n=2, prior="fitted")] == ["SrTiO3"] * 2
    assert len(generator.sample(decile=3, n=3, prior="normal")) == 3
    with pytest.raises(GenerationError, match="prior must be one of"):
        generator.sample(decile=3, n=2, prior="uniform")


def test_sampling_around_a_material(store):
    generator = exact_model(store, {"formation_energy_per_atom": StubEnergy(-2.0)})
    close = generator.sample_around("x-2", 1e-6, 3, seed=1)  # a tiny variance decodes the base itself
    assert [c.formula for c in close] == ["NaCl"] * 3 and [c.decile for c in close] == [5] * 3
    assert [c.funnel_stage for c in close] == ["same_stoichiometry"] * 3  # NaCl is a training formula
    assert all(c.formation_energy_per_atom == -2.0 for c in close)
    wide = generator.sample_around("x-2", 0.5, 8, decile=7, seed=1)
    assert len(wide) == 8 and [c.decile for c in wide] == [7] * 8
    assert all(c.funnel_stage in FUNNEL_STAGES for c in wide)


@pytest.mark.parametrize("call, message", [
    (lambda g: g.interpolate("mp-nope", "x-1"), "unknown material id 'mp-nope'"),
    (lambda g: g.interpolate("x-1", "mp-elsewhere"), "mp-elsewhere is not in the VAE's set"),
    (lambda g: g.interpolate("x-1", "x-2", steps=1), "steps"),
    (lambda g: g.sample_around("mp-elsewhere", 0.5, 2), "not in the VAE's set"),
    (lambda g: g.sample_around("x-1", 0.0, 2), "variance"),
    (lambda g: g.sample_around("x-1", float("nan"), 2), "variance"),
    (lambda g: g.sample_around("x-1", 0.5, 0), "n must be"),
    (lambda g: g.sample_around("x-1", 0.5, 2, decile=10), "0..9"),
    (lambda g: g.sample(decile=10, n=2), "0..9"),
    (lambda g: g.sample(decile=-1, n=2), "0..9"),
    (lambda g: g.sample(decile=3, n=0), "n must be"),
])
def test_requests_that_cannot_be_served_raise_a_generation_error(store, call, message):
    generator = exact_model(store)
    with pytest.raises(GenerationError, match=message):
        call(generator)
    assert issubclass(GenerationError, ValueError)  # the CLI turns it into one error line
