"""End to end on 150 small real CIFs: train → build → neighbors → locate, resume, DDP.

One tiny model is trained and one map built per module (about 30 s on a quiet 2-core machine);
the tests then read them through the command line, as a user would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ml.mapping.artifacts import MapArtifacts
from ml.mapping.writer import write_artifacts
from ml.mapping.format import MANIFEST, ArtifactError, artifact_dir
from ml.cli.main import main
from ml.models.cmml import load_model
from ml.models.registry import file_sha256
from ml.service import LoadedMap
from ml.settings import REPO_ROOT, get_settings

pytestmark = pytest.mark.integration


def set_data_dir(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    monkeypatch.setenv("MATMAP_DATA_DIR", str(folder))
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def built(tiny_cifs: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """A model ``tiny`` trained for 2 epochs on the slice, and its map."""
    data = tmp_path_factory.mktemp("integration") / "data"
    model = data / "models" / "tiny" / "model.pt"
    with pytest.MonkeyPatch.context() as mp:
        set_data_dir(mp, data)
        train_rc = main(["train", "--dataset", str(tiny_cifs), "--epochs", "2", "--batch-size", "32",
                         "--processes", "1", "--out", str(model)])
        build_rc = main(["build", "--dataset", str(tiny_cifs), "--model", "tiny", "--processes", "1"])
        folder = artifact_dir("user-tiny", "tiny")
    get_settings.cache_clear()
    return SimpleNamespace(data=data, cifs=tiny_cifs, model=model, folder=folder,
                           train_rc=train_rc, build_rc=build_rc)


@pytest.fixture
def env(built, monkeypatch) -> SimpleNamespace:
    set_data_dir(monkeypatch, built.data)
    return built


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


# --------------------------------------------------------------------------- train and build


def test_training_wrote_a_loadable_model(env):
    assert env.train_rc == 0
    model, payload = load_model(env.model)
    assert [row["epoch"] for row in payload["history"]] == [1, 2]
    assert payload["dataset"] == "user-tiny"
    assert payload["train_config"]["epochs"] == 2 and payload["train_config"]["batch_size"] == 32
    test = payload["test_retrieval"]
    assert sorted(test) == list(range(1, 11))
    assert all(test[k] <= test[k + 1] for k in range(1, 10))
    if payload["n_test"] <= 10:  # every candidate is among the 10 nearest
        assert test[10] == 1.0
    # it learns: the triplet loss falls from the first epoch to the second
    assert payload["history"][1]["loss"] < payload["history"][0]["loss"]
    assert payload["n_train"] + payload["n_test"] <= 150
    # the default run folder is inside MATMAP_DATA_DIR, with a checkpoint and a log per epoch
    run = env.data / "runs" / "cpu"
    assert (run / "last.pt").is_file()
    assert len(pd.read_csv(run / "log.csv")) == 2
    assert model.config.crystal.embedding_dim == 128


def test_map_folder_and_manifest(env):
    assert env.build_rc == 0
    manifest = json.loads((env.folder / MANIFEST).read_text())
    assert manifest["dataset"] == "user-tiny" and manifest["model"] == "tiny"
    assert manifest["model_sha256"] == file_sha256(env.model)
    assert set(manifest["files"]) >= {"materials.parquet", "embeddings.npy", "index.faiss", "tsne.pkl",
                                      "structures.sqlite", "xrd_embeddings.npy", "tsne_xrd.pkl"}
    for name, digest in manifest["files"].items():
        assert file_sha256(env.folder / name) == digest, name
    artifacts = MapArtifacts.load(str(env.cifs), "tiny")
    assert len(artifacts) == manifest["n_materials"] == 150 - manifest["n_failed"]
    assert len(artifacts) >= 145
    assert set(artifacts.materials["material_id"]) <= {p.stem for p in env.cifs.glob("*.cif")}
    assert np.isfinite(artifacts.coordinates).all()
    assert artifacts.embeddings.shape == (len(artifacts), 128)
    # the second map: every ordered structure has an XRD pattern, so every material is placed
    assert artifacts.views == ["crystal", "xrd"]
    assert manifest["xrd_map"]["n_materials"] == len(artifacts) and manifest["xrd_map"]["n_failed"] == 0
    xrd_xy = artifacts.coordinates_of("xrd")
    assert np.isfinite(xrd_xy).all() and not np.allclose(xrd_xy, artifacts.coordinates)
    xrd_embeddings = np.load(env.folder / "xrd_embeddings.npy")
    assert xrd_embeddings.shape == artifacts.embeddings.shape
    # the XRD embedding of a material is near its own crystal embedding (what training optimised)
    gaps = np.linalg.norm(xrd_embeddings - artifacts.embeddings, axis=1)
    others = np.linalg.norm(xrd_embeddings - artifacts.embeddings[::-1], axis=1)
    assert np.median(gaps) < np.median(others)
    assert not env.folder.with_name(env.folder.name + ".partial").exists()


def test_build_again_is_a_no_op(env, capsys):
    before = (env.folder / MANIFEST).stat().st_mtime_ns
    rc, out, _ = run_cli(capsys, "build", "--dataset", str(env.cifs), "--model", "tiny", "--processes", "1")
    assert rc == 0 and str(env.folder) in out
    assert (env.folder / MANIFEST).stat().st_mtime_ns == before


# --------------------------------------------------------------------------- neighbors


def test_neighbors_csv(env, capsys):
    artifacts = MapArtifacts.load(str(env.cifs), "tiny")
    query = str(artifacts.materials["material_id"].iloc[7])
    rc, out, _ = run_cli(capsys, "neighbors", "--dataset", str(env.cifs), "--model", "tiny",
                         "--material-id", query, "--k", "5", "--out", "-")
    assert rc == 0
    assert out.splitlines()[0].startswith("rank,material_id,formula,distance (embedding units),")
    table = pd.read_csv(io.StringIO(out)).rename(columns={"distance (embedding units)": "distance"})
    assert len(table) == 5 and list(table["rank"]) == [1, 2, 3, 4, 5]
    assert query not in set(table["material_id"])
    assert np.all(np.diff(table["distance"]) >= 0)
    # the same five as a brute-force search over the stored embeddings
    embeddings = np.load(env.folder / "embeddings.npy")
    row = artifacts.row_of(query)
    distance = np.linalg.norm(embeddings - embeddings[row], axis=1)
    distance[row] = np.inf
    nearest = np.argsort(distance)[:5]
    assert list(table["material_id"]) == list(artifacts.materials["material_id"].iloc[nearest])
    np.testing.assert_allclose(table["distance"], distance[nearest], rtol=1e-4, atol=1e-4)
    formulas = dict(zip(artifacts.materials["material_id"], artifacts.materials["formula"]))
    assert list(table["formula"]) == [formulas[m] for m in table["material_id"]]


def test_neighbors_unknown_id(env, capsys):
    rc, out, err = run_cli(capsys, "neighbors", "--dataset", str(env.cifs), "--model", "tiny",
                           "--material-id", "mp-does-not-exist", "--k", "5")
    assert rc == 2 and out == ""
    assert len(error_lines(err)) == 1 and "mp-does-not-exist" in error_lines(err)[0]


def test_missing_map_names_the_build_command(env, capsys):
    shutil.copytree(env.model.parent, env.data / "models" / "unbuilt")
    rc, out, err = run_cli(capsys, "neighbors", "--dataset", str(env.cifs), "--model", "unbuilt",
                           "--material-id", "mp-170")
    assert rc == 2 and out == ""
    [line] = error_lines(err)
    assert "python -m ml build" in line and "--model unbuilt" in line
    assert f"--dataset {env.cifs}" in line  # a command that works: the CIF folder, not its map name
    rc, _, err = run_cli(capsys, "neighbors", "--dataset", "mp2024-icsd", "--model", "tiny", "--material-id", "mp-170")
    assert rc == 2 and "python -m ml build --dataset mp2024-icsd --model tiny" in error_lines(err)[0]


def test_unknown_model_is_a_user_error(env, capsys):
    rc, _, err = run_cli(capsys, "neighbors", "--dataset", str(env.cifs), "--model", "nope", "--material-id", "x")
    assert rc == 2 and "nope" in error_lines(err)[0]


# --------------------------------------------------------------------------- locate


def test_locate_finds_each_cif_itself(env, capsys):
    artifacts = LoadedMap.load(str(env.cifs), "tiny")
    ids = [str(artifacts.materials["material_id"].iloc[i]) for i in (3, 40)]
    files = [env.cifs / f"{m}.cif" for m in ids]
    rc, out, err = run_cli(capsys, "locate", *map(str, files), "--dataset", str(env.cifs), "--model", "tiny", "--k", "3")
    assert rc == 0, err
    blocks = [b for b in out.strip().split("\n\n") if b.strip()]
    assert len(blocks) == 2
    for material_id, path, block in zip(ids, files, blocks):
        lines = block.splitlines()
        assert lines[0].startswith(f"{path}: {artifacts.material(material_id)['formula']} at map (x=")
        assert lines[1].split() == ["rank", "material_id", "formula", "distance"]
        rank, found, _formula, distance = lines[2].split()
        assert (rank, found) == ("1", material_id)
        assert float(distance) < 1e-3
        assert len(lines) == 2 + 3

    # the same through the API: the new point lands where the material already is
    located = artifacts.locate(files[0].read_text(), k=5)
    row = artifacts.row_of(ids[0])
    np.testing.assert_allclose(located.embedding, artifacts.embeddings[row], rtol=1e-4, atol=1e-4)
    spread = np.ptp(artifacts.coordinates, axis=0).max()
    assert np.hypot(located.x - artifacts.coordinates[row, 0], located.y - artifacts.coordinates[row, 1]) < 0.1 * spread
    # and on the XRD map, through its simulated pattern and the XRD encoder
    xrd_xy = artifacts.coordinates_of("xrd")
    spread = np.ptp(xrd_xy, axis=0).max()
    assert np.hypot(located.x_xrd - xrd_xy[row, 0], located.y_xrd - xrd_xy[row, 1]) < 0.1 * spread



def test_placing_one_by_one_equals_placing_as_a_batch(env):
    """openTSNE's property for ``transform``: new points do not interact, so placing materials
    together gives each the embedding, map positions (both maps) and neighbours it gets alone."""
    from ml.data.structures import parse_cif
    from ml.mapping.locate import locate_structures

    artifacts = LoadedMap.load(str(env.cifs), "tiny")
    ids = [str(artifacts.materials["material_id"].iloc[i]) for i in (5, 17, 60)]
    structures = [parse_cif((env.cifs / f"{m}.cif").read_text()) for m in ids]
    together = locate_structures(structures, artifacts, k=5)
    alone = [locate_structures([s], artifacts, k=5)[0] for s in structures]
    assert len(together) == len(alone) == 3
    spread = np.ptp(artifacts.coordinates, axis=0).max()
    xrd_spread = np.ptp(artifacts.coordinates_of("xrd"), axis=0).max()
    for batch, single in zip(together, alone):
        assert batch.formula == single.formula
        np.testing.assert_allclose(batch.embedding, single.embedding, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose([batch.x, batch.y], [single.x, single.y], atol=1e-3 * spread)
        np.testing.assert_allclose([batch.x_xrd, batch.y_xrd], [single.x_xrd, single.y_xrd], atol=1e-3 * xrd_spread)
        assert batch.neighbors["material_id"].tolist() == single.neighbors["material_id"].tolist()
        np.testing.assert_allclose(batch.neighbors["distance"], single.neighbors["distance"], rtol=1e-4, atol=1e-5)
        assert batch.notes == single.notes


def test_a_material_of_the_map_is_placed_on_its_own_position(env):
    """Placing a map material's own CIF puts it where the build put it, on both maps: openTSNE
    recentres the reference map in place before its first transform, and the placement must
    come back to the map's frame (it was off by that shift)."""
    from ml.data.structures import parse_cif
    from ml.mapping.locate import locate_structures

    artifacts = LoadedMap.load(str(env.cifs), "tiny")
    rows = (5, 17, 60)
    ids = [str(artifacts.materials["material_id"].iloc[i]) for i in rows]
    located = locate_structures([parse_cif((env.cifs / f"{m}.cif").read_text()) for m in ids], artifacts, k=5)
    spread = np.ptp(artifacts.coordinates, axis=0).max()
    xrd_spread = np.ptp(artifacts.coordinates_of("xrd"), axis=0).max()
    for row, placed in zip(rows, located):
        assert np.hypot(*(np.array([placed.x, placed.y]) - artifacts.coordinates[row])) < 0.02 * spread
        assert np.hypot(*(np.array([placed.x_xrd, placed.y_xrd]) - artifacts.coordinates_of("xrd")[row])) < 0.02 * xrd_spread


