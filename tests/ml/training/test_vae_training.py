"""The VAE's batches and training (``ml/training/vae.py``) on a tiny voxel store made from real
crystals (``tests/ml/voxel_store.py``): vocabulary and classes, rotated batches, a stopped and
resumed run equal to an uninterrupted one, the checkpoint and the model card."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from ml.generation.rotations import rotate90
from ml.models.vae3d import VAE3DConfig, load_voxel_model
from ml.models.vae3d_slots import EMPTY
from ml.training.vae import VAETrainConfig, class_lookup, species_vocabulary, train_vae, voxel_batch
from fake_clock import Clock
from voxel_store import G, TinyDataset, make_store, six_crystal_store


@pytest.fixture(scope="module")
def store():
    """(VoxelArrays, selection table, id → true structure) of the six crystals."""
    return six_crystal_store()


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


def test_a_stopped_and_resumed_run_equals_an_uninterrupted_one(store, tmp_path, monkeypatch):
    arrays, _, _ = store
    dataset = TinyDataset(arrays)
    config = _tiny_config()
    command = ["python", "-m", "ml", "train-vae", "--config", "test"]
    whole = train_vae(dataset, config, tmp_path / "run-a", tmp_path / "model-a", arrays=arrays, command=command,
                      progress=False)
    assert whole["finished"] and len(whole["history"]) == 2

    with monkeypatch.context() as patch:  # the first run passes max_minutes after its first epoch
        patch.setattr("ml.training.vae.time.time", Clock())
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
