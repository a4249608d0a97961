"""The map interface the app reads (ml.mapping.artifacts), on a small synthetic map."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ml.data.formulas import formula_key
from ml.mapping.artifacts import MapArtifacts
from ml.mapping.writer import write_artifacts
from ml.mapping.tables import column_label, table_csv
from ml.mapping.format import MANIFEST, ArtifactError, UnknownMaterialError, artifact_dir
from ml.models.registry import file_sha256
from ml.settings import REPO_ROOT, get_settings


@pytest.fixture
def small_map(crystals):
    """Five materials on a line in a 3-d embedding space, written with write_artifacts."""
    materials = pd.DataFrame(
        {
            "material_id": ["mp-1", "mp-2", "mp-3", "mp-4", "mp-5"],
            "formula": ["NaCl", "LiCoO2", "CsCl", "Si", "CoLiO2"],
            "x": np.arange(5, dtype=np.float32),
            "y": np.zeros(5, dtype=np.float32),
            "band_gap": [5.0, 2.7, 6.0, 1.1, np.nan],
        }
    )
    embeddings = np.array([[0, 0, 0], [1, 0, 0], [3, 0, 0], [7, 0, 0], [10, 0, 0]], dtype=np.float32)
    cifs = {"mp-1": crystals.nacl().to(fmt="cif"), "mp-3": crystals.cscl().to(fmt="cif")}
    folder = artifact_dir("user-toy", "m")
    assert str(folder).startswith(str(get_settings().data_dir))
    write_artifacts(folder, {"dataset": "user-toy", "model": "m"}, materials, embeddings, {"a": "picklable stand-in"}, cifs)
    return folder


def test_written_folder_and_manifest(small_map):
    manifest = json.loads((small_map / MANIFEST).read_text())
    assert manifest["n_materials"] == 5 and manifest["embedding_dim"] == 3
    for name, digest in manifest["files"].items():
        assert file_sha256(small_map / name) == digest
    assert "numpy" in manifest["versions"]
    assert not small_map.with_name("m.partial").exists()


def test_load_and_look_up(small_map):
    artifacts = MapArtifacts.load("user-toy", "m")
    assert len(artifacts) == 5 and artifacts.dataset == "user-toy" and artifacts.model == "m"
    assert "mp-3" in artifacts and "mp-9" not in artifacts
    assert artifacts.material("mp-2")["formula"] == "LiCoO2"
    np.testing.assert_array_equal(artifacts.coordinates[:, 0], np.arange(5))
    with pytest.raises(UnknownMaterialError, match="'mp-9' is not in the user-toy map"):
        artifacts.row_of("mp-9")


def test_neighbors(small_map):
    artifacts = MapArtifacts.load("user-toy", "m")
    table = artifacts.neighbors("mp-3", k=3)
    assert list(table.columns[:4]) == ["rank", "material_id", "formula", "distance"]
    assert list(table["material_id"]) == ["mp-2", "mp-1", "mp-4"]
    np.testing.assert_allclose(table["distance"], [2.0, 3.0, 4.0])
    assert "band_gap" in table and table["band_gap"].iloc[0] == 2.7
    # k beyond the map gives every other material
    assert len(artifacts.neighbors("mp-1", k=50)) == 4
    for bad in (0, 1001):
        with pytest.raises(ValueError, match="between 1 and 1000"):
            artifacts.neighbors("mp-1", k=bad)
    with pytest.raises(ValueError, match="dimensions"):
        artifacts.neighbors_of_embedding(np.zeros(4))
    # a point off the map: every material is a candidate
    outside = artifacts.neighbors_of_embedding(np.array([6.2, 0, 0]), k=2)
    assert list(outside["material_id"]) == ["mp-4", "mp-3"]


def test_no_close_match_is_calibrated_on_the_maps_own_nearest_neighbours(small_map):
    """The threshold is the 99th percentile of each material's distance to its nearest other
    material (1, 1, 2, 3, 3 on this line): a located point farther than that from everything
    gets the note, with both distances; one near a material does not."""
    from ml.mapping.locate import _closeness_notes

    artifacts = MapArtifacts.load("user-toy", "m")
    assert artifacts.close_match_distance == pytest.approx(3.0)
    far = _closeness_notes(artifacts.neighbors_of_embedding(np.array([20.0, 0, 0]), k=3), artifacts)
    assert len(far) == 1 and far[0].startswith("no close match") and "CoLiO2, mp-5" in far[0]
    assert "10 away" in far[0] and "(3)" in far[0]
    assert _closeness_notes(artifacts.neighbors_of_embedding(np.array([6.2, 0, 0]), k=3), artifacts) == ()


def test_search_by_id_and_formula(small_map):
    artifacts = MapArtifacts.load("user-toy", "m")
    assert artifacts.search("mp-4") == [3]
    assert artifacts.search("LiCoO2") == [1, 4]  # CoLiO2 is the same formula
    assert artifacts.search("O2 Li Co") == [1, 4]
    assert artifacts.search("Li2Co2O4") == [1, 4]  # reduced
    assert artifacts.search("LiCoO2", limit=1) == [1]  # the first, in table order
    assert all(type(row) is int for row in artifacts.search("LiCoO2"))  # JSON-ready rows
    assert artifacts.search("nacl") == []  # element symbols are case-sensitive
    assert artifacts.search("   ") == [] and artifacts.search("Xx!") == []
    assert formula_key("Fe2O3") == formula_key("O3Fe2") != formula_key("FeO")


def test_structures_from_the_store(small_map):
    artifacts = MapArtifacts.load("user-toy", "m")
    assert artifacts.structure("mp-1").composition.reduced_formula == "NaCl"
    with pytest.raises(UnknownMaterialError):
        artifacts.cif("mp-2")  # on the map, but no structure stored
    two_theta, intensity = artifacts.xrd_pattern("mp-3")
    assert two_theta.shape == intensity.shape == (5000,) and intensity.max() == 1.0


def test_missing_map_and_mismatched_files(small_map):
    with pytest.raises(ArtifactError, match="python -m ml build --dataset user-toy --model other"):
        MapArtifacts.load("user-toy", "other")
    np.save(small_map / "embeddings.npy", np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ArtifactError, match="5 materials but 4 embeddings"):
        MapArtifacts.load("user-toy", "m")


def test_write_refuses_inconsistent_input(tmp_path):
    table = pd.DataFrame({"material_id": ["a"], "formula": ["X"], "x": [0.0], "y": [0.0]})
    with pytest.raises(ValueError, match="1 materials but 2 embeddings"):
        write_artifacts(tmp_path / "f", {}, table, np.zeros((2, 3)), {}, {})
    with pytest.raises(ValueError, match="lacks"):
        write_artifacts(tmp_path / "f", {}, table.drop(columns="y"), np.zeros((1, 3)), {}, {})
    assert not (tmp_path / "f").exists()


def test_column_label():
    assert column_label("band_gap") == "band gap (eV)"
    assert column_label("crystal_system") == "crystal system"


def test_neighbour_csv_has_units_and_no_float32_noise(small_map):
    artifacts = MapArtifacts.load("user-toy", "m")
    table = artifacts.neighbors("mp-3", k=3).assign(
        density=np.array([3.0000002, 2.1234567, np.nan], dtype=np.float32),
        spacegroup_number=pd.array([225, None, 227], dtype="Int16"),
        crystal_system=["cubic", None, "cubic"],
        tc_kelvin=[9.2345, np.nan, np.nan],
    )
    lines = table_csv(table).splitlines()
    assert lines[0] == ("rank,material_id,formula,distance (embedding units),band_gap (eV),density (g/cm³),"
                        "spacegroup_number,crystal_system,tc_kelvin (K)")
    assert lines[1] == "1,mp-2,LiCoO2,2.0,2.7,3.0,225,cubic,9.23"
    assert lines[2] == "2,mp-1,NaCl,3.0,5.0,2.1235,,,"
    # another distance (a baseline descriptor's) gets its own unit; the table is not changed
    assert table_csv(table, {"distance": "ewald descriptor units"}).startswith(
        "rank,material_id,formula,distance (ewald descriptor units),")
    assert table["density"].dtype == np.float32 and table.columns[3] == "distance"
    # read back: the same values as the table, to 4 decimals
    back = pd.read_csv(io.StringIO(table_csv(table)))
    np.testing.assert_allclose(back["density (g/cm³)"], table["density"], atol=5e-5)


def test_single_neighbour_searches_run_on_one_faiss_thread(small_map, monkeypatch):
    import faiss

    artifacts = MapArtifacts.load("user-toy", "m")
    seen = []
    index = artifacts.index.faiss_index

    class Spy:
        d = index.d
        ntotal = index.ntotal

        def search(self, query, k):
            seen.append((len(query), faiss.omp_get_max_threads()))
            return index.search(query, k)

    monkeypatch.setattr(artifacts.index, "faiss_index", Spy())
    before = faiss.omp_get_max_threads()
    assert list(artifacts.neighbors("mp-3", k=2)["material_id"]) == ["mp-2", "mp-1"]
    assert seen == [(1, 1)] and faiss.omp_get_max_threads() == before
    artifacts.index.search(np.asarray(artifacts.embeddings[:3]), 2)  # a batch keeps faiss' threads
    assert seen[-1] == (3, before)


def test_artifacts_module_does_not_import_torch():
    code = "import sys, ml.mapping.artifacts; sys.exit('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr or "ml.mapping.artifacts imported torch"
