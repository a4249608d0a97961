"""What the app reads is built ahead: the stored XRD patterns of the fixture map, the VAE set's
artifact, and the concept forest behind the service (the same scores as before it moved)."""

from __future__ import annotations

import logging
import shutil
import sys

import numpy as np
import pytest

from ml.mapping.format import XRD_PATTERN_FILES


def _no_simulation(*_args, **_kwargs):
    raise AssertionError("the pattern was simulated, not read from the map")


# --------------------------------------------------------------------------- XRD patterns


def test_the_build_stores_every_pattern(atlas):
    stored = atlas.stored_xrd_patterns
    assert stored is not None and len(stored) == len(atlas)
    assert atlas.manifest["xrd_patterns"]["n_bins"] == 5000
    assert set(XRD_PATTERN_FILES) <= set(atlas.manifest["files"])
    assert isinstance(stored.bins, np.memmap) and stored.bins.dtype == np.int16
    assert stored.n_with_pattern == atlas.manifest["xrd_map"]["n_materials"]


def test_stored_patterns_equal_the_simulated_ones(atlas):
    """float16 storage: within 5e-4 of the pattern's maximum (1), the bins exactly where they were."""
    from ml.features.xrd_sim import xrd_pattern_fast

    for material_id in atlas.materials["material_id"].iloc[::37]:
        two_theta, intensity = atlas.xrd_pattern(material_id)
        simulated = xrd_pattern_fast(atlas.structure(material_id))
        assert two_theta.shape == intensity.shape == (5000,)
        assert two_theta[0] == pytest.approx(10.0) and two_theta[1] - two_theta[0] == pytest.approx(0.02)
        np.testing.assert_allclose(intensity, simulated, atol=5e-4)
        assert (np.flatnonzero(intensity) == np.flatnonzero(simulated)).all()


def test_the_material_page_draws_the_stored_pattern(dash_app, atlas, monkeypatch):
    import ml.features.xrd_sim

    monkeypatch.setattr(ml.features.xrd_sim, "xrd_pattern_fast", _no_simulation)
    material_id = atlas.materials["material_id"].iloc[3]
    figure = sys.modules["pages.material"].draw_xrd(material_id).figure
    expected = atlas.xrd_pattern(material_id)[1]
    np.testing.assert_allclose(np.asarray(figure.data[0].y, dtype=np.float32), expected, atol=1e-6)
    assert str(atlas.material(material_id)["formula"]) in figure.layout.title.text


@pytest.fixture
def map_without_patterns(atlas, tmp_path):
    """A copy of the fixture map as built before the patterns were stored."""
    import json

    folder = tmp_path / "artifacts" / atlas.dataset / atlas.model
    shutil.copytree(atlas.folder, folder)
    for name in XRD_PATTERN_FILES:
        (folder / name).unlink()
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["xrd_patterns"]
    for name in XRD_PATTERN_FILES:
        del manifest["files"][name]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_an_old_map_simulates_and_says_once_how_to_store_them(map_without_patterns, atlas, caplog):
    from ml.service import LoadedMap

    old = LoadedMap.load(atlas.dataset, atlas.model, root=map_without_patterns.parents[1])
    assert old.stored_xrd_patterns is None
    material_id = atlas.materials["material_id"].iloc[5]
    with caplog.at_level(logging.WARNING, logger="ml.mapping.artifacts"):
        first = old.xrd_pattern(material_id)
        old.xrd_pattern(atlas.materials["material_id"].iloc[6])
    said = [r.getMessage() for r in caplog.records if "no stored XRD patterns" in r.getMessage()]
    assert len(said) == 1 and f"python -m ml build --dataset {atlas.dataset} --model {atlas.model}" in said[0]
    np.testing.assert_allclose(first[1], atlas.xrd_pattern(material_id)[1], atol=5e-4)


def test_the_migration_writes_the_patterns_from_the_cache(map_without_patterns, atlas, app_env, monkeypatch):
    """``python -m ml build`` on an up-to-date map without patterns adds them from the cached
    features: nothing simulated, nothing else rebuilt, the same arrays as a fresh build."""
    import ml.data.featurize
    import ml.mapping.build
    from fixture_map import MODEL, fixture_dataset

    from ml.mapping.build import build_map
    from ml.mapping.xrd_patterns import SparsePatterns
    from ml.service import LoadedMap
    from ml.settings import get_settings

    data_dir = map_without_patterns.parents[2]
    for name in ("cache", "models"):  # the fixture's feature cache and model, the map copy without patterns
        (data_dir / name).symlink_to(app_env / name)
    monkeypatch.setattr(get_settings(), "data_dir", data_dir)
    monkeypatch.setattr(ml.data.featurize, "_featurize_chunk", _no_simulation)
    monkeypatch.setattr(ml.mapping.build, "fit_tsne", _no_simulation)
    assert build_map(fixture_dataset(), model=MODEL, processes=1, progress=False) == map_without_patterns
    migrated = LoadedMap.load(atlas.dataset, atlas.model, root=map_without_patterns.parents[1])
    stored = migrated.stored_xrd_patterns
    assert isinstance(stored, SparsePatterns)
    for name in ("offsets", "bins", "intensity"):
        np.testing.assert_array_equal(getattr(stored, name), getattr(atlas.stored_xrd_patterns, name))
    assert migrated.manifest["files"] == atlas.manifest["files"]
    assert migrated.manifest["xrd_patterns"] == atlas.manifest["xrd_patterns"]


