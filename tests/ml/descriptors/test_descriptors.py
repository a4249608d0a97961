"""Baseline descriptors (ml.descriptors): physics on hand-built crystals, cache, export to the app."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from ml.descriptors import compute, featurisers
from ml.descriptors import ids as id_sets
from ml.mapping.artifacts import MapArtifacts
from ml.mapping.writer import write_artifacts
from ml.mapping.format import NEIGHBOR_COLUMNS, ArtifactError, UnknownMaterialError, artifact_dir
from ml.data.datasets import get_dataset
from ml.descriptors.registry import DESCRIPTORS
from ml.descriptors.compute import DescriptorTable, compute_descriptor, descriptor_neighbors, load_descriptor
from ml.descriptors.export import export_descriptor
from ml.descriptors.featurisers import chgnet_feature, crystalnn_fingerprint, ewald_spectrum, sine_coulomb_spectrum


def rocksalt(a: float, cation: str) -> Structure:
    """Conventional rock-salt cell (8 sites)."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


NACL, KCL = rocksalt(5.64, "Na"), rocksalt(6.29, "K")


# --------------------------------------------------------------------------- physics


@pytest.mark.parametrize("spectrum", [ewald_spectrum, sine_coulomb_spectrum])
def test_eigenspectra_are_sorted_padded_and_cell_independent(spectrum):
    nacl = spectrum(NACL)
    assert nacl.shape == (featurisers.EIGENSPECTRUM_LENGTH,) and nacl.dtype == np.float32
    # computed on the primitive cell: 2 eigenvalues, sorted by decreasing |λ|, then zeros
    assert np.count_nonzero(nacl) == 2 and np.all(nacl[2:] == 0)
    assert abs(nacl[0]) >= abs(nacl[1]) > 0
    # conventional cell, primitive cell and a 2×1×1 supercell of NaCl: the same spectrum
    for cell in (NACL.get_primitive_structure(), NACL * [2, 1, 1]):
        np.testing.assert_allclose(spectrum(cell), nacl, rtol=1e-4, atol=1e-3)
    # a different crystal (KCl: heavier cation, larger cell) has a different spectrum
    assert np.linalg.norm(spectrum(KCL) - nacl) > 0.05 * np.linalg.norm(nacl)


def test_matrix_spectra_of_a_supercell_differ_without_primitive_reduction():
    """Why the primitive cell is used: the sine matrix of a supercell has another spectrum."""
    from matminer.featurizers.structure import SineCoulombMatrix

    primitive = NACL.get_primitive_structure()
    spectra = [np.linalg.eigvalsh(SineCoulombMatrix(flatten=False).featurize(s)[0]) for s in (primitive, primitive * [2, 1, 1])]
    padded = [featurisers._pad_spectrum(s) for s in spectra]
    assert np.abs(padded[0] - padded[1]).max() > 1.0


def test_crystalnn_is_geometric_and_supercell_invariant():
    nacl = crystalnn_fingerprint(NACL)
    assert nacl.shape == (DESCRIPTORS["crystalnn"].dim,)
    np.testing.assert_allclose(crystalnn_fingerprint(NACL * [2, 1, 1]), nacl, atol=1e-6)
    # x_diff_weight=0 (MP): only geometry counts, so KCl is NaCl's prototype (MP: d < 0.9 → same)
    assert np.linalg.norm(crystalnn_fingerprint(KCL) - nacl) < 0.9
    assert np.linalg.norm(crystalnn_fingerprint(cscl()) - nacl) > 0.9


@pytest.mark.integration  # loads the pretrained CHGNet (torch), ~5–15 s on 2 cores
def test_chgnet_feature_is_a_mean_over_atoms():
    nacl = chgnet_feature(NACL)
    assert nacl.shape == (64,) and np.isfinite(nacl).all()
    np.testing.assert_allclose(chgnet_feature(NACL * [2, 1, 1]), nacl, atol=1e-4)
    assert np.linalg.norm(chgnet_feature(KCL) - nacl) > 1e-2


# --------------------------------------------------------------------------- cache