def test_locate_garbage_file(env, capsys, tmp_path):
    garbage = tmp_path / "garbage.cif"
    garbage.write_bytes(b"\x00\x01 not a crystal at all \xff")
    rc, out, err = run_cli(capsys, "locate", str(garbage), "--dataset", str(env.cifs), "--model", "tiny")
    assert rc == 2 and out == ""
    [line] = error_lines(err)
    assert line.startswith(f"error: {garbage}: ") and "not a CIF" in line
    rc, _, err = run_cli(capsys, "locate", str(tmp_path / "absent.cif"), "--dataset", str(env.cifs), "--model", "tiny")
    assert rc == 2 and len(error_lines(err)) == 1 and "absent.cif" in error_lines(err)[0]


def test_locate_places_every_file_it_can(env, capsys, tmp_path, cif_texts):
    artifacts = MapArtifacts.load(str(env.cifs), "tiny")
    material_id = str(artifacts.materials["material_id"].iloc[5])
    files = [tmp_path / "typo.cif", env.cifs / f"{material_id}.cif", tmp_path / "notes.cif",
             tmp_path / "FeNi.cif"]
    files[2].write_text(cif_texts["notes"])
    files[3].write_text(cif_texts["FeNi_disordered"])
    rc, out, err = run_cli(capsys, "locate", *map(str, files), "--dataset", str(env.cifs), "--model", "tiny", "--k", "2")
    # the two good files are placed, in order; each failure names its file; status 2
    assert rc == 2
    lines = error_lines(err)
    assert [line.split(": ")[1] for line in lines] == [str(files[0]), str(files[2])]
    assert "2 of 4 files could not be placed" in err
    blocks = [b.splitlines() for b in out.strip().split("\n\n")]
    assert [b[0].split(":")[0] for b in blocks] == [str(files[1]), str(files[3])]
    assert blocks[0][1].split() == ["rank", "material_id", "formula", "distance"]
    assert blocks[0][2].split()[1] == material_id
    # the disordered Fe0.5Ni0.5 crystal is placed as Fe, and says so
    assert blocks[1][0].startswith(f"{files[3]}: Fe at map (x=")
    notes = [line for line in blocks[1] if line.startswith("note: ")]
    assert any("majority occupant of each site" in note for note in notes)
    assert any("Fe has 1 element" in note for note in notes)  # the map holds 2 to 5
    # every file placed: status 0
    rc, _, err = run_cli(capsys, "locate", str(files[1]), str(files[3]), "--dataset", str(env.cifs), "--model", "tiny")
    assert rc == 0 and error_lines(err) == []


