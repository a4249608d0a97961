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
    import pickle
    import shutil
    import sqlite3

    missing = {"material_id", "formula", "x", "y"} - set(materials.columns)
    if missing:
        raise ValueError(f"materials table lacks {sorted(missing)}")
    if len(materials) != len(embeddings):
        raise ValueError(f"{len(materials)} materials but {len(embeddings)} embeddings")
    if xrd_patterns is not None and len(xrd_patterns) != len(materials):
        raise ValueError(f"{len(materials)} materials but {len(xrd_patterns)} XRD patterns")
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    materials.reset_index(drop=True).to_parquet(partial / MATERIALS, index=False)
    np.save(partial / EMBEDDINGS, embeddings)
    ExactL2Index.build(embeddings).write(partial / INDEX)
    optional = [XRD_TSNE] if xrd_tsne is not None else []
    for name, fitted in ((TSNE, tsne_embedding), (XRD_TSNE, xrd_tsne)):
        if fitted is not None:
            with open(partial / name, "wb") as handle:
                pickle.dump(fitted, handle, protocol=pickle.HIGHEST_PROTOCOL)
    if xrd_embeddings is not None:
        if len(xrd_embeddings) != len(materials):
            raise ValueError(f"{len(materials)} materials but {len(xrd_embeddings)} XRD embeddings")
        np.save(partial / XRD_EMBEDDINGS, np.asarray(xrd_embeddings, dtype=np.float32))
        optional.append(XRD_EMBEDDINGS)
    if xrd_patterns is not None:
        optional += xrd_patterns.write(partial)
    with sqlite3.connect(partial / STRUCTURES) as connection:
        connection.execute("CREATE TABLE structures (material_id TEXT PRIMARY KEY, cif TEXT NOT NULL)")
        connection.executemany("INSERT INTO structures VALUES (?, ?)", cifs.items())
    connection.close()
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
    if folder.exists():
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        folder.rename(old)
        partial.rename(folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        partial.rename(folder)
    return folder


def _library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("numpy", "pandas", "torch", "torch_geometric", "pymatgen", "openTSNE", "faiss-cpu"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out
