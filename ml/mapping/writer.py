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
    optional = _write_optional(partial, tsne_embedding, xrd_embeddings, xrd_tsne, xrd_patterns)
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


def _write_optional(partial: Path, tsne_embedding, xrd_embeddings, xrd_tsne, xrd_patterns) -> list[str]:
    """The t-SNE pickles and the XRD files into ``partial``; returns the names of the optional files written."""
    import pickle

    optional = [XRD_TSNE] if xrd_tsne is not None else []
    for name, fitted in ((TSNE, tsne_embedding), (XRD_TSNE, xrd_tsne)):
        if fitted is not None:
            with open(partial / name, "wb") as handle:
                pickle.dump(fitted, handle, protocol=pickle.HIGHEST_PROTOCOL)
    if xrd_embeddings is not None:
        np.save(partial / XRD_EMBEDDINGS, np.asarray(xrd_embeddings, dtype=np.float32))
        optional.append(XRD_EMBEDDINGS)
    if xrd_patterns is not None:
        optional += xrd_patterns.write(partial)
    return optional


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