def test_csr_layout_follows_the_map_rows():
    from ml.mapping.xrd_patterns import SparsePatterns

    # features of 3 patterns; the map has 4 rows, row 1 without a pattern, rows in another order
    indptr = np.array([0, 2, 3, 6])
    bins = np.array([5, 9, 0, 1, 2, 4999], dtype=np.int16)
    values = np.array([0.5, 1, 1, 0.25, 0.5, 1], dtype=np.float32)
    patterns = SparsePatterns.from_features(4, np.array([0, 2, 3]), np.array([2, 0, 1]), indptr, bins, values)
    assert patterns.offsets.tolist() == [0, 3, 3, 5, 6]
    assert patterns.bins.tolist() == [1, 2, 4999, 5, 9, 0]
    assert patterns.n_with_pattern == 3
    two_theta, dense = patterns.pattern(2)
    assert dense[5] == 0.5 and dense[9] == 1 and dense.sum() == 1.5
    assert two_theta[5] == pytest.approx(10.1)
    with pytest.raises(ValueError, match="could not simulate"):
        patterns.pattern(1)


# --------------------------------------------------------------------------- the VAE set


@pytest.fixture
def no_mirror(monkeypatch, tmp_path):
    """The data mirror unavailable: its folder is empty."""
    from ml.settings import get_settings

    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    monkeypatch.setenv("MATMAP_MIRROR_DIR", str(empty))
    monkeypatch.setattr(get_settings(), "mirror_dir", empty)
    yield empty
    # settings made anew during the test (a cache_clear) read the empty mirror from the
    # environment: drop them, or every later test would find no mirror
    monkeypatch.undo()
    get_settings.cache_clear()


def test_vae_set_membership_without_the_mirror(explorer_source, no_mirror, monkeypatch):
    """The material page's link reads the built set, derived once from the voxel store on an
    install built before the set was stored; the mirror is never needed."""
    from ml.data.datasets import DatasetError, get_dataset
    from ml.generation import vae_set
    from ml.mapping.format import vae_set_path
    from ml.service import explorer

    with pytest.raises(DatasetError):
        get_dataset("mp2024")  # the mirror is really gone
    members = list(explorer.vae_table()["material_id"])
    path = vae_set_path(explorer_source.name)
    path.unlink(missing_ok=True)
    try:
        explorer.use_source(None, explorer_source.name)  # by name: nothing of the dataset in memory
        assert explorer.in_vae_set(members[0]) and not explorer.in_vae_set("mp-0")
        assert path.is_file()  # derived once, then read
        assert list(explorer.vae_table()["material_id"]) == members
        explorer.use_source(None, explorer_source.name)
        monkeypatch.setattr(vae_set, "derive_vae_set", _no_simulation)
        assert explorer.in_vae_set(members[-1])
        assert explorer.search(members[0])[0]["material_id"] == members[0]
    finally:
        explorer.use_source(None, explorer_source)


def test_the_generative_model_loads_by_name_from_the_published_store(explorer_source, no_mirror):
    """/generate's model reads the voxel store the build published among the artifacts: hard
    links to the built store, made once from the cache on an install built before stores were
    published; neither the mirror nor the cache is read to load it."""
    import os

    from fixture_generator import GRID
    from ml.data.datasets import DatasetError, get_dataset
    from ml.generation.generative_model import GenerativeModel
    from ml.generation.records import GenerationError
    from ml.generation.voxel_arrays import arrays_dir, load_voxel_arrays, published_store, published_store_dir
    from ml.generation.voxels import VoxelConfig

    with pytest.raises(DatasetError):
        get_dataset("mp2024")  # the mirror is really gone
    voxels = VoxelConfig(grid_size=GRID)
    target = published_store_dir(explorer_source.name, voxels)
    shutil.rmtree(target, ignore_errors=True)  # an install from before stores were published
    folder = published_store(explorer_source.name, voxels)
    assert folder == target and (folder / "meta.json").is_file() and (folder / "selection.parquet").is_file()
    built = arrays_dir(explorer_source, voxel_config=voxels)
    assert os.stat(folder / "density.npy").st_ino == os.stat(built / "density.npy").st_ino  # linked, not copied

    by_name, by_dataset = load_voxel_arrays(explorer_source.name, voxel_config=voxels), load_voxel_arrays(
        explorer_source, voxel_config=voxels)
    assert list(by_name.material_ids) == list(by_dataset.material_ids)
    np.testing.assert_array_equal(by_name.density, by_dataset.density)
    model = GenerativeModel.load(None, dataset=explorer_source.name, predictors={})
    first = str(by_name.material_ids[0])
    assert model.row_of(first) == 0 and model.training_formulas
    with pytest.raises(GenerationError, match="not in the VAE's set"):
        model.row_of("mp-0")


