"""The generative model (``ml/generation/generative_model.py``) with an exact stand-in VAE:
reconstruction, the predictor's refusals, the evaluation of the whole model, the command line's
errors."""

from __future__ import annotations

import numpy as np
import pytest

from exact_model import exact_model
from ml.evaluation.generator import decoder_ceiling, evaluate_vae
from ml.evaluation.sites import match_sites
from ml.generation.latent_prior import LatentPrior


def test_reconstruction_with_an_exact_model_recovers_the_crystals(store):
    _, _, structures = store
    generator = exact_model(store, chunk=4)
    calls = []
    crystals = generator.reconstruct(list(structures), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 6), (6, 6)]
    for crystal, (material_id, true) in zip(crystals, structures.items()):
        assert crystal.valid and crystal.valid_paper, (material_id, crystal.reason)
        assert crystal.structure.composition == true.composition and len(crystal.structure) == len(true)
        assert crystal.lattice == pytest.approx(true.lattice.abc, abs=1e-3)
        match = match_sites(true, crystal.structure)
        assert match.mean_distance < 0.05 and match.n_recalled == len(true)
    assert generator.reconstruct([]) == []
    rows = np.arange(6)
    ceiling = decoder_ceiling(generator, rows, list(structures.values()))
    assert ceiling == {"ceiling_exact": 1.0, "ceiling_site_count_error": 0.0}


def test_evaluation_of_an_exact_model(store, tmp_path):
    _, _, structures = store
    generator = exact_model(store)
    d = generator.vae.config.latent_dim
    generator.prior = LatentPrior(np.ones((10, 1)), np.stack([np.eye(d)[[k % d]] for k in range(10)]),
                                  np.full((10, 1, d), 1e-4))
    report = evaluate_vae(n_random=10, n_targeted=4, n_bases=2, n_pairs=2, out_dir=tmp_path / "report", progress=False,
                          generator=generator, truth=lambda ids: {m: structures[m] for m in ids},
                          negative_control=False)
    m = report["metrics"]
    assert m["reconstruction_exact"] == 1.0 and m["ceiling_exact"] == 1.0 and m["species_recall"] == 1.0
    assert m["site_count_error"] == 0.0 and m["cell_length_mae"] == pytest.approx(0.0, abs=1e-6)
    assert m["random_fitted_strict_validity"] == 1.0 and m["targeted_strict_validity"] == 1.0
    passed = {name for name, gate in report["gates"].items() if gate["passed"]}
    assert {"reconstruction_exact", "site_count_error", "cell_length_mae", "species_recall",
            "random_strict_validity", "targeted_strict_validity"} <= passed
    # the two validation crystals are of different families: no interpolation pair, so that gate is
    # not measured and fails, and the model is not called usable
    assert report["counts"]["pairs"] == 0 and m["interpolation_ends_exact"] is None
    assert not report["gates"]["interpolation_ends_exact"]["passed"] and report["usable"] is False
    assert "| gate (validation split) |" in (tmp_path / "report" / "report.md").read_text()


def test_cli_errors(tmp_path, capsys):
    from ml.cli.main import main

    assert main(["generate", "sample", "--n", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: generate sample needs --around MATERIAL_ID or --decile 0–9"
    assert main(["generate", "sample", "--decile", "3", "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no trained generator") and len(err.splitlines()) == 1
    assert main(["generate", "interpolate", "--from", "mp-1", "--to", "mp-2", "--model", str(tmp_path / "none"),
                 "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: no trained generator")
    assert main(["evaluate-vae", "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1


class _RefusesCsCl:
    """A property predictor that cannot featurise CsCl (as CGCNN refuses an absurdly dense cell)."""

    def predict(self, structures):
        from ml.features.errors import FeaturisationError

        if any(s.composition.reduced_formula == "CsCl" for s in structures):
            raise FeaturisationError("the cell holds 1.39 atoms per Å³")
        return np.full(len(structures), -1.5)


def test_a_crystal_the_predictor_refuses_keeps_no_prediction_and_the_others_keep_theirs(store):
    _, _, structures = store
    generator = exact_model(store, {"formation_energy_per_atom": _RefusesCsCl()})
    crystals = generator.reconstruct(list(structures))
    energies = {c.formula: c.formation_energy_per_atom for c in crystals}
    assert energies["CsCl"] is None
    assert all(value == -1.5 for formula, value in energies.items() if formula != "CsCl")