# --------------------------------------------------------------------------- half-written maps


def test_leftover_partial_folder_is_not_loaded(env, monkeypatch):
    # an interrupted build of another model left only <folder>.partial behind
    partial = artifact_dir("user-tiny", "half").with_name("half.partial")
    shutil.copytree(env.folder, partial)
    with pytest.raises(ArtifactError, match="no map"):
        MapArtifacts.load(str(env.cifs), "half")


def test_interrupted_rewrite_keeps_the_previous_map(env, monkeypatch, tmp_path):
    folder = tmp_path / "artifacts" / "user-tiny" / "tiny"
    shutil.copytree(env.folder, folder)
    before = json.loads((folder / MANIFEST).read_text())
    old = MapArtifacts.load("user-tiny", "tiny", root=tmp_path / "artifacts")

    import pickle

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the user pressed Ctrl-C while the t-SNE was being saved

    monkeypatch.setattr(pickle, "dump", crash)
    materials = old.materials.assign(x=0.0, y=0.0)
    with pytest.raises(KeyboardInterrupt):
        write_artifacts(folder, {"dataset": "user-tiny", "model": "tiny"}, materials,
                        np.asarray(old.embeddings), object(), {})
    assert folder.with_name("tiny.partial").is_dir()
    assert json.loads((folder / MANIFEST).read_text()) == before
    again = MapArtifacts.load("user-tiny", "tiny", root=tmp_path / "artifacts")
    np.testing.assert_array_equal(again.coordinates, old.coordinates)


