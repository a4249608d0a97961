"""Writing a built map's artifact folder (the format: :mod:`ml.mapping.format`), atomically:
under a temporary name, renamed when complete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ml.mapping.format import (
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    MATERIALS,
    REQUIRED_FILES,
    STRUCTURES,
    TSNE,
    XRD_EMBEDDINGS,
    XRD_TSNE,
)
from ml.mapping.knn import ExactL2Index
from ml.mapping.xrd_patterns import MANIFEST_KEY as XRD_PATTERNS_KEY
from ml.data.shard_cache import write_atomically
from ml.models.registry import file_sha256


def write_artifacts(
    folder: Path,
    manifest: dict,
    materials: pd.DataFrame,
    embeddings: np.ndarray,
    tsne_embedding,
    cifs: dict[str, str],
    xrd_embeddings: np.ndarray | None = None,
    xrd_tsne=None,
    xrd_patterns=None,
) -> Path:
    """Write a complete map into ``folder`` atomically.

    Everything goes to ``<folder>.partial`` first; the folder is swapped in only when every
    file is written, so an interrupted build leaves the previous map (or none) in place.

    Args:
        folder: the final artifact folder (``artifact_dir(dataset, model)``).
        manifest: dataset, model and build settings; counts, versions and checksums are added.
        materials: one row per material with at least ``material_id``, ``formula``, ``x``, ``y``.
        embeddings: ``(n_materials, embedding_dim)``.
        tsne_embedding: the fitted openTSNE ``TSNEEmbedding`` (pickled for ``transform``).
        cifs: ``material_id -> CIF text`` for the structure store.
        xrd_embeddings: ``(n_materials, embedding_dim)`` XRD-encoder embeddings (NaN rows
            without a pattern), optional.
        xrd_tsne: the fitted t-SNE of the XRD embeddings, optional.
        xrd_patterns: every material's binned XRD pattern
            (:class:`ml.mapping.xrd_patterns.SparsePatterns`, row-aligned with ``materials``), optional.

    Raises:
        ValueError: rows of ``materials`` and ``embeddings`` differ, or columns are missing.
    """
    import shutil

    missing = {"material_id", "formula", "x", "y"} - set(materials.columns)
    if missing:
        raise ValueError(f"materials table lacks {sorted(missing)}")
    for name, rows in (("embeddings", embeddings), ("XRD embeddings", xrd_embeddings), ("XRD patterns", xrd_patterns)):
        if rows is not None and len(rows) != len(materials):
            raise ValueError(f"{len(materials)} materials but {len(rows)} {name}")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    materials.reset_index(drop=True).to_parquet(partial / MATERIALS, index=False)
    np.save(partial / EMBEDDINGS, embeddings)
    ExactL2Index.build(embeddings).write(partial / INDEX)
    _pickle(partial / TSNE, tsne_embedding)
    optional = _write_xrd_files(partial, xrd_embeddings, xrd_tsne, xrd_patterns)
    _write_structures(partial / STRUCTURES, cifs)
    manifest = dict(manifest)
    manifest.update(
        n_materials=int(len(materials)),
        embedding_dim=int(embeddings.shape[1]),
        versions=_library_versions(),
        files={name: file_sha256(partial / name) for name in (*REQUIRED_FILES[1:], STRUCTURES, *optional)},
    )
    if xrd_patterns is not None:
        manifest[XRD_PATTERNS_KEY] = xrd_patterns.manifest_entry()
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
    _swap_in(partial, folder)
    return folder


def add_xrd_view(folder: Path, materials: pd.DataFrame, manifest_entries: dict, xrd_embeddings: np.ndarray,
                 xrd_tsne, xrd_patterns) -> Path:
    """Add the XRD map to a complete map folder built without it (``python -m ml build --views crystal``),
    in place, while a server may be reading it.

    Each file is written under a temporary name and renamed: first the XRD files, then
    ``materials.parquet`` (with the ``x_xrd``, ``y_xrd`` columns), then ``manifest.json`` with
    their checksums and ``manifest_entries`` (``maps``, ``xrd_map``). A reader that loads the
    folder meanwhile sees the crystal map alone or both; a server reloads when the manifest
    changes (:mod:`components.state`).

    Args:
        folder: the map folder. materials: its table, same rows, with ``x_xrd``, ``y_xrd``.
        manifest_entries: keys to set in the manifest. Others as :func:`write_artifacts`.

    Raises:
        ValueError: ``materials`` or the XRD rows do not match the folder's table.
    """
    folder = Path(folder)
    stored = pd.read_parquet(folder / MATERIALS, columns=["material_id"])["material_id"]
    if not stored.equals(materials["material_id"].reset_index(drop=True)):
        raise ValueError(f"{folder}: the materials differ from the map's")
    for name, rows in (("XRD embeddings", xrd_embeddings), ("XRD patterns", xrd_patterns)):
        if len(rows) != len(materials):
            raise ValueError(f"{len(materials)} materials but {len(rows)} {name}")
    written = _write_xrd_files(folder, xrd_embeddings, xrd_tsne, xrd_patterns)
    write_atomically(folder / MATERIALS, lambda tmp: materials.reset_index(drop=True).to_parquet(tmp, index=False),
                     ".tmp.parquet")
    entries = {**manifest_entries, XRD_PATTERNS_KEY: xrd_patterns.manifest_entry()}
    rewrite_manifest(folder, entries, [*written, MATERIALS])
    return folder


def rewrite_manifest(folder: Path, entries: dict, changed: list[str]) -> None:
    """Set ``entries`` in ``folder``'s manifest and the checksums of the ``changed`` files,
    rewriting ``manifest.json`` atomically."""
    path = Path(folder) / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(entries)
    manifest.setdefault("files", {}).update({name: file_sha256(Path(folder) / name) for name in changed})
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str)), ".tmp")


def _pickle(path: Path, fitted) -> None:
    """A fitted openTSNE embedding as ``path``, atomically."""
    import pickle

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            pickle.dump(fitted, handle, protocol=pickle.HIGHEST_PROTOCOL)

    write_atomically(path, write, ".tmp")


def _write_xrd_files(folder: Path, xrd_embeddings, xrd_tsne, xrd_patterns) -> list[str]:
    """The XRD map's files into ``folder``, each atomically; returns the names written."""
    written = []
    if xrd_tsne is not None:
        _pickle(folder / XRD_TSNE, xrd_tsne)
        written.append(XRD_TSNE)
    if xrd_embeddings is not None:
        array = np.asarray(xrd_embeddings, dtype=np.float32)
        write_atomically(folder / XRD_EMBEDDINGS, lambda tmp: np.save(tmp, array), ".tmp.npy")
        written.append(XRD_EMBEDDINGS)
    if xrd_patterns is not None:
        written += xrd_patterns.write(folder)
    return written


def _write_structures(path: Path, cifs: dict[str, str]) -> None:
    """The structure store: table ``structures(material_id, cif)``."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE structures (material_id TEXT PRIMARY KEY, cif TEXT NOT NULL)")
        connection.executemany("INSERT INTO structures VALUES (?, ?)", cifs.items())
    connection.close()


def _swap_in(partial: Path, folder: Path) -> None:
    """Rename the complete ``partial`` folder to ``folder``, replacing the previous map there."""
    import shutil

    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        partial.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(folder)


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "pandas", "torch", "torch_geometric", "pymatgen", "openTSNE", "faiss-cpu"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
