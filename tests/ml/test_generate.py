"""The generator's glue: training entry points on a tiny voxel store made from real crystals,
decoding latent vectors into structures, the funnel, the site EMD, the CLI's errors.

The voxel store is built here with the real :func:`ml.voxels.voxelize` on a 16³ grid from
hand-built cubic crystals (NaCl, CsCl, SrTiO3, …), so no mirror file is read."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch import nn

from ml.generate import (
    FUNNEL_STAGES,
    GeneratedCrystal,
    GenerationError,
    Generator,
    funnel_counts,
    write_generated,
)
from ml.models.unet3d import UNet3DConfig, UNetOutput
from ml.models.vae3d import VAE3DConfig, load_voxel_model
from ml.vae_data import VoxelArrays
from ml.vae_train import VAETrainConfig, train_unet, train_vae, voxel_batch
from ml.voxels import VoxelConfig, model_input, rotate90, voxelize

G = 16
VOXELS = VoxelConfig(grid_size=G)


def _crystals() -> dict[str, tuple[Structure, float]]:
    """id → (conventional cubic cell, formation energy eV/atom)."""
    perovskite = Structure(Lattice.cubic(3.9), ["Sr", "Ti", "O", "O", "O"],
                           [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    return {
        "x-1": (Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), -2.1),
        "x-2": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), -2.0),
        "x-3": (perovskite, -3.5),
        "x-4": (Structure(Lattice.cubic(2.9), ["Fe", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]]), -0.3),
        "x-5": (Structure(Lattice.cubic(4.0), ["Ba", "Zr", "O", "O", "O"],
                          [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]), -3.6),
        "x-6": (Structure(Lattice.cubic(3.3), ["Ni", "Al"], [[0, 0, 0], [0.5, 0.5, 0.5]]), -0.6),
    }


SPLITS = {"x-1": "train", "x-2": "train", "x-3": "train", "x-4": "train", "x-5": "val", "x-6": "val"}


@pytest.fixture(scope="module")
def store():
    """(VoxelArrays, selection table, structures) of the six crystals."""
    crystals = _crystals()
    samples = {m: voxelize(s, VOXELS) for m, (s, _) in crystals.items()}
    ids = list(crystals)
    energies = np.array([crystals[m][1] for m in ids])
    deciles = np.clip(((energies + 4) / 0.4).astype(int), 0, 9)
    arrays = VoxelArrays(
        material_ids=np.array(ids),
        density=np.stack([samples[m].density for m in ids]).astype(np.float16),
        species=np.stack([samples[m].species for m in ids]),
        lattice=np.stack([samples[m].lattice for m in ids]),
        decile=deciles.astype(np.int64),
        split=np.array([SPLITS[m] for m in ids]),
        voxel_config=VOXELS,
    )
    selection = pd.DataFrame({"material_id": ids, "formula": [crystals[m][0].composition.reduced_formula for m in ids],
                              "formation_energy_per_atom": energies, "decile": deciles,
                              "split": [SPLITS[m] for m in ids]})
    return arrays, selection, {m: s for m, (s, _) in crystals.items()}


def _tiny_config(**kw) -> VAETrainConfig:
    return VAETrainConfig(
        name="test", unet=UNet3DConfig(n_species=119, base_channels=4, depth=2, convs_per_level=1, grid=G),
        vae=VAE3DConfig(latent_dim=8, channels=(4, 4, 8, 8), grid=G), unet_lr=1e-2, unet_batch_size=2,
        unet_epochs=1, vae_lr=1e-3, vae_batch_size=2, vae_epochs=1, **kw)


def test_voxel_batch_rotates_density_species_and_lattice_together(store):
    arrays, _, _ = store
    rows = np.array([0, 2])
    plain = voxel_batch(arrays, rows)
    turned = voxel_batch(arrays, rows, rng=np.random.default_rng(5))
    turns = [int(np.random.default_rng(5).integers(24)) for _ in range(1)]  # the first draw
    first = rotate90(arrays.species[0], turns[0])
    assert torch.equal(turned.species[0], torch.from_numpy(first.astype(np.int64)))
    assert torch.allclose(turned.x[0, 0], torch.from_numpy(rotate90(np.asarray(arrays.density[0], np.float32), turns[0])))
    # cubic cells: coordinate channels and lattice unchanged; atoms conserved
    torch.testing.assert_close(turned.x[:, 1:], plain.x[:, 1:])
    assert torch.equal(turned.species.flatten(1).sort(dim=1).values, plain.species.flatten(1).sort(dim=1).values)


@pytest.mark.integration
def test_train_both_stages_resume_and_card(store, tmp_path, monkeypatch):
    arrays, _, _ = store
    monkeypatch.setattr("ml.vae_train.load_voxel_arrays", lambda dataset, **kw: arrays)
    dataset = type("D", (), {"name": "tiny"})()
    config = _tiny_config()
    run, out = tmp_path / "run", tmp_path / "model"
    result = train_unet(dataset, config, run, out, command=["python", "-m", "ml", "train-vae"])
    assert len(result["history"]) == 1 and 0 <= result["val"]["nonzero_recall"] <= 1
    # resume with one more epoch continues the history instead of starting over
    longer = replace(config, unet_epochs=2)
    with pytest.raises(ValueError, match="another configuration"):
        train_unet(dataset, longer, run, out, resume=True)
    result = train_unet(dataset, config, run, out, resume=True)
    assert len(result["history"]) == 1  # nothing left to do
    unet, payload = load_voxel_model(out / "unet.pt", "unet3d")
    assert payload["n_train"] == 4 and unet.class_weights[0] == 0 and unet.class_weights[17] > 0  # Cl seen
    assert unet.class_weights[40] == 0  # Zr only in validation
    result = train_vae(dataset, config, run, out, command=["python", "-m", "ml", "train-vae"])
    assert set(result["val"]) >= {"mse", "kl", "perceptual", "cell_length_mae"}
    log_rows = list(csv.DictReader((run / "vae" / "log.csv").read_text().splitlines()))
    assert len(log_rows) == 1 and float(log_rows[0]["val_cell_length_mae"]) >= 0
    card = (out / "MODEL_CARD.md").read_text()
    assert "train-vae" in card and "## VAE" in card and "not trained yet" not in card
    with pytest.raises(FileNotFoundError):
        train_vae(dataset, config, tmp_path / "other-run", tmp_path / "no-unet")

    # generation and evaluation from the tiny trained pair, files as saved
    from ml.evaluate_vae import evaluate_vae

    _, selection, structures = store
    vae, _ = load_voxel_model(out / "vae.pt", "cond-dfc-vae")
    unet, _ = load_voxel_model(out / "unet.pt", "unet3d")
    generator = Generator(vae, unet, VOXELS, arrays, selection, {}, torch.device("cpu"))
    crystals = generator.sample(decile=2, n=3, seed=4)
    rows = list(csv.DictReader(write_generated(crystals, tmp_path / "gen").read_text().splitlines()))
    assert len(rows) == 3 and all(r["valid"] in ("True", "False") for r in rows)
    report = evaluate_vae(model_dir=out, n_random=10, n_targeted=4, n_bases=2, out_dir=tmp_path / "report",
                          progress=False, generator=generator, truth=lambda ids: {m: structures[m] for m in ids})
    assert report["counts"] == {"val": 2, "reconstructions_decoded": report["counts"]["reconstructions_decoded"],
                                "random": 10, "targeted": 4, "bases": 2}
    assert 0 <= report["metrics"]["random_validity"] <= 1 and report["metrics"]["cell_length_mae"] >= 0
    assert report["funnel"]["energy_within_20pct"] is None  # no predictor given
    assert "| cell-length MAE (Å) |" in (tmp_path / "report" / "report.md").read_text()
    assert "## Evaluation" in (out / "MODEL_CARD.md").read_text()


# --------------------------------------------------------------------------- decoding with exact stand-ins


class _OracleVAE(nn.Module):
    """z = one-hot row of the store; decode returns that crystal's true model input."""

    def __init__(self, arrays: VoxelArrays) -> None:
        super().__init__()
        self.config = VAE3DConfig(latent_dim=len(arrays), channels=(4, 4, 8, 8), grid=G)
        self.inputs = torch.from_numpy(model_input(np.asarray(arrays.density, np.float32), arrays.lattice, VOXELS))
        self.rows = {m: i for i, m in enumerate(arrays.material_ids)}

    def encode(self, x, condition):
        distances = ((self.inputs[None] - x[:, None]) ** 2).flatten(2).sum(-1)
        return torch.nn.functional.one_hot(distances.argmin(1), len(self.inputs)).float(), torch.zeros(len(x), len(self.inputs))

    def decode(self, z, condition):
        return self.inputs[z.argmax(1)]


