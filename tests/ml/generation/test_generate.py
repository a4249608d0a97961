"""The generator's glue: batches and training (resume, model card) on a tiny voxel store made from
real crystals; decoding the true grids; the generative model's modes, errors and funnel with an exact
stand-in model; the CSV; the command line's errors.

The store (``voxel_store.py``) is built with the real :func:`ml.generation.voxels.voxelize` on a 16³ grid
from hand-built cubic crystals: NaCl, CsCl, SrTiO3 and FeAl to train on, BaZrO3 and NiAl for
validation. No mirror file is read."""

from __future__ import annotations

import csv
import itertools
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pymatgen.core import Lattice, Structure
from torch import nn

from ml.evaluation.generator import decoder_ceiling, evaluate_vae
from ml.evaluation.sites import match_sites
from ml.generation.funnel import FUNNEL_STAGES, funnel_counts
from ml.generation.generative_model import GenerativeModel
from ml.generation.records import CSV_COLUMNS, GeneratedCrystal, GenerationError, write_generated
from ml.generation.latent_prior import LatentPrior
from ml.models.vae3d import DecodedGrids, VAE3DConfig, load_voxel_model
from ml.models.vae3d_slots import EMPTY
from ml.generation.decode import decode_crystal
from ml.training.vae import VAETrainConfig, class_lookup, species_vocabulary, train_vae, voxel_batch
from ml.generation.rotations import rotate90
from ml.generation.voxels import VoxelDecodeError
from voxel_store import G, TinyDataset, make_store, six_crystals


@pytest.fixture(scope="module")
def store():
    """(VoxelArrays, selection table, id → true structure) of the six crystals."""
    crystals = six_crystals()
    arrays, selection = make_store(crystals)
    return arrays, selection, {m: s for m, (s, _, _) in crystals.items()}


# --------------------------------------------------------------------------- batches


def test_vocabulary_and_class_lookup(store):
    arrays, _, _ = store
    train = np.flatnonzero(arrays.split == "train")
    vocabulary = species_vocabulary(arrays, train)
    assert vocabulary == [8, 11, 13, 17, 22, 26, 38, 55]  # O Na Al Cl Ti Fe Sr Cs: the training elements
    lookup = class_lookup(vocabulary)
    assert lookup[0] == EMPTY and lookup[17] == vocabulary.index(17) and lookup[56] == len(vocabulary)  # Ba: unknown


def test_voxel_batch_rotates_density_and_species_together():
    # a crystal with atoms at generic positions, so every cube rotation changes its grids
    odd = Structure(Lattice.cubic(4.2), ["Na", "Cl", "O"], [[0.1, 0.2, 0.3], [0.6, 0.55, 0.9], [0.35, 0.8, 0.6]])
    arrays, _ = make_store({"odd-1": (odd, -1.0, "train"), "odd-2": (odd, -2.9, "train")})
    vocabulary = species_vocabulary(arrays, np.arange(2))
    lookup = class_lookup(vocabulary)
    plain = voxel_batch(arrays, np.arange(2), lookup)
    turned = voxel_batch(arrays, np.arange(2), lookup, rng=np.random.default_rng(5))
    draws = np.random.default_rng(5).integers(24, size=2)  # the rotations voxel_batch drew, in order
    assert draws[0] != 0
    for i, turn in enumerate(draws):
        density = rotate90(np.asarray(arrays.density[i], np.float32), int(turn))
        species = lookup[rotate90(arrays.species[i], int(turn))]
        assert torch.equal(turned.density[i], torch.from_numpy(density))
        assert torch.equal(turned.species[i], torch.from_numpy(species))
    assert not torch.equal(turned.species[0], plain.species[0])
    # atomic numbers became classes: −1 empty, vocabulary index elsewhere
    expected = lookup[np.asarray(arrays.species[0])]
    assert torch.equal(plain.species[0], torch.from_numpy(expected))
    assert set(plain.species.unique().tolist()) == {EMPTY, *range(len(vocabulary))}
    # the rotated crystal is the same crystal: same atoms and Gaussians, same cubic cell, same condition
    assert torch.equal(turned.species.flatten(1).sort(dim=1).values, plain.species.flatten(1).sort(dim=1).values)
    torch.testing.assert_close(turned.density.sum(dim=(1, 2, 3)), plain.density.sum(dim=(1, 2, 3)))
    assert torch.equal(turned.lattice, plain.lattice) and turned.lattice.tolist() == pytest.approx([4.2, 4.2])
    assert plain.decile.tolist() == [7, 2] and plain.condition.argmax(dim=1).tolist() == [7, 2]