# --------------------------------------------------------------------------- resume and DDP


def test_resume_continues_at_the_next_epoch(env, capsys, tmp_path):
    run, out = tmp_path / "run", tmp_path / "resumed.pt"
    common = ["train", "--dataset", str(env.cifs), "--batch-size", "32", "--processes", "1",
              "--run-dir", str(run), "--out", str(out)]
    rc, _, err = run_cli(capsys, *common, "--epochs", "2", "--resume")
    assert rc == 2 and "no checkpoint" in error_lines(err)[0]

    assert run_cli(capsys, *common, "--epochs", "1")[0] == 0
    _, first = load_model(out)
    assert [r["epoch"] for r in first["history"]] == [1]

    assert run_cli(capsys, *common, "--epochs", "2", "--resume")[0] == 0
    _, resumed = load_model(out)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == first["history"][0]  # epoch 1 kept, not retrained
    # training in one go gives the same epochs (same permutation, same negatives)
    _, straight = load_model(env.model)
    for a, b in zip(resumed["history"], straight["history"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_distributed_training_with_torchrun(env, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    out = tmp_path / "ddp" / "model.pt"
    environment = {**os.environ, "MATMAP_DATA_DIR": str(env.data), "OMP_NUM_THREADS": "1",
                   "PYTHONPATH": str(REPO_ROOT)}
    command = [str(torchrun), "--nnodes", "1", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
               "--master_port", str(free_port()), "-m", "ml", "train", "--dataset", str(env.cifs),
               "--epochs", "1", "--batch-size", "32", "--processes", "1",
               "--run-dir", str(tmp_path / "ddp-run"), "--out", str(out)]
    # 138 training materials in batches of 32 make 5 batches: the ranks must still agree on the count
    done = subprocess.run(command, cwd=REPO_ROOT, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    model, payload = load_model(out)
    assert [r["epoch"] for r in payload["history"]] == [1]
    assert not model.training