@pytest.fixture
def cif_folder(tmp_path):
    """Four readable crystals (one a supercell of another) and one broken file."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    crystals = {"nacl": NACL, "nacl-super": NACL * [1, 1, 2], "kcl": KCL, "cscl": cscl()}
    for name, structure in crystals.items():
        (folder / f"{name}.cif").write_text(structure.to(fmt="cif"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a 5.0\n")
    return folder


def test_compute_load_and_neighbours(cif_folder):
    dataset = get_dataset(str(cif_folder))
    folder = compute_descriptor(dataset, "ewald", progress=False)
    table = load_descriptor(dataset, "ewald")
    assert sorted(table.material_ids) == ["cscl", "kcl", "nacl", "nacl-super"]
    assert table.values.shape == (4, 256) and table.values.dtype == np.float32
    assert [f["material_id"] for f in table.failures] == ["broken"] and "CifError" in table.failures[0]["reason"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["n_materials"] == 4 and manifest["n_failures"] == 1 and manifest["coverage"] == dataset.name
    # every material's nearest vector is its own (distance 0)
    distance, rows = table.search(table.values, 1)
    assert np.allclose(distance[:, 0], 0, atol=1e-2)
    assert table.material_ids[rows[0, 0]] in (table.material_ids[0], "nacl", "nacl-super")
    # the query is left out; the supercell is NaCl's nearest other material
    neighbours = descriptor_neighbors(dataset, "ewald", "nacl", k=3)
    assert list(neighbours.columns) == ["rank", "material_id", "distance"]
    assert list(neighbours["rank"]) == [1, 2, 3] and "nacl" not in set(neighbours["material_id"])
    assert neighbours["material_id"].iloc[0] == "nacl-super" and neighbours["distance"].iloc[0] < 1e-2
    assert neighbours["distance"].is_monotonic_increasing
    restricted = descriptor_neighbors(dataset, "ewald", "nacl", k=3, within={"kcl", "cscl"})
    assert set(restricted["material_id"]) == {"kcl", "cscl"}
    with pytest.raises(UnknownMaterialError, match="not covered"):
        descriptor_neighbors(dataset, "ewald", "broken")


def test_cost_estimate_from_the_largest_finished_run(cif_folder, monkeypatch):
    def slow(structure):
        time.sleep(0.05)
        return np.full(3, len(structure), dtype=np.float32)

    monkeypatch.setitem(DESCRIPTORS, "ewald", replace(DESCRIPTORS["ewald"], dim=3, featurize=slow))
    dataset = get_dataset(str(cif_folder))
    # nothing run yet: the registry's measured rate
    assert compute.cost_estimate(dataset, "ewald")["seconds_per_structure"] == DESCRIPTORS["ewald"].seconds_per_structure
    compute_descriptor(dataset, "ewald", processes=1, ids=["nacl", "kcl"], progress=False,
                       concept_sample={"per_class": 1, "seed": 7})
    compute_descriptor(dataset, "ewald", processes=1, progress=False)  # the other three (one fails to parse)
    runs = json.loads((compute.cache_folder(dataset, DESCRIPTORS["ewald"]) / "manifest.json").read_text())["runs"]
    assert [run["n_todo"] for run in runs] == [2, 3] and [run["processes"] for run in runs] == [1, 1]
    assert runs[0]["concept_sample"] == {"per_class": 1, "seed": 7} and "concept_sample" not in runs[1]
    assert runs[1]["seconds"] >= 0.1  # two structures of 0.05 s each, at least
    cost = compute.cost_estimate(dataset, "ewald", min_run=1)
    assert cost["source"] == f"measured: 3 materials, 1 processes, {runs[1]['seconds']:.0f} s"
    assert cost["seconds_per_structure"] == pytest.approx(runs[1]["seconds"] / 3, abs=1e-4)
    assert cost["whole_dataset_hours"] == pytest.approx(len(dataset) * runs[1]["seconds"] / 3 / 2 / 3600, abs=0.01)
    # runs too small to trust: the registry's rate; cmml has no cost of its own (read from the map)
    assert compute.cost_estimate(dataset, "ewald")["source"].startswith("registry")
    assert compute.cost_estimate(dataset, "cmml")["whole_dataset_hours"] is None


def test_resume_computes_only_what_is_missing(cif_folder, monkeypatch):
    calls = []

    def counting(structure):
        calls.append(structure.composition.reduced_formula)
        if len(calls) == 3 and stop_early:
            raise KeyboardInterrupt  # an interrupted run
        return np.full(3, len(structure), dtype=np.float32)

    monkeypatch.setitem(DESCRIPTORS, "ewald", replace(DESCRIPTORS["ewald"], dim=3, featurize=counting))
    monkeypatch.setattr(compute, "PART_SIZE", 1)  # a part file per material
    monkeypatch.setattr(compute, "CHUNK_SIZE", 1)  # a checkpoint is a finished chunk
    dataset = get_dataset(str(cif_folder))
    stop_early = True
    with pytest.raises(KeyboardInterrupt):
        compute_descriptor(dataset, "ewald", ids=["nacl", "kcl", "cscl", "nacl-super"], progress=False)
    assert len(calls) == 3
    manifest = json.loads((compute.cache_folder(dataset, DESCRIPTORS["ewald"]) / "manifest.json").read_text())
    assert manifest["coverage"] == "partial: 4 given ids" and "finished" not in manifest["runs"][0]
    stop_early = False
    calls.clear()
    compute_descriptor(dataset, "ewald", progress=False)
    assert len(calls) == 2  # the one interrupted and the one not reached; broken fails in parsing
    table = load_descriptor(dataset, "ewald")
    assert len(table) == 4 and len(table.failures) == 1 and table.coverage == dataset.name
    calls.clear()
    compute_descriptor(dataset, "ewald", progress=False)
    assert calls == []


def test_two_runs_sharing_a_cache_do_not_duplicate_materials(cif_folder):
    dataset = get_dataset(str(cif_folder))
    folder = compute_descriptor(dataset, "ewald", progress=False)
    before = load_descriptor(dataset, "ewald")
    # a second process finished NaCl too, and recorded an old failure for it
    compute._write_part(folder, 0, 256, [("nacl", before.values[before.material_ids == "nacl"][0] + 1, None)])
    compute._write_part(folder, 0, 256, [("nacl", None, "RuntimeError: transient")])
    after = load_descriptor(dataset, "ewald")
    assert list(after.material_ids) == list(before.material_ids)
    assert [f["material_id"] for f in after.failures] == ["broken"]


def test_a_failing_structure_is_recorded_not_fatal(cif_folder, monkeypatch):
    def picky(structure):
        if "Cs" in structure.composition:
            raise RuntimeError("caesium is not supported\nsecond line")
        return np.ones(3, dtype=np.float32)

    monkeypatch.setitem(DESCRIPTORS, "ewald", replace(DESCRIPTORS["ewald"], dim=3, featurize=picky))
    dataset = get_dataset(str(cif_folder))
    compute_descriptor(dataset, "ewald", progress=False)
    failures = {f["material_id"]: f["reason"] for f in load_descriptor(dataset, "ewald").failures}
    assert failures["cscl"] == "RuntimeError: caesium is not supported"
    assert set(failures) == {"cscl", "broken"}


def test_unknown_names_and_ids(cif_folder):
    dataset = get_dataset(str(cif_folder))
    with pytest.raises(ValueError, match="unknown descriptor"):
        compute_descriptor(dataset, "soap")
    with pytest.raises(ValueError, match="not in"):
        compute_descriptor(dataset, "ewald", ids=["mp-0"])
    with pytest.raises(FileNotFoundError, match="python -m ml descriptors"):
        load_descriptor(dataset, "sine_coulomb")


def test_table_validates_shapes():
    with pytest.raises(ValueError):
        DescriptorTable("x", np.array(["a", "b"]), np.zeros((3, 2), np.float32))


# --------------------------------------------------------------------------- export and the app


def test_export_round_trip_through_map_artifacts(cif_folder):
    dataset = get_dataset(str(cif_folder))
    compute_descriptor(dataset, "ewald", progress=False)
    folder = export_descriptor(dataset, "ewald")
    table = load_descriptor(dataset, "ewald")
    assert np.array_equal(np.load(folder / "values.npy"), table.values)
    assert list(np.load(folder / "material_ids.npy")) == list(table.material_ids)

    ids = ["nacl", "nacl-super", "kcl", "cscl", "broken"]  # the map holds a material the descriptor lacks
    materials = pd.DataFrame({"material_id": ids, "formula": ["NaCl", "NaCl", "KCl", "CsCl", "X"],
                              "x": np.arange(5.0), "y": np.zeros(5), "band_gap": [5.0, 5.0, 6.0, 5.5, np.nan]})
    write_artifacts(artifact_dir(dataset.name, "m"), {"dataset": dataset.name, "model": "m"}, materials,
                    np.eye(5, dtype=np.float32), {"a": "stand-in"}, {})
    artifacts = MapArtifacts.load(str(cif_folder), "m")
    assert artifacts.descriptor_names() == ["ewald"]
    assert artifacts.descriptor_info("ewald")["n_materials"] == 4
    neighbours = artifacts.descriptor_neighbors("ewald", "nacl", k=3)
    assert list(neighbours.columns[:4]) == NEIGHBOR_COLUMNS and "band_gap" in neighbours
    assert list(neighbours.columns) == list(artifacts.neighbors("nacl", 3).columns)
    expected = table.neighbors("nacl", 3)
    assert list(neighbours["material_id"]) == list(expected["material_id"])
    np.testing.assert_allclose(neighbours["distance"], expected["distance"], rtol=1e-5, atol=1e-4)
    assert neighbours["formula"].iloc[0] == "NaCl"
    with pytest.raises(UnknownMaterialError, match="not covered"):
        artifacts.descriptor_neighbors("ewald", "broken")
    with pytest.raises(UnknownMaterialError):
        artifacts.descriptor_neighbors("ewald", "mp-0")
    with pytest.raises(ArtifactError, match="exported: ewald"):
        artifacts.descriptor_neighbors("crystalnn", "nacl")
    with pytest.raises(ValueError):
        artifacts.descriptor_neighbors("ewald", "nacl", k=0)


def test_cli_errors_are_one_line(cif_folder, capsys):
    from ml.cli.main import main

    assert main(["descriptors", "--dataset", str(cif_folder), "--name", "soap"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown descriptor")
    assert main(["descriptors", "--dataset", str(cif_folder)]) == 2


def test_concept_sample_is_balanced_seeded_and_includes_the_benchmark(monkeypatch):
    ids = [f"mp-{i}" for i in range(100)]
    labels = pd.DataFrame({"supercon_label": ["superconductor"] * 30 + ["non-superconductor"] * 5 + ["doped match"] * 5},
                          index=pd.Index(ids[:40], name="material_id"))

    class FakeMap:
        def neighbors(self, material_id, k):
            return pd.DataFrame({"material_id": [f"nb-{material_id}-{j}" for j in range(k)]})

    monkeypatch.setattr(MapArtifacts, "load", staticmethod(lambda *a, **k: FakeMap()))
    monkeypatch.setattr(id_sets, "get_dataset", lambda name: type("D", (), {"material_ids": ids})())
    monkeypatch.setattr("ml.data.datasets.read_supercon_labels", lambda: labels)
    monkeypatch.setattr(id_sets, "CONCEPT_DRAW", 25)
    chosen, label = id_sets.ids_for("concepts", sample_size=20, seed=3)
    numbers = sorted(int(m.split("-")[1]) for m in chosen if m.startswith("mp-") and m not in id_sets.BENCHMARK_QUERIES)
    assert sum(n < 30 for n in numbers) == 10 and sum(n >= 40 for n in numbers) == 10 and len(numbers) == 20
    assert {"mp-22601", "nb-mp-22601-49", "nb-mp-1200096-0"} <= set(chosen)
    assert chosen == sorted(set(chosen)) and "10 SuperCon superconductors" in label
    assert id_sets.ids_for("concepts", sample_size=20, seed=3)[0] == chosen
    assert id_sets.ids_for("concepts", sample_size=20, seed=4)[0] != chosen
    # smaller samples of one seed are nested in larger ones (a slow descriptor runs on a subset)
    assert set(id_sets.concept_sample_ids(per_class=4, seed=3)) < set(chosen)
    with pytest.raises(ValueError, match="at most 25 materials per class"):
        id_sets.concept_sample_ids(per_class=26)
    monkeypatch.setattr(id_sets, "CONCEPT_DRAW", 31)
    with pytest.raises(ValueError, match="only 30 materials labelled 'superconductor'"):
        id_sets.concept_sample_ids(per_class=10)
    # a cache that ran the 4-per-class, then the 10-per-class sample covers the larger one
    monkeypatch.setattr(id_sets, "CONCEPT_DRAW", 25)
    small, large = id_sets.ids_for("concepts", 8, 3)[1], label
    other_seed = id_sets.ids_for("concepts", 8, 4)[1]
    runs = [{"ids": small, "concept_sample": {"per_class": 4, "seed": 3}, "finished": "t1"},
            {"ids": large, "concept_sample": {"per_class": 10, "seed": 3}, "finished": "t2"},
            {"ids": other_seed, "concept_sample": {"per_class": 4, "seed": 4}, "finished": "t3"}]
    dataset = type("D", (), {"name": "toy", "__len__": lambda self: 1000})()
    assert compute._coverage_label(dataset, set(chosen), runs) == f"{large}; {other_seed}"
    # an interrupted larger sample does not hide the finished smaller one
    interrupted = {key: value for key, value in runs[1].items() if key != "finished"}
    assert compute._coverage_label(dataset, set(chosen), [runs[0], interrupted]) == f"{small}; partial: {large}"


def test_cli_offers_every_id_set():
    from ml.cli.main import _parser

    args = _parser().parse_args(["descriptors", "--name", "ewald", "--ids-from", "concepts"])
    assert args.ids_from == "concepts"
    with pytest.raises(SystemExit):
        _parser().parse_args(["descriptors", "--name", "ewald", "--ids-from", "everything"])
    verbs = next(a for a in _parser()._actions if a.dest == "verb")
    choices = next(a for a in verbs.choices["descriptors"]._actions if a.dest == "ids_from").choices
    assert tuple(choices) == id_sets.ID_SETS