# --------------------------------------------------------------------------- training


def _tiny_config(**kw) -> VAETrainConfig:
    return VAETrainConfig(name="test", vae=VAE3DConfig(n_species=1, latent_dim=4, channels=(4, 4, 8, 8), grid=G),
                          lr=3e-3, batch_size=2, epochs=2, **kw)


class _Clock:
    """A ``time.time`` that advances 40 s at every call (an epoch takes "a minute or so")."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 40.0
        return self.now


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(store, tmp_path, monkeypatch):
    arrays, _, _ = store
    dataset = TinyDataset(arrays)
    config = _tiny_config()
    command = ["python", "-m", "ml", "train-vae", "--config", "test"]
    whole = train_vae(dataset, config, tmp_path / "run-a", tmp_path / "model-a", arrays=arrays, command=command,
                      progress=False)
    assert whole["finished"] and len(whole["history"]) == 2

    with monkeypatch.context() as patch:  # the first run passes max_minutes after its first epoch
        patch.setattr("ml.training.vae.time.time", _Clock())
        stopped = train_vae(dataset, replace(config, max_minutes=1.0), tmp_path / "run-b", tmp_path / "model-b",
                            arrays=arrays, progress=False)
    assert not stopped["finished"] and len(stopped["history"]) == 1
    assert (tmp_path / "model-b" / "vae.pt").is_file()  # the latest weights are usable meanwhile
    with pytest.raises(ValueError, match="another configuration"):
        train_vae(dataset, replace(config, lr=1e-3), tmp_path / "run-b", tmp_path / "model-b", resume=True,
                  arrays=arrays, progress=False)
    resumed = train_vae(dataset, config, tmp_path / "run-b", tmp_path / "model-b", resume=True, arrays=arrays,
                        progress=False)
    assert resumed["finished"] and len(resumed["history"]) == 2

    a, payload = load_voxel_model(tmp_path / "model-a" / "vae.pt")
    b, _ = load_voxel_model(tmp_path / "model-b" / "vae.pt")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name  # bit for bit, batch-norm statistics included
    for key in ("loss", "species_ce", "val_loss"):
        assert [h[key] for h in whole["history"]] == [h[key] for h in resumed["history"]]
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_vae(dataset, config, tmp_path / "run-c", tmp_path / "model-c", resume=True, arrays=arrays, progress=False)

    # what the checkpoint carries
    assert payload["vocabulary"] == [8, 11, 13, 17, 22, 26, 38, 55] and a.config.n_species == 8
    assert payload["n_train"] == 4 and payload["n_val"] == 2 and payload["voxel_config"]["grid_size"] == G
    log_rows = list(csv.DictReader((tmp_path / "run-a" / "log.csv").read_text().splitlines()))
    assert [int(r["epoch"]) for r in log_rows] == [1, 2]
    assert 0 <= float(log_rows[-1]["val_species_voxel_accuracy"]) <= 1
    card = (tmp_path / "model-a" / "MODEL_CARD.md").read_text()
    assert "python -m ml train-vae --config test" in card and "epochs run: 2" in card and "8 elements" in card
    assert "4 training crystals" in card and "not trained yet" not in card


def test_train_refuses_a_store_of_another_grid(store, tmp_path):
    arrays, _, _ = store
    config = replace(_tiny_config(), vae=replace(_tiny_config().vae, grid=32))
    with pytest.raises(ValueError, match="grid 16 for a model of grid 32"):
        train_vae(TinyDataset(arrays), config, tmp_path / "run", tmp_path / "model", arrays=arrays, progress=False)


# --------------------------------------------------------------------------- decoding the true grids


def _certain_log_probs(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """``(V, G, G, G)`` log-probabilities that are 0 for each voxel's true class, −30 elsewhere."""
    log_probs = np.full((n_classes, *classes.shape), -30.0)
    known = (classes >= 0) & (classes < n_classes)
    log_probs[classes[known], *np.nonzero(known)] = 0.0
    return log_probs