class _OracleUNet(nn.Module):
    """Species logits that put the true species of a (known) density first."""

    def __init__(self, arrays: VoxelArrays) -> None:
        super().__init__()
        self.density = torch.from_numpy(np.asarray(arrays.density, np.float32))
        self.species = torch.from_numpy(arrays.species.astype(np.int64))

    def forward(self, density):
        rows = ((self.density[None] - density[:, 0][:, None]) ** 2).flatten(2).sum(-1).argmin(1)
        species = self.species[rows]
        logits = torch.nn.functional.one_hot(species, 119).permute(0, 4, 1, 2, 3).float() * 10
        return UNetOutput(logits, (species > 0).float().unsqueeze(1) * 20 - 10)


class _StubEnergy:
    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, structures):
        return np.full(len(structures), self.value)


def _oracle_generator(store, predictors=None) -> Generator:
    arrays, selection, _ = store
    dataset = type("D", (), {"material_ids": (*arrays.material_ids, "mp-elsewhere")})()
    return Generator(_OracleVAE(arrays), _OracleUNet(arrays), VOXELS, arrays, selection, predictors or {},
                     torch.device("cpu"), dataset)


def test_reconstruction_with_exact_models_recovers_the_crystals(store):
    from ml.evaluate_vae import site_emd

    _, _, structures = store
    generator = _oracle_generator(store)
    calls = []
    crystals = generator.reconstruct(list(structures), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6)
    for crystal, (material_id, true) in zip(crystals, structures.items()):
        assert crystal.valid, (material_id, crystal.reason)
        assert crystal.structure.composition.reduced_formula == true.composition.reduced_formula
        assert len(crystal.structure) == len(true)
        np.testing.assert_allclose(crystal.lattice, true.lattice.abc, atol=1e-3)
        emd, agree = site_emd(true, crystal.structure)
        assert emd < 0.05 and agree == 1.0


