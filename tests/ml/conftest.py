"""Shared fixtures of the ``ml`` tests: isolated settings, hand-built crystals, a tiny slice of
the real Materials Project mirror.

Every test runs with ``MATMAP_DATA_DIR`` in a temporary folder (never the repository's
``data/``) and without a Materials Project API key; ``get_settings`` is cached, so its cache is
cleared around each test.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from ml.settings import REPO_ROOT, get_settings

MIRROR_DIR = Path(os.environ.get("MATMAP_MIRROR_DIR") or REPO_ROOT.parent / "shared" / "datasets")
TINY_SET_SIZE = 150


def use_data_dir(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Point ``MATMAP_DATA_DIR`` at ``folder`` and drop the cached settings."""
    monkeypatch.setenv("MATMAP_DATA_DIR", str(folder))
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A private data folder, the real mirror, no API key; settings re-read for each test."""
    monkeypatch.setenv("MATMAP_MIRROR_DIR", str(MIRROR_DIR))
    monkeypatch.delenv("MATMAP_MP_API_KEY", raising=False)
    monkeypatch.delenv("MP_API_KEY", raising=False)
    use_data_dir(monkeypatch, tmp_path / "data")
    assert get_settings().data_dir == tmp_path / "data"
    yield
    get_settings.cache_clear()


@pytest.fixture
def one_torch_thread():
    """Torch on one intra-op thread for the test, restored after: on a shared 2-core machine a
    second thread makes tiny batches up to 30× slower."""
    from ml.threads import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The local Materials Project mirror (CI has it beside the repository)."""
    if not (MIRROR_DIR / "mp2024_structures.jsonl.gz").is_file():
        pytest.fail(f"the data mirror is missing at {MIRROR_DIR}; set MATMAP_MIRROR_DIR")
    return MIRROR_DIR


# --------------------------------------------------------------------------- hand-built crystals


def nacl(a: float = 5.64) -> Structure:
    """Rock salt, conventional cell (8 sites); nearest Na–Cl distance a / 2."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.12) -> Structure:
    """Caesium chloride (2 sites); 8 nearest neighbours at a √3 / 2."""
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def silicon(a: float = 5.431) -> Structure:
    """Diamond silicon, conventional cell (8 sites)."""
    return Structure.from_spacegroup("Fd-3m", Lattice.cubic(a), ["Si"], [[0, 0, 0]])


def polonium(a: float = 3.0) -> Structure:
    """Simple cubic, one atom: every (hkl) reflects."""
    return Structure(Lattice.cubic(a), ["Po"], [[0, 0, 0]])


def triclinic() -> Structure:
    """A low-symmetry ternary cell without distance ties (for invariance tests)."""
    lattice = Lattice.from_parameters(4.1, 5.3, 6.2, 81.0, 97.0, 104.0)
    return Structure(
        lattice,
        ["Li", "Fe", "O", "O", "P"],
        [[0.02, 0.11, 0.07], [0.51, 0.43, 0.29], [0.23, 0.71, 0.55], [0.81, 0.19, 0.83], [0.37, 0.93, 0.12]],
    )


@pytest.fixture(scope="session")
def crystals() -> SimpleNamespace:
    """The builders above, for tests (test modules do not import this conftest)."""
    return SimpleNamespace(nacl=nacl, cscl=cscl, silicon=silicon, polonium=polonium, triclinic=triclinic,
                           broken_loop_cif=broken_loop_cif)


@pytest.fixture(scope="session")
def cif_texts() -> dict[str, str]:
    """File stem → CIF text: NaCl, CsCl and Si, plus an empty, a non-CIF, a broken and a
    disordered (partial occupancy) one."""
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    return {
        "NaCl": nacl().to(fmt="cif"),
        "CsCl": cscl().to(fmt="cif"),
        "Si": silicon().to(fmt="cif"),
        "empty": "",
        "notes": "these are my lab notes, not a crystal\n",
        "broken": broken_loop_cif(),
        "FeNi_disordered": disordered.to(fmt="cif"),
    }


@pytest.fixture
def cif_folder(tmp_path: Path, cif_texts: dict[str, str]) -> Path:
    """A folder ``cifs/`` of the :func:`cif_texts`, ``<stem>.cif`` each."""
    folder = tmp_path / "cifs"
    folder.mkdir()
    for stem, text in cif_texts.items():
        (folder / f"{stem}.cif").write_text(text)
    return folder


def broken_loop_cif() -> str:
    """NaCl's CIF with the atom-site rows cut short (3 values for a 7-column loop)."""
    lines = nacl().to(fmt="cif").splitlines()
    cut = [" ".join(line.split()[:3]) if line.strip().startswith(("Na", "Cl")) else line for line in lines]
    return "\n".join(cut) + "\n"


# --------------------------------------------------------------------------- a slice of the mirror


def read_small_slice(mirror_dir: Path, n: int, max_sites: int = 8) -> dict[str, str]:
    """The first ``n`` mirror materials with 2–5 elements and at most ``max_sites`` sites."""
    props = pd.read_csv(mirror_dir / "mp2024_properties.csv.gz", usecols=["material_id", "nsites", "nelements"])
    small = set(props.loc[props["nelements"].between(2, 5) & (props["nsites"] <= max_sites), "material_id"])
    out: dict[str, str] = {}
    with gzip.open(mirror_dir / "mp2024_structures.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["material_id"] in small:
                out[record["material_id"]] = record["cif"]
                if len(out) == n:
                    break
    return out


@pytest.fixture(scope="session")
def tiny_cifs(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder ``tiny/`` of 150 small real CIFs, ``<material_id>.cif`` each."""
    folder = tmp_path_factory.mktemp("slice") / "tiny"
    folder.mkdir()
    for material_id, cif in read_small_slice(mirror, TINY_SET_SIZE).items():
        (folder / f"{material_id}.cif").write_text(cif)
    return folder
