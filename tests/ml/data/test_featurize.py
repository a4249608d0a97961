"""Featurisation into cached shards: failures recorded, resumable, parallel path."""

from __future__ import annotations

import numpy as np
import pytest

import ml.data.featurize
import ml.data.shard_cache
from ml.data.batches import GraphStore, XRDStore
from ml.data.datasets import Dataset, get_dataset
from ml.data.featurize import cache_dir, featurize, load_features, shard_path
from ml.data.shard_cache import n_shards_for, shard_of
from ml.features.graph import GraphConfig, crystal_graph
from ml.settings import get_settings
from ml.data.structures import parse_cif
from ml.features.xrd import xrd_pattern

GOOD = {"NaCl", "CsCl", "Si"}
BAD_REASONS = {
    "empty": "empty",
    "notes": "not a CIF",
    "broken": "no structure could be read",
    "FeNi_disordered": "disordered",
}


@pytest.mark.parametrize("kind", ["graph", "xrd"])
def test_failures_are_recorded_with_reasons(cif_folder, kind):
    dataset = get_dataset(str(cif_folder))
    folder = featurize(dataset, kind, processes=1, progress=False)
    assert folder == cache_dir(dataset, kind)
    assert str(folder).startswith(str(get_settings().data_dir))
    table = load_features(dataset, kind)
    assert set(table.material_ids) == GOOD
    reasons = {f["material_id"]: f["reason"] for f in table.failures}
    assert set(reasons) == set(BAD_REASONS)
    for material_id, phrase in BAD_REASONS.items():
        assert phrase in reasons[material_id], reasons[material_id]

    # the cache holds exactly what the featurisers give for the same CIF text
    structures = {m: parse_cif((cif_folder / f"{m}.cif").read_text()) for m in GOOD}
    if kind == "graph":
        store = GraphStore(table)
        for row, material_id in enumerate(table.material_ids):
            expected = crystal_graph(structures[material_id])
            batch = store.batch(np.array([row]))
            np.testing.assert_array_equal(batch.atomic_numbers.numpy(), expected.atomic_numbers)
            np.testing.assert_array_equal(batch.edge_index.numpy(), np.stack([expected.edge_src, expected.edge_dst]))
            np.testing.assert_allclose(batch.edge_distance.numpy(), expected.edge_distance)
        formulas = dict(zip(table.material_ids, table.arrays["formula"]))
        assert formulas == {"NaCl": "NaCl", "CsCl": "CsCl", "Si": "Si"}
        groups = dict(zip(table.material_ids, table.arrays["spacegroup_number"]))
        assert groups == {"NaCl": 225, "CsCl": 221, "Si": 227}
    else:
        patterns = XRDStore(table).batch(np.arange(len(table))).numpy()
        for row, material_id in enumerate(table.material_ids):
            # the cache's simulator (ml.features.xrd_sim) agrees with pymatgen's to float precision
            expected = xrd_pattern(structures[material_id])
            np.testing.assert_array_equal(np.flatnonzero(patterns[row]), np.flatnonzero(expected))
            np.testing.assert_allclose(patterns[row], expected, atol=1e-5)


def test_unexpected_errors_are_recorded_not_raised(cif_folder, monkeypatch):
    def explode(structure, config):
        if structure.composition.reduced_formula == "CsCl":
            raise RuntimeError("boom")
        return crystal_graph(structure, config)

    monkeypatch.setattr(ml.data.featurize, "crystal_graph", explode)
    dataset = get_dataset(str(cif_folder))
    featurize(dataset, "graph", processes=1, progress=False)
    table = load_features(dataset, "graph")
    assert set(table.material_ids) == {"NaCl", "Si"}
    assert {"material_id": "CsCl", "reason": "RuntimeError: boom"} in table.failures


def test_ids_missing_from_the_source_are_failures(cif_folder):
    real = get_dataset(str(cif_folder))
    dataset = Dataset(name="ghosts", material_ids=(*real.material_ids, "ghost"),
                      read_records=real.read_records, properties=real.properties)
    featurize(dataset, "graph", processes=1, progress=False)
    table = load_features(dataset, "graph")
    assert {"material_id": "ghost", "reason": "not found in the dataset's source"} in table.failures
    assert len(table) + len(table.failures) == len(dataset)