def test_interpolate_sample_and_errors(store, tmp_path):
    generator = _oracle_generator(store, {"formation_energy_per_atom": _StubEnergy(-2.0)})
    line = generator.interpolate("x-1", "x-2", steps=3)
    assert [c.t for c in line] == [0.0, 0.5, 1.0]
    assert line[0].formula == "CsCl" and line[-1].formula == "NaCl"
    around = generator.sample_around("x-2", 0.5, 4, seed=1)
    assert len(around) == 4 and all(c.funnel_stage in FUNNEL_STAGES for c in around)
    random = generator.sample(decile=3, n=3)
    assert [c.decile for c in random] == [3, 3, 3]
    path = write_generated(line, tmp_path / "out")
    rows = list(csv.DictReader(path.read_text().splitlines()))
    assert [r["formula"] for r in rows] == [c.formula or "" for c in line]
    assert all((tmp_path / "out" / r["file"]).is_file() for r in rows if r["file"])
    assert float(rows[0]["a"]) == pytest.approx(4.12, abs=1e-3)
    with pytest.raises(GenerationError, match="unknown material id"):
        generator.interpolate("mp-nope", "x-1")
    with pytest.raises(GenerationError, match="not in the VAE's set"):
        generator.sample_around("mp-elsewhere", 0.5, 2)
    with pytest.raises(GenerationError, match="variance"):
        generator.sample_around("x-1", 0.0, 2)
    with pytest.raises(GenerationError, match="0..9"):
        generator.sample(decile=10, n=2)
    with pytest.raises(GenerationError, match="steps"):
        generator.interpolate("x-1", "x-2", steps=1)