def test_vae_set_is_written_by_the_data_step(explorer_source, app_env, tmp_path):
    from ml.generation.vae_set import COLUMNS, derive_vae_set, write_vae_set
    from ml.generation.voxel_data import select_vae_materials

    selection = select_vae_materials(explorer_source, progress=False)
    path = write_vae_set(selection, "some-dataset", root=tmp_path)
    import pandas as pd

    written = pd.read_parquet(path)
    assert list(written.columns) == COLUMNS and len(written) == len(selection)
    derived = derive_vae_set(explorer_source.name)
    pd.testing.assert_frame_equal(derived, written)


def test_a_missing_vae_set_names_the_command(app_env, tmp_path, monkeypatch):
    from ml.generation.vae_set import VAESetMissing, load_vae_set
    from ml.settings import get_settings

    monkeypatch.setattr(get_settings(), "data_dir", tmp_path)
    with pytest.raises(VAESetMissing) as missing:
        load_vae_set("nothing")
    assert missing.value.command == "python -m ml vae-data --dataset nothing"


# --------------------------------------------------------------------------- concepts


def test_concept_scores_are_the_same_as_before_the_move():
    """Scores of the forest on synthetic embeddings, recorded with components/concept.py's
    ``fit_concept`` before it moved to ml/service/concepts.py."""
    from test_concept import FAST, two_clusters

    from ml.service.concepts import fit_concept

    x = two_clusters()
    first = fit_concept(x, [0, 1, 2, 3, 4], config=FAST)
    np.testing.assert_allclose(first.scores[[0, 5, 10, 149, 150, 200, 299]],
                               [1.0, 0.181818, 0.475, 0.25, 0.0, 0.0, 0.0], atol=1e-6)
    assert float(np.sum(first.scores.astype(np.float64))) == pytest.approx(46.26338461600244, abs=1e-4)
    assert float(np.sum(first.scores.astype(np.float64) * np.arange(300))) == pytest.approx(3619.6053890455514, abs=1e-3)
    assert first.oob_auc == pytest.approx(0.384) and first.negative_rows[:5].tolist() == [5, 6, 7, 9, 11]
    given = fit_concept(x, [0, 1, 2, 3], [150, 151, 152, 153], config=FAST)
    np.testing.assert_allclose(given.scores[[0, 5, 10, 149, 150, 200, 299]],
                               [1.0, 1.0, 1.0, 1.0, 0.230769, 0.1, 0.0], atol=1e-6)
    assert float(np.sum(given.scores.astype(np.float64) * np.arange(300))) == pytest.approx(12358.165368709713, abs=1e-3)


def test_concept_service_on_the_fixture_map_matches_the_forest_on_rows(dash_app, atlas):
    """The page's training (ids through :func:`ml.service.concepts.concept_scores`) gives the
    scores of the forest fitted on the rows of those ids, as the page fitted it before."""
    from components.concept import decode_scores, label_set_ids
    from ml.service.concepts import ConceptConfig, concept_scores, fit_concept

    config = ConceptConfig(n_estimators=20, chunks=2, min_random_negatives=30)
    positives, _ = label_set_ids(atlas.materials, "superconductors")
    positives = positives[:8] + ["mp-not-on-the-map"]
    via_service = concept_scores(atlas, positives, (), config)
    rows = np.array([atlas.row_of(m) for m in positives if m in atlas])
    direct = fit_concept(atlas.embeddings, rows, None, config)
    np.testing.assert_array_equal(via_service.scores, direct.scores)
    assert via_service.oob_auc == direct.oob_auc or np.isnan(direct.oob_auc)
    concept = sys.modules["pages.concept"]
    result, message = concept.train_result(atlas, {"positives": positives, "negatives": []})
    assert message is None
    reference = fit_concept(atlas.embeddings, rows, None, concept.CONFIG)
    np.testing.assert_array_equal(decode_scores(result["scores"], len(atlas)), reference.scores)