def test_resume_rebuilds_only_missing_shards(cif_folder, monkeypatch):
    monkeypatch.setattr(ml.data.shard_cache, "SHARD_SIZE", 2)
    dataset = get_dataset(str(cif_folder))
    n_shards = n_shards_for(len(dataset))
    assert n_shards == 4
    folder = featurize(dataset, "graph", processes=1, progress=False)
    paths = [shard_path(folder, s) for s in range(n_shards)]
    assert all(p.is_file() for p in paths)
    before = load_features(dataset, "graph")
    mtimes = {p: p.stat().st_mtime_ns for p in paths}

    members = {s: sorted(m for m in dataset.material_ids if shard_of(m, n_shards) == s) for s in range(n_shards)}
    victim = max(members, key=lambda s: len(members[s]))
    assert members[victim]
    paths[victim].unlink()

    featurised: list[str] = []
    original = ml.data.featurize._featurize_chunk

    def counting(job):
        featurised.extend(mid for mid, _ in job[-1])  # the records are last in a job
        return original(job)

    monkeypatch.setattr(ml.data.featurize, "_featurize_chunk", counting)
    featurize(dataset, "graph", processes=1, progress=False)
    assert sorted(featurised) == members[victim]
    for s, p in enumerate(paths):
        if s == victim:
            assert p.is_file()
        else:
            assert p.stat().st_mtime_ns == mtimes[p], f"shard {s} was rewritten"
    after = load_features(dataset, "graph")
    np.testing.assert_array_equal(np.sort(after.material_ids), np.sort(before.material_ids))
    assert sorted(map(str, after.failures)) == sorted(map(str, before.failures))

    # a finished cache is left alone entirely
    featurised.clear()
    featurize(dataset, "graph", processes=1, progress=False)
    assert featurised == [] and not list(folder.glob("*.part*"))


def test_selected_shards_only(cif_folder, monkeypatch):
    monkeypatch.setattr(ml.data.shard_cache, "SHARD_SIZE", 2)
    dataset = get_dataset(str(cif_folder))
    folder = featurize(dataset, "xrd", shards=[1, 99], processes=1, progress=False)
    assert sorted(p.name for p in folder.glob("shard_*.npz")) == ["shard_00001.npz"]
    part = load_features(dataset, "xrd", shards=[1])
    assert all(shard_of(m, 4) == 1 for m in [*part.material_ids, *(f["material_id"] for f in part.failures)])
    with pytest.raises(FileNotFoundError, match="not built yet"):
        load_features(dataset, "xrd")


def test_cache_is_keyed_by_configuration_and_ids(cif_folder, tmp_path, crystals):
    dataset = get_dataset(str(cif_folder))
    assert cache_dir(dataset, "graph") != cache_dir(dataset, "graph", GraphConfig(cutoff=6.0))
    assert cache_dir(dataset, "graph") != cache_dir(dataset, "xrd")
    (cif_folder / "Po.cif").write_text(crystals.polonium().to(fmt="cif"))
    assert cache_dir(get_dataset(str(cif_folder)), "graph") != cache_dir(dataset, "graph")
    with pytest.raises(ValueError, match="unknown feature kind"):
        featurize(dataset, "voxels")


def test_multiprocessing_path_gives_the_same_shards(cif_folder, tmp_path, monkeypatch):
    """The one test of the worker pool (spawned processes)."""
    monkeypatch.setattr(ml.data.featurize, "CHUNK_SIZE", 2)  # several chunks, so both workers get work
    dataset = get_dataset(str(cif_folder))
    featurize(dataset, "graph", processes=1, progress=False)
    serial = load_features(dataset, "graph")

    monkeypatch.setenv("MATMAP_DATA_DIR", str(tmp_path / "parallel"))
    get_settings.cache_clear()
    folder = featurize(dataset, "graph", processes=2, progress=False)
    assert str(folder).startswith(str(tmp_path / "parallel"))
    parallel = load_features(dataset, "graph")
    order_s, order_p = np.argsort(serial.material_ids), np.argsort(parallel.material_ids)
    np.testing.assert_array_equal(serial.material_ids[order_s], parallel.material_ids[order_p])
    assert sorted(map(str, serial.failures)) == sorted(map(str, parallel.failures))
    store_s, store_p = GraphStore(serial), GraphStore(parallel)
    for rs, rp in zip(order_s, order_p):
        a, b = store_s.batch(np.array([rs])), store_p.batch(np.array([rp]))
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        np.testing.assert_array_equal(a.edge_index, b.edge_index)
        np.testing.assert_array_equal(a.edge_distance, b.edge_distance)