def test_funnel_stages(store):
    _, _, structures = store
    generator = _oracle_generator(store, {"formation_energy_per_atom": _StubEnergy(0.0)})
    base = "x-3"  # SrTiO3, -3.5 eV/atom, a training formula

    def crystal(i, structure, energy, valid=True):
        return GeneratedCrystal(i, structure, valid, None if valid else "x", (4.0, 4.0, 4.0), 0,
                                formation_energy_per_atom=energy)

    ca_ti_o3 = structures["x-3"].copy()
    ca_ti_o3.replace_species({"Sr": "Ca"})
    crystals = [
        crystal(0, None, None, valid=False),             # invalid
        crystal(1, structures["x-1"], -3.5),              # valid, other stoichiometry (1:1)
        crystal(2, structures["x-3"], -3.5),              # same stoichiometry, but in the training set
        crystal(3, structures["x-5"], -1.0),              # novel (BaZrO3 only in val), energy too far
        crystal(4, ca_ti_o3, -3.3),                       # novel, within 20 %, unique
        crystal(5, ca_ti_o3.copy(), -3.6),                # same formula again: not unique
    ]
    counts = generator.apply_funnel(crystals, base)
    assert [c.funnel_stage for c in crystals] == ["invalid", "valid", "same_stoichiometry", "novel", "unique",
                                                 "energy_within_20pct"]
    assert counts == {"generated": 6, "valid": 5, "same_stoichiometry": 4, "novel": 3, "energy_within_20pct": 2,
                      "unique": 1}
    assert funnel_counts(crystals, energy_checked=False)["unique"] is None


def test_site_emd_periodic_and_shift():
    from ml.evaluate_vae import site_emd

    a = Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0.01, 0, 0], [0.5, 0.5, 0.5]])
    b = Structure(Lattice.cubic(4.0), ["Cl", "Cs"], [[0.5, 0.5, 0.525], [0.99, 0, 0]])  # wraps; order differs
    emd, agree = site_emd(a, b)
    assert emd == pytest.approx((0.08 + 0.1) / 2, abs=1e-9) and agree == 1.0
    c = Structure(Lattice.cubic(4.0), ["Cs"], [[0, 0, 0]])  # one site fewer: the smaller set is matched
    assert site_emd(a, c)[0] == pytest.approx(0.04, abs=1e-9)


def test_cli_errors(tmp_path, capsys):
    from ml.cli import main

    assert main(["generate", "sample", "--n", "2", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: generate sample needs --around")
    assert main(["generate", "sample", "--decile", "3", "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no trained generator") and len(err.splitlines()) == 1
    assert main(["evaluate-vae", "--model", str(tmp_path / "none")]) == 2
    assert "error:" in capsys.readouterr().err


def test_vote_species_gives_each_atom_one_species(store):
    from ml.generate import vote_species

    arrays, _, _ = store
    species = arrays.species[2].astype(np.int64)  # SrTiO3 on the 16³ grid
    density = np.asarray(arrays.density[2], np.float32)
    noisy = species.copy()
    rng = np.random.default_rng(0)
    occupied = np.argwhere(species > 0)
    flip = occupied[rng.choice(len(occupied), len(occupied) // 5, replace=False)]
    wrong = {38: 8, 22: 38, 8: 22}  # Sr→O, Ti→Sr, O→Ti on a fifth of the atoms' voxels
    for v in flip:
        noisy[tuple(v)] = wrong[int(species[tuple(v)])]
    voted = vote_species(noisy, density)
    assert (voted[species > 0] == species[species > 0]).mean() > 0.97
    assert np.array_equal(voted == 0, species == 0)  # the empty voxels stay empty
    assert np.array_equal(vote_species(species, density), species)  # a clean grid is unchanged
