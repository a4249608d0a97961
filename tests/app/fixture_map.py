"""A small, real map for the app's tests, written with :func:`ml.artifacts.write_artifacts`.

The first materials of the shared mirror (2–5 elements, at most :data:`MAX_SITES` sites) with
their real CIFs and properties; embeddings from a cheap composition featuriser
(:func:`fixture_embedding`, element fractions and volume per atom) instead of the trained
encoder; coordinates from an openTSNE fit on those embeddings. :func:`fake_locate` places a
new CIF on it through the same featuriser, after the real parsing and checks of
:mod:`ml.structures` and :mod:`ml.graph`, so the locate page's error paths are the real ones.

When the real ``python -m ml build`` can make a tiny map, swap :func:`build_fixture_map` in
``tests/app/conftest.py`` for it.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

#: Run the app's tests on a map built with a trained model (``MATMAP_DATA_DIR`` …) and the
#: real ``MapArtifacts.locate`` instead of the fixture map and :func:`fake_locate`.
REAL_MODEL = os.environ.get("MATMAP_TEST_REAL_MODEL") == "1"
DATASET = "fixture"
MODEL = "composition"
MAX_SITES = 40
N_ELEMENTS = 100  # Z = 1 … 100


def fixture_embedding(structure) -> np.ndarray:
    """``(N_ELEMENTS + 1,)`` float32: the atomic fraction of each element Z = 1 … 100, and the
    volume per atom / 20 Å³."""
    vector = np.zeros(N_ELEMENTS + 1, dtype=np.float32)
    composition = structure.composition.fractional_composition
    for element, fraction in composition.items():
        z = getattr(element, "Z", None) or element.element.Z
        if 1 <= z <= N_ELEMENTS:
            vector[z - 1] += fraction
    vector[-1] = structure.volume / len(structure) / 20.0
    return vector


def _read_records(mirror: Path, max_lines: int) -> list[tuple[str, str]]:
    out = []
    with gzip.open(mirror / "mp2024_structures.jsonl.gz", "rt") as handle:
        for i, line in enumerate(handle):
            if i >= max_lines:
                break
            record = json.loads(line)
            out.append((record["material_id"], record["cif"]))
    return out


def build_fixture_map(data_dir: Path, n: int = 300, mirror: Path | None = None, seed: int = 0) -> Path:
    """Write a map of ``n`` real materials to ``<data_dir>/artifacts/fixture/composition``.

    Args:
        mirror: the data mirror (default ``MATMAP_MIRROR_DIR`` / ``../shared/datasets``).

    Returns:
        The artifact folder.
    """
    from openTSNE import TSNE
    from pymatgen.core import Structure

    from ml.artifacts import artifact_dir, write_artifacts
    from ml.datasets import dataset_name, read_supercon_labels
    from ml.splits import assign_splits
    from ml.settings import get_settings
    from ml.structures import crystal_system

    mirror = Path(mirror or get_settings().mirror_dir)
    properties = pd.read_csv(mirror / "mp2024_properties.csv.gz", nrows=8000).set_index("material_id")
    supercon = read_supercon_labels(mirror)
    rows, cifs, vectors = [], {}, []
    for material_id, cif in _read_records(mirror, 8000):
        if material_id not in properties.index:
            continue
        props = properties.loc[material_id]
        if not 2 <= props["nelements"] <= 5 or props["nsites"] > MAX_SITES:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(cif, fmt="cif")
        if not structure.is_ordered:
            continue
        composition = structure.composition
        label = supercon["supercon_label"].get(material_id, "no SuperCon entry")
        rows.append(
            {
                "material_id": material_id,
                "formula": composition.reduced_formula,
                "elements": " ".join(sorted(el.symbol for el in composition.elements)),
                "nelements": len(composition.elements),
                "nsites": len(structure),
                "formation_energy_per_atom": props["formation_energy_per_atom"],
                "energy_per_atom": props["energy_per_atom"],
                "band_gap": props["band_gap"],
                "total_magnetization": props["total_magnetization"],
                "density": props["density"] if np.isfinite(props["density"]) else float(structure.density),
                "spacegroup_number": props["spacegroup_number"],
                "crystal_system": crystal_system(props["spacegroup_number"]),
                "e_above_hull": props["e_above_hull"],
                "icsd_origin": props["icsd_origin"],
                "supercon_label": label,
                "tc_kelvin": supercon["tc_kelvin"].get(material_id, np.nan),
            }
        )
        cifs[material_id] = cif
        vectors.append(fixture_embedding(structure))
        if len(rows) == n:
            break
    materials = pd.DataFrame(rows)
    materials["split"] = assign_splits(tuple(materials["material_id"]))
    embeddings = np.vstack(vectors).astype(np.float32)
    tsne = TSNE(n_components=2, perplexity=20, n_jobs=1, random_state=seed, verbose=False).fit(embeddings)
    coordinates = np.asarray(tsne)
    materials["x"] = coordinates[:, 0].astype(np.float32)
    materials["y"] = coordinates[:, 1].astype(np.float32)
    name = dataset_name(DATASET)  # the folder name MapArtifacts.load looks for
    folder = artifact_dir(name, MODEL, root=Path(data_dir) / "artifacts")
    manifest = {"dataset": name, "model": MODEL, "note": "test fixture: composition embeddings"}
    return write_artifacts(folder, manifest, materials, embeddings, tsne, cifs)


def fake_locate(self, cif_text: str, k: int = 10):
    """Stand-in for :meth:`ml.artifacts.MapArtifacts.locate` on the fixture map.

    Parses and checks with the real :func:`ml.structures.parse_cif` and
    :func:`ml.graph.check_structure` (same errors as the real pipeline), embeds with
    :func:`fixture_embedding` and puts the point at the mean position of its 5 nearest
    materials.
    """
    from ml.graph import check_structure
    from ml.structures import parse_cif

    structure = parse_cif(cif_text)
    check_structure(structure, max_sites=1000)
    embedding = fixture_embedding(structure)
    neighbors = self.neighbors_of_embedding(embedding, k)
    rows = [self.row_of(mid) for mid in neighbors["material_id"][:5]]
    x, y = self.coordinates[rows].mean(axis=0)
    return SimpleNamespace(
        formula=structure.composition.reduced_formula, x=float(x), y=float(y), embedding=embedding, neighbors=neighbors
    )
