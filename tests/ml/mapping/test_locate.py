"""Placing new CIFs (ml.mapping.locate) without a map: checks before the model, the one-thread t-SNE
state, the command line's per-file errors, and a fuzz test of the CIF path.

Placing on a real map is tested end to end in tests/ml/test_integration.py and on the app's fixture map
in tests/app/test_components.py.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from ml.features.atom_features import MAX_Z
from ml.cli.main import main
from ml.features.errors import FeaturisationError
from ml.features.graph import GraphConfig
from ml.mapping.locate import load_tsne, place, prepare_cif, prepare_structure
from ml.settings import REPO_ROOT
from ml.data.structures import CifError

DISORDERED = (REPO_ROOT / "tests" / "app" / "data" / "disordered.cif").read_text()


def test_prepare_reads_checks_and_featurises_without_torch(cif_texts):
    script = (
        "import sys\n"
        "from ml.mapping.locate import prepare_cif\n"
        f"prepared = prepare_cif({cif_texts['NaCl']!r})\n"
        "try:\n"
        f"    prepare_cif({cif_texts['notes']!r})\n"
        "except ValueError:\n"
        "    pass\n"
        "assert prepared.pattern is not None and len(prepared.graph.atomic_numbers) == 8\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'openTSNE', 'faiss')))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_a_disordered_cif_is_prepared_as_its_majority_occupants():
    prepared = prepare_cif(DISORDERED)
    assert prepared.structure.is_ordered and prepared.structure.composition.reduced_formula == "FeO"
    assert sorted(prepared.graph.atomic_numbers.tolist()) == [8, 26]
    assert len(prepared.notes) == 1 and "majority occupant of each site" in prepared.notes[0]
    assert prepared.pattern is not None and prepared.pattern.shape == (5000,)


def test_an_ordered_cif_is_prepared_as_it_is(crystals, cif_texts):
    prepared = prepare_cif(cif_texts["NaCl"])
    assert prepared.notes == () and prepared.pattern_error is None
    assert prepared.structure == crystals.nacl()


def test_a_structure_without_a_pattern_is_still_prepared():
    # a 130 Å cell: its graph is fine, its powder pattern has too many reflections to simulate
    structure = Structure(Lattice.cubic(130.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    prepared = prepare_structure(structure)
    assert prepared.pattern is None and "too large to simulate" in prepared.pattern_error
    assert len(prepared.graph.atomic_numbers) == 2


def test_load_tsne_runs_on_one_thread_and_places_points_identically(tmp_path):
    from ml.mapping.build import fit_tsne

    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(loc, 1.0, size=(40, 16)) for loc in (-4.0, 0.0, 4.0)])
    path = tmp_path / "tsne.pkl"
    path.write_bytes(pickle.dumps(fit_tsne(points, perplexity=10, progress=False)))
    with open(path, "rb") as handle:
        as_fitted = pickle.load(handle)
    assert as_fitted.gradient_descent_params["n_jobs"] == -1  # what the build stores
    serial = load_tsne(path)
    assert len(serial.affinities.knn_index.data) == 0 and serial.affinities.P is None  # only what transform reads
    assert serial.gradient_descent_params["n_jobs"] == 1
    assert serial.affinities.n_jobs == 1 and serial.affinities.knn_index.n_jobs == 1
    new = rng.normal(4.0, 1.0, size=(3, 16))
    built = np.asarray(as_fitted).copy()  # the map as built (openTSNE recentres it before a first transform)
    placed = place(serial, new)
    centre = (built.max(axis=0) + built.min(axis=0)) / 2
    as_fitted.prepare_interpolation_grid()  # as load_tsne does, before the new points are initialised
    np.testing.assert_allclose(placed, np.asarray(as_fitted.transform(new)) + centre, atol=1e-6 * np.ptp(built))
    # the new points land in the cluster they were drawn from, in the frame of the map as built
    cluster = built[80:]
    assert np.all(np.linalg.norm(placed - cluster.mean(axis=0), axis=1) < np.ptp(np.asarray(serial), axis=0).max() / 3)


def test_a_trimmed_state_with_an_annoy_index_pickles_and_places(tmp_path):
    """openTSNE indexes 1,000 points or more with Annoy, whose unpickling needs the width of its
    training data: the trimmed state keeps an empty array of that width (a build that kept
    ``None`` wrote a state no server could load)."""
    from openTSNE import TSNE

    from ml.mapping.build import trim_for_transform

    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal(loc, 1.0, size=(60, 8)) for loc in (-4.0, 4.0)])
    embedding = TSNE(perplexity=10, neighbors="annoy", n_iter=50, early_exaggeration_iter=50, random_state=0).fit(points)
    assert type(embedding.affinities.knn_index).__name__ == "Annoy"
    path = tmp_path / "tsne.pkl"
    path.write_bytes(pickle.dumps(trim_for_transform(embedding)))
    state = load_tsne(path)
    assert state.affinities.knn_index.data.shape == (0, 8)
    placed = place(state, rng.normal(4.0, 1.0, size=(2, 8)))
    assert placed.shape == (2, 2) and np.isfinite(placed).all()


# --------------------------------------------------------------------------- command line


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def test_locate_reports_every_bad_file_by_name_without_loading_a_map(tmp_path, capsys):
    files = {
        "missing.cif": None,
        "notes.cif": "these are my lab notes, not a crystal\n",
        "dummy.cif": DISORDERED.split("Fe1 Fe")[0] + "X1 Xx 0 0 0 1\n",
        "empty.cif": "",
    }
    for name, text in files.items():
        if text is not None:
            (tmp_path / name).write_text(text)
    capsys.readouterr()
    rc = main(["locate", *(str(tmp_path / name) for name in files), "--dataset", "mp2024"])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    lines = error_lines(err)
    assert [line.split(": ")[1] for line in lines] == [str(tmp_path / name) for name in files]
    assert "No such file" in lines[0] and "not a CIF" in lines[1]
    assert "'Xx', which is not a chemical element" in lines[2] and "empty" in lines[3]
    assert "4 of 4 files could not be placed" in err
    assert "no map" not in err  # no file to place: the (absent) map is never opened


def test_locate_with_a_good_file_needs_the_map(tmp_path, capsys, cif_texts):
    good, bad = tmp_path / "NaCl.cif", tmp_path / "bad.cif"
    good.write_text(cif_texts["NaCl"])
    bad.write_text(cif_texts["broken"])
    capsys.readouterr()
    rc = main(["locate", str(bad), str(good), "--dataset", "mp2024"])
    _, err = capsys.readouterr()
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 2
    assert lines[0].startswith(f"error: {bad}: no structure could be read")
    assert "no map of 'mp2024'" in lines[1] and "python -m ml build" in lines[1]


# --------------------------------------------------------------------------- fuzz

#: Values a mutation writes into a field: numbers good and bad, CIF's unknown markers, and atom
#: types that are no element symbol (pseudo-atoms, placeholders, charges, superheavy elements).
FUZZ_VALUES = [
    "0", "-1", "1", "2", "0.5", "1.5", "0.333", "-0.25", "1e6", "1e-6", "1e309", "nan", "inf", "?", ".", "abc", "",
    "Xx", "X", "Q", "NH3", "NH4", "H2O", "OH2", "Ow", "Wat", "NO3", "D", "Og", "Md", "Uuu", "Fe3+", "O2-", "Na1", "C",
    "'", "#", "_cell_length_a", "loop_",
]
N_MUTANTS = 400


def mutate(text: str, rng: np.random.Generator) -> str:
    """``text`` with one to three random edits: a token of an atom-site row (type symbol,
    label, coordinate, occupancy) or the value of a ``_cell_`` field replaced, a line dropped
    or repeated."""
    lines = text.splitlines()
    for _ in range(rng.integers(1, 4)):
        cells = [i for i, line in enumerate(lines) if line.startswith("_cell_")]
        rows = [i for i, line in enumerate(lines)
                if line.strip() and not line.lstrip().startswith(("_", "loop_", "data_", "#", "'"))]
        edit = rng.choice(["cell", "row", "row", "drop", "repeat"])
        if edit == "cell" and cells:
            i = int(rng.choice(cells))
            lines[i] = f"{lines[i].split()[0]} {rng.choice(FUZZ_VALUES)}"
        elif edit == "row" and rows:
            i = int(rng.choice(rows))
            tokens = lines[i].split()
            tokens[int(rng.integers(len(tokens)))] = str(rng.choice(FUZZ_VALUES))
            lines[i] = "  " + " ".join(tokens)
        elif edit == "drop" and lines:
            del lines[int(rng.integers(len(lines)))]
        elif lines:
            i = int(rng.integers(len(lines)))
            lines.insert(i, lines[i])
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fuzz_seeds(tiny_cifs: Path) -> list[str]:
    """Real CIFs to mutate: 12 mirror structures (pymatgen-written, with symmetry operations and
    oxidation states) and the hand-written disordered one (no symmetry loop, occupancies)."""
    return [p.read_text() for p in sorted(tiny_cifs.glob("*.cif"))[:12]] + [DISORDERED]


def check_prepared_or_refused(text: str) -> str:
    """``"placed"`` or ``"refused"``; fails the test on anything else (an exception that is not
    the user-facing kind, a message that is not one line, a graph the model could not read)."""
    try:
        prepared = prepare_cif(text)
    except (CifError, FeaturisationError) as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, repr(message)
        return "refused"
    graph = prepared.graph
    assert graph.atomic_numbers.min() >= 1 and graph.atomic_numbers.max() <= MAX_Z
    assert len(graph.atomic_numbers) == len(prepared.structure) <= GraphConfig().max_sites
    if len(graph.edge_src):
        assert graph.edge_src.max() < len(graph.atomic_numbers) and graph.edge_dst.max() < len(graph.atomic_numbers)
        assert np.isfinite(graph.edge_distance).all() and graph.edge_distance.min() >= 0.1
    assert prepared.pattern is None or np.isfinite(prepared.pattern).all()
    assert all(note and "\n" not in note for note in prepared.notes)
    return "placed"


def test_fuzzed_cifs_are_placed_or_refused_in_one_line(fuzz_seeds):
    rng = np.random.default_rng(20261203)
    started = time.perf_counter()
    outcomes = {"placed": 0, "refused": 0}
    for i in range(N_MUTANTS):
        text = mutate(fuzz_seeds[i % len(fuzz_seeds)], rng)
        try:
            outcomes[check_prepared_or_refused(text)] += 1
        except AssertionError:
            raise
        except Exception as exc:  # a traceback a user would have seen
            pytest.fail(f"mutant {i} raised {type(exc).__name__}: {exc}\n--- CIF ---\n{text}")
    # the mutations reach both outcomes, and the run stays short
    assert outcomes["placed"] >= N_MUTANTS // 10 and outcomes["refused"] >= N_MUTANTS // 10, outcomes
    assert time.perf_counter() - started < 60


def test_fuzzed_cifs_on_the_command_line_give_error_lines_only(fuzz_seeds, tmp_path, capsys):
    rng = np.random.default_rng(7)
    paths = []
    for i in range(24):
        path = tmp_path / f"mutant{i}.cif"
        path.write_text(mutate(fuzz_seeds[i % len(fuzz_seeds)], rng))
        paths.append(path)
    capsys.readouterr()
    rc = main(["locate", *map(str, paths), "--dataset", "mp2024"])  # no map here: placing ends in one error
    out, err = capsys.readouterr()
    assert rc == 2 and out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert all(line.startswith("error: ") or line.endswith("could not be placed") for line in lines), lines