def test_decoding_the_true_grids_recovers_every_crystal(store):
    arrays, _, structures = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    for row, (material_id, true) in enumerate(structures.items()):
        classes = lookup[np.asarray(arrays.species[row])]
        decoded = decode_crystal(np.asarray(arrays.density[row], np.float32), _certain_log_probs(classes, len(vocabulary)),
                                 float(arrays.lattice[row][0]), vocabulary)
        assert decoded.composition == true.composition, material_id
        assert len(decoded) == len(true)
        assert match_sites(true, decoded).n_recalled == len(true)
        max_distance = max(true.lattice.get_all_distances(true.frac_coords, decoded.frac_coords).min(axis=1))
        assert max_distance < 0.05, (material_id, max_distance)
        assert decoded.lattice.abc == pytest.approx(true.lattice.abc, abs=1e-3)


def test_the_decoded_site_count_drops_a_hedged_sub_lattice_that_a_threshold_keeps(store):
    """A decoder that hedges between rock salt and a filled sub-lattice paints weaker peaks (0.6)
    on the empty sites: a threshold of 0.5 takes them as atoms, the decoded count (8) does not."""
    arrays, _, structures = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    row = list(structures).index("x-2")  # NaCl, 8 sites in the conventional cell
    true = structures["x-2"]
    density = np.asarray(arrays.density[row], np.float32)
    classes = lookup[np.asarray(arrays.species[row])]
    log_probs = _certain_log_probs(classes, len(vocabulary))
    hedged = density + 0.6 * np.roll(density, (G // 4, G // 4, G // 4), axis=(0, 1, 2))  # the tetrahedral holes
    hedged = np.minimum(hedged, 1.0)
    a = float(arrays.lattice[row][0])
    assert len(decode_crystal(hedged, log_probs, a, vocabulary, peak_threshold=0.5)) > len(true)
    decoded = decode_crystal(hedged, log_probs, a, vocabulary, n_sites=len(true))
    assert len(decoded) == len(true) and decoded.composition == true.composition
    assert max(true.lattice.get_all_distances(true.frac_coords, decoded.frac_coords).min(axis=1)) < 0.05
    with pytest.raises(VoxelDecodeError, match="negative"):
        decode_crystal(hedged, log_probs, a, vocabulary, n_sites=-1)


def test_sites_sit_at_voxel_centres_unless_refined():
    """One Gaussian 0.3 voxel off a voxel centre: the default decoder places the atom at the
    centre (the grid's resolution), ``refine=True`` at the Gaussian's own centre."""
    axis = np.arange(G, dtype=np.float64)
    centre = np.array([4.3, 8.0, 12.0])
    d2 = sum(((axis - centre[k] + G / 2) % G - G / 2).reshape([-1 if j == k else 1 for j in range(3)]) ** 2
             for k in range(3))
    density = np.exp(-d2 / (2 * 1.2**2))
    log_probs = np.zeros((1, G, G, G))
    snapped = decode_crystal(density, log_probs, 4.0, [11])
    refined = decode_crystal(density, log_probs, 4.0, [11], refine=True)
    assert snapped.frac_coords[0] * G == pytest.approx([4.0, 8.0, 12.0])
    assert refined.frac_coords[0] * G == pytest.approx(centre, abs=0.02)


# --------------------------------------------------------------------------- the generative model with an exact model


class _ExactVAE(nn.Module):
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


class _StubEnergy:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, structures):
        return np.full(len(structures), self.value)


def _exact_generator(store, predictors=None, chunk: int = 32) -> GenerativeModel:
    arrays, selection, _ = store
    vocabulary = species_vocabulary(arrays, np.arange(len(arrays)))
    lookup = class_lookup(vocabulary)
    vae = _ExactVAE(arrays, lookup, len(vocabulary))
    return GenerativeModel(vae, vocabulary, arrays, selection, predictors or {}, torch.device("cpu"),
                     TinyDataset(arrays, extra_ids=("mp-elsewhere",)), chunk=chunk)


def test_reconstruction_with_an_exact_model_recovers_the_crystals(store):
    _, _, structures = store
    generator = _exact_generator(store, chunk=4)
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


def test_interpolation_runs_from_one_crystal_to_the_other(store):
    generator = _exact_generator(store)
    line = generator.interpolate("x-1", "x-3", steps=5)
    assert [c.t for c in line] == [0.0, 0.25, 0.5, 0.75, 1.0]
    # z moves on the straight line from μ(CsCl) to μ(SrTiO3): the exact model decodes whichever is nearer
    assert [c.formula for c in line] == ["CsCl", "CsCl", "CsCl", "SrTiO3", "SrTiO3"]
    # the condition moves from CsCl's decile 4 (−2.1 eV/atom) to SrTiO3's decile 1 (−3.5 eV/atom)
    assert [line[i].decile for i in (0, 1, 3, 4)] == [4, 4, 1, 1]


def test_random_sampling_with_the_normal_and_the_fitted_prior(store):
    generator = _exact_generator(store)
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
    generator = _exact_generator(store, {"formation_energy_per_atom": _StubEnergy(-2.0)})
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
    generator = _exact_generator(store)
    with pytest.raises(GenerationError, match=message):
        call(generator)
    assert issubclass(GenerationError, ValueError)  # the CLI turns it into one error line


def test_funnel_stages(store):
    _, _, structures = store
    generator = _exact_generator(store, {"formation_energy_per_atom": _StubEnergy(0.0)})
    base = "x-3"  # SrTiO3, −3.5 eV/atom, a training formula

    def crystal(i, structure, energy, valid=True):
        return GeneratedCrystal(i, structure, valid, None if valid else "x", (4.0, 4.0, 4.0), 0,
                                formation_energy_per_atom=energy)

    ca_ti_o3 = structures["x-3"].copy()
    ca_ti_o3.replace_species({"Sr": "Ca"})
    crystals = [
        crystal(0, None, None, valid=False),  # invalid
        crystal(1, structures["x-1"], -3.5),  # valid, another stoichiometry (1:1)
        crystal(2, structures["x-3"], -3.5),  # the base's 1:1:3, but a training formula
        crystal(3, structures["x-5"], -1.0),  # novel (BaZrO3 only in validation), energy too far
        crystal(4, ca_ti_o3, -3.3),  # novel, within 20 %, the first CaTiO3
        crystal(5, ca_ti_o3.copy(), -3.6),  # the same formula again: not unique
    ]
    counts = generator.apply_funnel(crystals, base)
    assert [c.funnel_stage for c in crystals] == ["invalid", "valid", "same_stoichiometry", "novel", "unique",
                                                 "energy_within_20pct"]
    assert counts == {"generated": 6, "valid": 5, "same_stoichiometry": 4, "novel": 3, "energy_within_20pct": 2,
                      "unique": 1}
    assert funnel_counts(crystals, energy_checked=False)["unique"] is None
    # without a formation-energy predictor the funnel stops at "novel"
    no_energy = _exact_generator(store)
    assert no_energy.apply_funnel(crystals, base) == {"generated": 6, "valid": 5, "same_stoichiometry": 4,
                                                      "novel": 3, "energy_within_20pct": None, "unique": None}
    assert max(FUNNEL_STAGES.index(c.funnel_stage) for c in crystals) == FUNNEL_STAGES.index("novel")


def test_write_generated_writes_the_cifs_and_the_csv(store, tmp_path):
    generator = _exact_generator(store)
    crystals = generator.interpolate("x-1", "x-2", steps=3)
    crystals.append(GeneratedCrystal(3, None, False, "no atom", (2.0, 2.0, 2.0), 4))
    path = write_generated(crystals, tmp_path / "out")
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == CSV_COLUMNS
    rows = list(csv.DictReader(lines))
    assert [r["formula"] for r in rows] == ["CsCl", "CsCl", "NaCl", ""]
    assert [r["file"] for r in rows] == ["0000.cif", "0001.cif", "0002.cif", ""]
    assert [r["valid"] for r in rows] == ["True", "True", "True", "False"] and rows[3]["reason"] == "no atom"
    assert float(rows[0]["a"]) == pytest.approx(4.12, abs=1e-3) and rows[2]["n_sites"] == "8"
    assert rows[2]["spacegroup_number"] == "225" and float(rows[1]["t"]) == 0.5
    for row in rows[:3]:
        back = Structure.from_file(tmp_path / "out" / row["file"])
        assert back.composition.reduced_formula == row["formula"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.cif")) == ["0000.cif", "0001.cif", "0002.cif"]


def test_evaluation_of_an_exact_model(store, tmp_path):
    _, _, structures = store
    generator = _exact_generator(store)
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


# --------------------------------------------------------------------------- command line


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
    generator = _exact_generator(store, {"formation_energy_per_atom": _RefusesCsCl()})
    crystals = generator.reconstruct(list(structures))
    energies = {c.formula: c.formation_energy_per_atom for c in crystals}
    assert energies["CsCl"] is None
    assert all(value == -1.5 for formula, value in energies.items() if formula != "CsCl")
