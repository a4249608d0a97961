"""Building a map: embed every material with the crystal encoder, lay the embeddings out with
t-SNE (openTSNE: FFT gradients, PCA initialisation, fixed seed), index them for exact
Euclidean neighbours, and write the artifacts (:mod:`ml.mapping.artifacts`).

The same build embeds every material's simulated powder XRD pattern (:mod:`ml.features.xrd_sim`) with
the model's XRD encoder and lays those embeddings out with a second t-SNE: the paper's second
map (Suzuki et al. 2022, XRD-embedding t-SNE), stored as the ``x_xrd`` / ``y_xrd`` columns.

The two maps can be built in two steps (``views``): ``./run.sh`` builds the crystal-graph map
alone, serves it, and adds the XRD map in the background (:func:`add_xrd_map`, in place: the
crystal map is not touched), which a full build of an up-to-date crystal-only map also does.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ml.mapping.writer import add_xrd_view, write_artifacts
from ml.mapping.format import DEFAULT_VIEW, MANIFEST, MAP_VIEWS, MATERIALS, artifact_dir
from ml.data.batches import GraphStore, XRDStore, align
from ml.data.datasets import Dataset, DatasetError, get_dataset, read_supercon_labels
from ml.mapping.embed import embed_crystals, embed_xrd
from ml.mapping.xrd_patterns import SparsePatterns, add_xrd_patterns
from ml.data.featurize import featurize, load_features
from ml.models.registry import file_sha256, resolve_model
from ml.data.splits import assign_splits
from ml.data.structures import crystal_system

log = logging.getLogger(__name__)

PROPERTY_COLUMNS = [
    "formation_energy_per_atom",
    "energy_per_atom",
    "band_gap",
    "total_magnetization",
    "density",
    "spacegroup_number",
    "e_above_hull",
    "icsd_origin",
]


def fit_tsne(embeddings: np.ndarray, perplexity: float = 30.0, seed: int = 0, n_jobs: int = -1,
             progress: bool = True):
    """openTSNE map of ``(n, D)`` embeddings; returns the fitted ``TSNEEmbedding`` ``(n, 2)``.

    FFT-accelerated gradients (Barnes–Hut below 10,000 points, openTSNE's own rule: FFT's
    fixed grid cost made 150 points take 18 s instead of 1 s), PCA initialisation,
    ``random_state=seed``; ``perplexity`` is
    lowered to (n − 1) / 3 for tiny sets. Keeps what ``transform`` needs to place new points.

    Raises:
        ValueError: fewer than 5 points.
    """
    from openTSNE import TSNE

    n = len(embeddings)
    if n < 5:
        raise ValueError(f"t-SNE needs at least 5 materials, got {n}")
    perplexity = min(perplexity, (n - 1) / 3)
    n_iter = {"early": 250, "late": 500}
    bar = tqdm(total=sum(n_iter.values()), desc="t-SNE", unit="it", disable=not progress)

    def callback(iteration, error, embedding):  # openTSNE calls this every 10 iterations
        bar.update(10)
        return False

    tsne = TSNE(
        perplexity=perplexity,
        initialization="pca",
        negative_gradient_method="fft" if n >= 10_000 else "bh",
        early_exaggeration_iter=n_iter["early"],
        n_iter=n_iter["late"],
        n_jobs=n_jobs,
        random_state=seed,
        callbacks=callback,
        callbacks_every_iters=10,
    )
    embedding = tsne.fit(np.asarray(embeddings, dtype=np.float64))
    bar.close()
    # the progress callback is stored with the embedding; drop it so the embedding pickles
    for key in ("callbacks", "use_callbacks"):
        embedding.gradient_descent_params.pop(key, None)
    return trim_for_transform(embedding)


def trim_for_transform(embedding):
    """Drop what openTSNE's ``TSNEEmbedding.transform`` does not use, in place; return it.

    ``transform`` queries the fitted nearest-neighbour index (``affinities.knn_index``) and
    the perplexity, then optimises the new points against the fixed coordinates. The
    training affinities ``P`` (a sparse ``(n, n)`` matrix) and the training neighbour lists
    are needed only to fit: for 141k materials they are ~400 of the pickle's ~730 MB. So is
    the copy of the training embeddings the Annoy or exact (scikit-learn) index keeps beside
    its search structure (``knn_index.data``, float64: 290 MB at 141k × 256), which their
    ``query`` never reads. It becomes an empty ``(0, D)`` array, not ``None``: unpickling an
    Annoy index (openTSNE's choice from 1,000 points on) reads the width from ``data.shape[1]``,
    so a state pickled with ``None`` could not be loaded (a fresh mp2024 build failed so at the
    server's start, 2026-12-06).
    """
    affinities = embedding.affinities
    affinities.P = None
    for name in list(vars(affinities)):
        if name.endswith("__neighbors") or name.endswith("__distances"):
            setattr(affinities, name, None)
    index = getattr(affinities, "knn_index", None)
    data = getattr(index, "data", None)
    if type(index).__name__ in ("Annoy", "Sklearn") and getattr(index, "index", None) is not None and data is not None:
        index.data = np.empty((0, np.shape(data)[1]), dtype=np.float64)
    return embedding


def materials_table(dataset: Dataset, graphs) -> pd.DataFrame:
    """One row per featurised material: ids, formula, elements, split, properties, SuperCon label.

    Density and space group come from the properties table where it has them, else from the
    structure (pymatgen density, spglib with symprec 0.1 Å); crystal system from the space group.
    """
    a = graphs.arrays
    table = pd.DataFrame(
        {
            "material_id": graphs.material_ids,
            "formula": a["formula"],
            "elements": a["elements"],
            "nelements": [len(e.split()) for e in a["elements"]],
            "nsites": a["n_atoms"],
            "split": assign_splits(graphs.material_ids),
        }
    )
    known = dataset.properties.reindex(table["material_id"])
    for column in PROPERTY_COLUMNS:
        values = known[column].to_numpy() if column in known else np.full(len(table), np.nan)
        table[column] = values
    table["density"] = table["density"].astype(float).fillna(pd.Series(a["density"].astype(float)))
    computed_sg = pd.Series(np.where(a["spacegroup_number"] > 0, a["spacegroup_number"], np.nan))
    table["spacegroup_number"] = table["spacegroup_number"].astype(float).fillna(computed_sg).astype("Int16")
    table["crystal_system"] = [crystal_system(v) if pd.notna(v) else None for v in table["spacegroup_number"]]
    try:
        labels = read_supercon_labels() if dataset.name.startswith("mp2024") else None
    except DatasetError:
        labels = None
    if labels is not None and len(labels):
        joined = labels.reindex(table["material_id"])
        table["supercon_label"] = joined["supercon_label"].fillna("no SuperCon entry").to_numpy()
        table["tc_kelvin"] = joined["tc_kelvin"].to_numpy()
    else:
        table["supercon_label"] = "no SuperCon entry"
        table["tc_kelvin"] = np.nan
    return table


@dataclass
class XRDMap:
    """The XRD-embedding map of a dataset's materials.

    Attributes:
        rows: ``(m,)`` rows of the materials table that have an XRD pattern.
        embeddings: ``(n, D)`` float32 XRD-encoder embeddings, NaN rows where no pattern.
        coordinates: ``(n, 2)`` float32 t-SNE coordinates, NaN where no pattern.
        tsne: the fitted openTSNE embedding of the ``m`` materials (for ``transform``).
        failures: ``[{"material_id", "reason"}]`` of the materials without a pattern.
        patterns: every material's binned pattern, row-aligned with ``material_ids`` (empty rows
            where none), as the map folder stores them.
    """

    rows: np.ndarray
    embeddings: np.ndarray
    coordinates: np.ndarray
    tsne: object
    failures: list
    patterns: SparsePatterns


def xrd_map(dataset: Dataset, net, material_ids: np.ndarray, perplexity: float = 30.0, seed: int = 0,
            processes: int | None = None, progress: bool = True) -> XRDMap:
    """XRD patterns (cached), XRD-encoder embeddings and their t-SNE for ``material_ids``, and the
    patterns laid out as the map stores them (:mod:`ml.mapping.xrd_patterns`).

    Rows follow ``material_ids`` (the crystal map's table), so both maps share one materials
    table and every colour mode.

    Raises:
        RuntimeError: no material has an XRD pattern.
    """
    featurize(dataset, "xrd", processes=processes, progress=progress)
    patterns = load_features(dataset, "xrd")
    ids = np.asarray(material_ids)
    _, rows, pattern_rows = align(ids, patterns.material_ids)
    if rows.size == 0:
        raise RuntimeError(f"no material of {dataset.name} has an XRD pattern")
    order = np.argsort(rows)
    rows, pattern_rows = rows[order], pattern_rows[order]
    found = embed_xrd(net, XRDStore(patterns), pattern_rows, progress=progress)
    tsne = fit_tsne(found, perplexity=perplexity, seed=seed, progress=progress)
    embeddings = np.full((len(ids), found.shape[1]), np.nan, np.float32)
    embeddings[rows] = found
    coordinates = np.full((len(ids), 2), np.nan, np.float32)
    coordinates[rows] = np.asarray(tsne, dtype=np.float32)
    missing = set(ids) - set(ids[rows])
    failures = [f for f in patterns.failures if f["material_id"] in missing]
    failures += [{"material_id": m, "reason": "no XRD pattern"} for m in sorted(missing - {f["material_id"] for f in failures})]
    stored = SparsePatterns.from_features(len(ids), rows, pattern_rows, **patterns.arrays)
    return XRDMap(rows=rows, embeddings=embeddings, coordinates=coordinates, tsne=tsne, failures=failures,
                  patterns=stored)


def _up_to_date(folder: Path, settings: dict) -> bool:
    """``folder`` holds a map built with ``settings`` (model checksum, t-SNE settings, dataset size)."""
    if not (folder / MANIFEST).is_file():
        return False
    manifest = json.loads((folder / MANIFEST).read_text())
    return all(manifest.get(k) == v for k, v in settings.items())


def built_views(folder: Path) -> list[str]:
    """The maps (keys of :data:`MAP_VIEWS`) the manifest of ``folder`` lists; a map built before
    the manifest listed them has the crystal-graph map alone."""
    manifest = json.loads((Path(folder) / MANIFEST).read_text())
    return list(manifest.get("maps", [DEFAULT_VIEW]))


def _checked_views(views) -> list[str]:
    """``views`` in :data:`MAP_VIEWS` order.

    Raises:
        ValueError: an unknown view, or views without the crystal-graph map (every map has it).
    """
    views = list(MAP_VIEWS) if views is None else list(views)
    unknown = set(views) - set(MAP_VIEWS)
    if unknown:
        raise ValueError(f"unknown map {sorted(unknown)[0]!r}; expected some of {', '.join(MAP_VIEWS)}")
    if DEFAULT_VIEW not in views:
        raise ValueError(f"every build has the {DEFAULT_VIEW!r} map; got {views}")
    return [view for view in MAP_VIEWS if view in views]


def _xrd_manifest_entries(xrd: XRDMap) -> dict:
    """The manifest's entries of an XRD map: its place in ``maps`` and the ``xrd_map`` counts."""
    return {"maps": list(MAP_VIEWS),
            "xrd_map": {"n_materials": int(xrd.rows.size), "n_failed": len(xrd.failures),
                        "failures": xrd.failures[:1000]}}


def add_xrd_map(folder: Path, dataset: Dataset, model_path: Path, perplexity: float = 30.0, seed: int = 0,
                processes: int | None = None, progress: bool = True) -> Path:
    """Add the XRD map to the crystal-only map in ``folder`` (:func:`xrd_map` for its materials,
    written in place by :func:`ml.mapping.writer.add_xrd_view`); the crystal map is left as it is.
    Resumable: the patterns are cached per shard; the embedding and t-SNE are redone.

    Returns:
        ``folder``.
    """
    from ml.models.cmml import load_model

    began = time.time()
    materials = pd.read_parquet(Path(folder) / MATERIALS)
    net, _payload = load_model(model_path)
    xrd = xrd_map(dataset, net, materials["material_id"].to_numpy(), perplexity=perplexity, seed=seed,
                  processes=processes, progress=progress)
    materials["x_xrd"] = xrd.coordinates[:, 0]
    materials["y_xrd"] = xrd.coordinates[:, 1]
    add_xrd_view(folder, materials, _xrd_manifest_entries(xrd), xrd.embeddings, xrd.tsne, xrd.patterns)
    log.info("XRD map of %d materials added to %s in %.0f s", xrd.rows.size, folder, time.time() - began)
    return folder


def _complete(folder: Path, dataset: Dataset, processes: int | None, progress: bool) -> None:
    """Add to an up-to-date map what later versions of the format store and it lacks: the XRD
    patterns (from the cached features, :func:`ml.mapping.xrd_patterns.add_xrd_patterns`)."""
    manifest = json.loads((folder / MANIFEST).read_text())
    if SparsePatterns.read(folder, manifest) is None:
        log.info("the map in %s has no stored XRD patterns: adding them from the cached features", folder)
        add_xrd_patterns(folder, dataset, processes=processes, progress=progress)


def build_map(
    dataset: str | Dataset,
    model: str | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    processes: int | None = None,
    force: bool = False,
    progress: bool = True,
    views: list[str] | tuple[str, ...] | None = None,
) -> Path:
    """Everything a map needs that is not built yet; returns the artifact folder.

    ``dataset`` is a registry name, a CIF path, or a :class:`Dataset` (e.g. a ``subset``).

    Steps: crystal graphs (cached, parallel), embeddings with the model, t-SNE, neighbour
    index; XRD patterns (cached, parallel), XRD-encoder embeddings and their own t-SNE
    (:func:`xrd_map`); structure store, manifest. ``views=["crystal"]`` leaves out the XRD map
    (default: every map of :data:`MAP_VIEWS`). An up-to-date map (same model file, same
    materials, same t-SNE settings) is left as it is unless ``force``, but gets the XRD map when
    asked for and missing (:func:`add_xrd_map`), and, built before the XRD patterns were stored,
    the patterns from the cached features (:func:`ml.mapping.xrd_patterns.add_xrd_patterns`,
    seconds, nothing else rebuilt).

    Raises:
        DatasetError: unknown dataset / missing mirror. FileNotFoundError: unknown model.
        RuntimeError: no material of the dataset could be featurised. ValueError: unknown views.
    """
    from ml.models.cmml import load_model

    began = time.time()
    views = _checked_views(views)
    if isinstance(dataset, str):
        dataset = get_dataset(dataset)
    model_name, model_path = resolve_model(model)
    folder = artifact_dir(dataset.name, model_name)
    settings = {"perplexity": perplexity, "seed": seed, "model_sha256": file_sha256(model_path),
                "n_dataset_materials": len(dataset)}
    if not force and _up_to_date(folder, settings):
        if "xrd" in views and "xrd" not in built_views(folder):
            add_xrd_map(folder, dataset, model_path, perplexity, seed, processes, progress)
        elif "xrd" in built_views(folder):
            _complete(folder, dataset, processes, progress)
        log.info("the map in %s is up to date", folder)
        return folder
    featurize(dataset, "graph", processes=processes, progress=progress)
    graphs = load_features(dataset, "graph")
    if len(graphs) == 0:
        raise RuntimeError(f"none of the {len(dataset)} materials of {dataset.name} could be featurised")
    if graphs.failures:
        log.warning("%d of %d materials could not be featurised (first: %s)", len(graphs.failures),
                    len(dataset), graphs.failures[0])
    net, _payload = load_model(model_path)
    embeddings = embed_crystals(net, GraphStore(graphs), progress=progress)
    tsne = fit_tsne(embeddings, perplexity=perplexity, seed=seed, progress=progress)
    table = materials_table(dataset, graphs)
    table["x"] = np.asarray(tsne)[:, 0].astype(np.float32)
    table["y"] = np.asarray(tsne)[:, 1].astype(np.float32)
    xrd = None
    if "xrd" in views:
        xrd = xrd_map(dataset, net, graphs.material_ids, perplexity=perplexity, seed=seed,
                      processes=processes, progress=progress)
        table["x_xrd"] = xrd.coordinates[:, 0]
        table["y_xrd"] = xrd.coordinates[:, 1]
    wanted = set(table["material_id"])
    cifs = dict(tqdm(dataset.records(wanted), total=len(wanted), desc="structure store", unit="mat", disable=not progress))
    manifest = {"dataset": dataset.name, "model": model_name, **settings, "maps": [DEFAULT_VIEW],
                "n_failed": len(graphs.failures), "failures": graphs.failures[:1000],
                **(_xrd_manifest_entries(xrd) if xrd is not None else {}),
                "build_seconds_before_writing": round(time.time() - began, 1)}
    write_artifacts(folder, manifest, table, embeddings, tsne, cifs,
                    **({} if xrd is None else {"xrd_embeddings": xrd.embeddings, "xrd_tsne": xrd.tsne,
                                               "xrd_patterns": xrd.patterns}))
    log.info("map of %d materials written to %s in %.0f s", len(table), folder, time.time() - began)
    return folder