def test_pymatgen_engine_gives_the_same_cache_content(cif_folder, tmp_path):
    dataset = get_dataset(str(cif_folder))
    featurize(dataset, "xrd", processes=1, progress=False)
    fast = load_features(dataset, "xrd")
    folder = cache_dir(dataset, "xrd")
    for path in folder.glob("shard_*.npz"):
        path.unlink()
    featurize(dataset, "xrd", processes=1, progress=False, xrd_engine="pymatgen")
    reference = load_features(dataset, "xrd")
    assert list(fast.material_ids) == list(reference.material_ids) and len(fast) > 0
    assert np.array_equal(fast.arrays["bins"], reference.arrays["bins"])
    assert np.allclose(fast.arrays["values"], reference.arrays["values"], atol=1e-5)


def test_unknown_xrd_engine_is_refused(cif_folder):
    with pytest.raises(ValueError, match="unknown XRD engine"):
        featurize(get_dataset(str(cif_folder)), "xrd", processes=1, progress=False, xrd_engine="cromer")


def test_xrd_pass_reuses_the_cells_of_the_graph_cache(cif_folder, monkeypatch):
    """Each CIF is parsed once: after the graph pass, the XRD pass parses only the CIFs whose graph
    failed (or is not cached), and its patterns equal those simulated from freshly parsed CIFs."""
    dataset = get_dataset(str(cif_folder))
    featurize(dataset, "xrd", processes=1, progress=False)
    from_cifs = load_features(dataset, "xrd")
    for path in cache_dir(dataset, "xrd").glob("shard_*.npz"):
        path.unlink()

    featurize(dataset, "graph", processes=1, progress=False)
    parsed: list[str] = []
    original = ml.data.featurize.parse_cif

    def counting(text):
        parsed.append(text)
        return original(text)

    monkeypatch.setattr(ml.data.featurize, "parse_cif", counting)
    featurize(dataset, "xrd", processes=1, progress=False)
    from_cells = load_features(dataset, "xrd")

    texts = {m: (cif_folder / f"{m}.cif").read_text() for m in dataset.material_ids}
    assert sorted(parsed) == sorted(texts[m] for m in BAD_REASONS)  # the 3 good ones came from their cells
    np.testing.assert_array_equal(from_cells.material_ids, from_cifs.material_ids)
    for key in ("indptr", "bins", "values"):
        np.testing.assert_array_equal(from_cells.arrays[key], from_cifs.arrays[key])
    assert sorted(map(str, from_cells.failures)) == sorted(map(str, from_cifs.failures))


def test_cell_arrays_rebuild_the_parsed_structure(cif_texts):
    from ml.data.structures import CellArrays

    for text in (cif_texts["NaCl"], cif_texts["Si"]):
        structure = parse_cif(text)
        rebuilt = CellArrays.of(structure).structure()
        np.testing.assert_array_equal(rebuilt.lattice.matrix, structure.lattice.matrix)
        np.testing.assert_array_equal(rebuilt.frac_coords, structure.frac_coords)
        assert rebuilt.species == structure.species


def test_graph_pass_skips_symmetry_known_from_the_properties(cif_folder, monkeypatch):
    """Density and space group are computed only where the properties table lacks them; the map's
    table is the same either way (it prefers the properties table)."""
    from ml.mapping.build import materials_table

    real = get_dataset(str(cif_folder))
    properties = real.properties.copy()
    properties.loc["NaCl", ["density", "spacegroup_number"]] = [2.17, 225]
    dataset = Dataset(name="known", material_ids=real.material_ids, read_records=real.read_records,
                      properties=properties)
    calls: list[int] = []
    original = ml.data.structures.spacegroup_number
    monkeypatch.setattr(ml.data.structures, "spacegroup_number", lambda s: calls.append(len(s)) or original(s))
    featurize(dataset, "graph", processes=1, progress=False)
    table = load_features(dataset, "graph")
    groups = dict(zip(table.material_ids, table.arrays["spacegroup_number"].tolist()))
    assert groups == {"NaCl": 0, "CsCl": 221, "Si": 227} and len(calls) == 2
    assert np.isnan(table.arrays["density"][list(table.material_ids).index("NaCl")])
    mapped = materials_table(dataset, table).set_index("material_id")
    assert mapped.loc["NaCl", "spacegroup_number"] == 225 and mapped.loc["NaCl", "density"] == pytest.approx(2.17)
    assert mapped.loc["Si", "spacegroup_number"] == 227
