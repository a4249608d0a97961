"""CGCNN property predictors (ml.training.property): learning, physics, checkpoint round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from ml.features.atom_features import atom_feature_table
from ml.data.batches import GraphStore
from ml.features.errors import FeaturisationError
from ml.features.graph import GraphConfig, crystal_graph
from ml.models.property_regressor import PropertyRegressor, PropertyRegressorConfig
from ml.training.property import (
    PropertyData,
    PropertyModel,
    PropertyTrainConfig,
    fit_epoch,
    load_property_model,
    model_name_for,
    save_property_model,
)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def rock_salts() -> list[Structure]:
    """Eight rock-salt and CsCl binaries with different species and lattice constants."""
    pairs = [("Na", "Cl", 5.64), ("K", "Cl", 6.29), ("Li", "F", 4.03), ("Mg", "O", 4.21),
             ("Ca", "O", 4.81), ("Na", "F", 4.63), ("K", "Br", 6.60), ("Ba", "O", 5.52)]
    out = [Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [x, y], [[0, 0, 0], [0.5, 0.5, 0.5]])
           for x, y, a in pairs]
    out.append(Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    return out


def tiny_model(target: str = "formation_energy_per_atom", non_negative: bool = False, mean=0.0, std=1.0):
    config = PropertyRegressorConfig(target=target, unit="eV/atom", hidden=16, dense_hidden=32, non_negative=non_negative)
    torch.manual_seed(0)
    return PropertyRegressor(config, torch.from_numpy(atom_feature_table()), mean, std)


def as_data(structures: list[Structure], target: np.ndarray) -> PropertyData:
    store = GraphStore.from_graphs([crystal_graph(s, GraphConfig()) for s in structures])
    return PropertyData(store, np.arange(len(structures)), target.astype(np.float32))


def test_overfits_a_tiny_set():
    structures = rock_salts()
    # a target the model must learn from structure: the cube edge in Å, shifted to eV-like values
    target = np.array([s.lattice.a for s in structures]) - 5.0
    data = as_data(structures, target)
    net = tiny_model(mean=float(target.mean()), std=float(target.std()))
    model = PropertyModel("tiny", net, {})
    before = np.abs(model.predict(structures) - target).mean()
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for epoch in range(300):
        fit_epoch(net, optimiser, data, batch_size=len(structures), seed=epoch)
    after = np.abs(model.predict(structures) - target).mean()
    assert after < 0.1 * before
    assert after < 0.1 * target.std()  # a tenth of the spread of the targets


def test_save_load_round_trip_is_exact_and_strict(tmp_path):
    structures = rock_salts()
    net = tiny_model(mean=-1.5, std=0.7)
    data = as_data(structures, np.linspace(-2, 0, len(structures)))
    fit_epoch(net, torch.optim.Adam(net.parameters(), lr=1e-2), data, batch_size=4, seed=0)  # BN stats move
    path = tmp_path / "m" / "model.pt"
    save_property_model(path, net, {"test_mae": 0.1})
    loaded = load_property_model(str(path))
    original = PropertyModel("m", net.eval(), {})
    np.testing.assert_array_equal(loaded.predict(structures), original.predict(structures))
    np.testing.assert_array_equal(loaded.latent(structures), original.latent(structures))
    assert loaded.payload["test_mae"] == 0.1
    assert float(loaded.net.target_mean) == pytest.approx(-1.5) and float(loaded.net.target_std) == pytest.approx(0.7)
    assert loaded.unit == "eV/atom" and loaded.target == "formation_energy_per_atom"

    payload = torch.load(path, weights_only=True)
    payload["state_dict"]["encoder.unexpected"] = torch.zeros(1)
    torch.save(payload, path)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_property_model(str(path))


def test_load_refuses_other_checkpoints(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"format": 1, "state_dict": {}}, path)
    with pytest.raises(ValueError, match="not a matmap CGCNN property-model checkpoint"):
        load_property_model(str(path))
    with pytest.raises(FileNotFoundError, match="train-property --target <property column>"):
        load_property_model("no-such-model")


def test_a_missing_committed_model_names_its_training_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MATMAP_DATA_DIR", str(tmp_path))
    from ml.settings import get_settings

    get_settings.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match="python -m ml train-property --target band_gap"):
            load_property_model("cgcnn-band-gap")
    finally:
        get_settings.cache_clear()


def test_latent_and_prediction_are_invariant_to_supercells_and_rotation():
    structures = rock_salts()[:3]
    net = tiny_model()
    fit_epoch(net, torch.optim.Adam(net.parameters(), lr=1e-2), as_data(structures, np.zeros(3)), 3, seed=0)
    model = PropertyModel("m", net.eval(), {})
    big = [s * (2, 1, 1) for s in structures]
    np.testing.assert_allclose(model.latent(big), model.latent(structures), atol=1e-5)
    np.testing.assert_allclose(model.predict(big), model.predict(structures), atol=1e-5)
    rotated = [Structure(Lattice(s.lattice.matrix[[1, 2, 0]]), s.species, s.frac_coords[:, [1, 2, 0]])
               for s in structures]
    np.testing.assert_allclose(model.predict(rotated), model.predict(structures), atol=1e-5)
    assert model.latent(structures).shape == (3, 16)


def test_band_gap_predictions_are_never_negative():
    net = tiny_model(target="band_gap", non_negative=True, mean=-5.0, std=0.1)  # pushes raw outputs below 0
    prediction = PropertyModel("gap", net.eval(), {}).predict(rock_salts())
    assert (prediction >= 0).all() and (prediction == 0).any()


def test_bad_input_is_reported():
    model = PropertyModel("m", tiny_model().eval(), {})
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(FeaturisationError, match="disordered"):
        model.predict([disordered])
    assert model.predict([]).shape == (0,)
    with pytest.raises(ValueError, match="no property model for target"):
        model_name_for("refractive_index")
    with pytest.raises(ValueError):
        PropertyTrainConfig(model=PropertyRegressorConfig("band_gap", "eV"), epochs=0)
    with pytest.raises(ValueError):
        PropertyRegressor(PropertyRegressorConfig("band_gap", "eV"), torch.from_numpy(atom_feature_table()), 0.0, 0.0)


@pytest.mark.integration
def test_train_property_model_end_to_end_on_a_mirror_slice(tiny_cifs, mirror, tmp_path):
    from dataclasses import replace

    from ml.data.datasets import get_dataset, read_mirror_properties
    from ml.training.property import configured, train_property_model

    dataset = get_dataset(str(tiny_cifs))
    dataset = replace(dataset, properties=read_mirror_properties(mirror).reindex(list(dataset.material_ids)))
    config = configured("cgcnn-formation-energy", epochs=2, batch_size=16, train_shards=None)
    out = tmp_path / "models" / "fe" / "model.pt"
    result = train_property_model(dataset, "fe", config, tmp_path / "run", out)
    known = dataset.properties["formation_energy_per_atom"].notna()
    assert result["n_train"] + result["n_val"] + result["n_test"] == known.sum()
    assert len(result["history"]) == 2 and np.isfinite(result["test_mae"])
    card = (out.parent / "MODEL_CARD.md").read_text()
    assert f"{result['test_mae']:.3f} eV/atom** on {result['n_test']} materials" in card
    model = load_property_model(str(out))
    assert model.payload["n_train"] == result["n_train"]
    resumed = train_property_model(dataset, "fe", configured("cgcnn-formation-energy", epochs=2, batch_size=16,
                                                              train_shards=None), tmp_path / "run", out, resume=True)
    assert resumed["history"] == result["history"]  # nothing left to train: same model, same test
    assert resumed["test_mae"] == pytest.approx(result["test_mae"])
