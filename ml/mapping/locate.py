"""Placing materials the model never saw onto a built map (Suzuki et al. 2022, analysis 5).

Two steps, so that a bad file is refused before any model is loaded:

1. :func:`prepare_cif` reads the CIF, replaces a disordered structure by its ordered
   approximation (:func:`ml.data.structures.majority_occupant`), checks it and builds its crystal
   graph and simulated powder pattern; this imports neither torch nor the model, and raises
   the user-facing :class:`~ml.data.structures.CifError` / :class:`~ml.features.errors.FeaturisationError`.
2. :func:`locate_prepared` embeds the prepared structures with the map's own model, places
   them on the t-SNE map with openTSNE's ``transform`` (optimising the new points against the
   fixed map), and gives each its nearest neighbours in embedding space. Where the build has
   the XRD map, the simulated pattern is embedded with the XRD encoder and placed on that map
   the same way.

Threads: placing a few structures is a few small tensor operations, one faiss query and two
t-SNE optimisations of one point each. With all cores (torch's default, and the ``n_jobs=-1``
the map was fitted with, which openTSNE keeps in its pickled state) each of them fans out
over threads that wait on one another, many times slower on a busy machine than on one
thread; so the model runs on one torch thread here and the loaded t-SNE state on one job
(:func:`load_tsne`). ``python bench/tsne_transform.py`` measures the difference.
"""

from __future__ import annotations

import pickle
import threading
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ml.mapping.artifacts import MapArtifacts
from ml.mapping.format import CLOSE_MATCH_QUANTILE, TSNE, XRD_TSNE, ArtifactError
from ml.features.errors import FeaturisationError
from ml.features.graph import CrystalGraph, GraphConfig, crystal_graph
from ml.models.registry import file_sha256, resolve_model
from ml.data.structures import majority_occupant, read_cif

_lock = threading.Lock()  # the model and openTSNE are not re-entrant across callbacks


@dataclass(frozen=True)
class PreparedStructure:
    """A structure checked and featurised for placing, before any model is loaded.

    Attributes:
        structure: the ordered pymatgen ``Structure`` that is embedded.
        graph: its :class:`~ml.features.graph.CrystalGraph`.
        pattern: its simulated powder pattern, ``(5000,)`` float32 (Cu Kα, 2θ 10–110°), or
            ``None`` when it cannot be simulated (see ``pattern_error``).
        pattern_error: why there is no pattern (the structure is then not placed on the XRD map).
        notes: sentences for the user on what was approximated or guessed (a disordered
            structure's ordered approximation, atom types the CIF reader guessed).
    """

    structure: object
    graph: CrystalGraph
    pattern: np.ndarray | None
    pattern_error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass
class LocatedMaterial:
    """A new material placed on a map.

    Attributes:
        formula: reduced formula of the placed (ordered) structure. x, y: crystal-graph map
            coordinates.
        embedding: ``(embedding_dim,)`` float32 crystal embedding.
        neighbors: the ``k`` nearest map materials (columns of :meth:`MapArtifacts.neighbors`).
        x_xrd, y_xrd: XRD map coordinates (``None`` when the build has no XRD map, or the
            structure has no simulated pattern).
        notes: sentences for the user: approximations made (disorder), guesses of the CIF
            reader, and what is unusual about the placement (an element count outside the
            map's range, no XRD-map position).
    """

    formula: str
    x: float
    y: float
    embedding: np.ndarray
    neighbors: pd.DataFrame
    x_xrd: float | None = None
    y_xrd: float | None = None
    notes: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- step 1: no model


def prepare_cif(cif_text: str, config: GraphConfig = GraphConfig()) -> PreparedStructure:
    """Read, check and featurise the first structure of a CIF, without torch or the model.

    Raises:
        ml.data.structures.CifError: not a CIF, a CIF without a crystal structure, unreadable
            fields, an atom type read as an element beyond Z = 100.
        ml.features.errors.FeaturisationError: a structure the model cannot take (placeholder species,
            too many sites, overlapping atoms, degenerate cell …).
    """
    reading = read_cif(cif_text)
    return prepare_structure(reading.structure, config, reading.notes)


def prepare_structure(structure, config: GraphConfig = GraphConfig(), notes: tuple[str, ...] = ()) -> PreparedStructure:
    """:func:`prepare_cif` for a pymatgen ``Structure``; ``notes`` are kept in front of its own.

    Raises:
        ml.features.errors.FeaturisationError: as :func:`prepare_cif`.
    """
    from ml.features.xrd import XRDConfig
    from ml.features.xrd_sim import xrd_pattern_fast

    with warnings.catch_warnings():  # numpy overflow warnings of absurd cells: refused below
        warnings.simplefilter("ignore")
        ordered, approximation = majority_occupant(structure)
        graph = crystal_graph(ordered, config)
        try:
            pattern, pattern_error = xrd_pattern_fast(ordered, XRDConfig()), None
        except FeaturisationError as exc:
            pattern, pattern_error = None, str(exc)
    notes = tuple(notes) + ((approximation,) if approximation else ())
    return PreparedStructure(ordered, graph, pattern, pattern_error, notes)


# --------------------------------------------------------------------------- step 2: the model


@lru_cache(maxsize=4)
def _model_for(model_name: str, expected_sha256: str | None):
    from ml.models.cmml import load_model

    _name, path = resolve_model(model_name)
    if expected_sha256 and file_sha256(path) != expected_sha256:
        raise ArtifactError(f"the map was built with another version of model {model_name!r}; rebuild it "
                            "with: python -m ml build --force")
    model, _payload = load_model(path)
    return model


def load_tsne(path: Path):
    """The fitted openTSNE ``TSNEEmbedding`` pickled at ``path``, set to run on one thread.

    The map was fitted with ``n_jobs=-1`` and openTSNE keeps that in three places of its
    state (the optimiser's parameters, the affinities, their nearest-neighbour index); a
    ``transform`` of one point would then spread its 250 gradient steps over every core.
    Coordinates are the same either way. What ``transform`` does not read is dropped
    (:func:`ml.mapping.build.trim_for_transform`: maps built before it kept 290 MB more per state).

    The interpolation grid that the first ``transform`` would compute (2.7 s of FFTs on mp2024)
    is prepared here. openTSNE then moves the reference map, in place, so that its bounding box
    is centred on 0; :func:`place` adds that shift back, so that placed points are in the
    coordinates of the map as built (before, every placed point was off by it: 0.8 t-SNE units
    on mp2024).
    """
    from ml.mapping.build import trim_for_transform

    with open(path, "rb") as handle:
        embedding = trim_for_transform(pickle.load(handle))
    embedding.gradient_descent_params["n_jobs"] = 1
    affinities = embedding.affinities
    affinities.n_jobs = 1
    if getattr(affinities, "knn_index", None) is not None:
        affinities.knn_index.n_jobs = 1
    reference = np.asarray(embedding)
    shift = (reference.max(axis=0) + reference.min(axis=0)) / 2
    embedding.prepare_interpolation_grid()  # recentres the reference map in place (openTSNE)
    embedding.map_shift = shift
    return embedding


def place(state, embeddings: np.ndarray) -> np.ndarray:
    """Map coordinates ``(n, 2)`` of new points ``(n, D)`` on the t-SNE map of ``state``
    (:func:`load_tsne`), in the frame of the map as built (Poličar et al. 2019's ``transform``)."""
    return np.asarray(state.transform(np.asarray(embeddings, dtype=np.float64))) + state.map_shift


def _tsne_for(folder: Path, name: str = TSNE):
    """The t-SNE state ``name`` of a map folder, loaded once per version of the file (a server that
    reloads a rebuilt map gets the new state)."""
    return _tsne_of_version(folder / name, (folder / name).stat().st_mtime_ns)


@lru_cache(maxsize=4)
def _tsne_of_version(path: Path, _mtime_ns: int):
    return load_tsne(path)


def _embed(prepared: list[PreparedStructure], artifacts: MapArtifacts) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Crystal embeddings ``(n, D)`` float32 and, by index, the XRD-encoder embeddings of those
    with a pattern (none when the map has no XRD map)."""
    import torch

    from ml.data.batches import GraphStore
    from ml.mapping.embed import embed_crystals
    from ml.threads import torch_threads

    model = _model_for(artifacts.model, artifacts.manifest.get("model_sha256"))
    with torch.inference_mode(), torch_threads(1):
        crystal = embed_crystals(model, GraphStore.from_graphs([p.graph for p in prepared]))
        with_pattern = [i for i, p in enumerate(prepared) if p.pattern is not None]
        xrd = {}
        if _has_xrd_map(artifacts) and with_pattern:
            model.eval()
            patterns = torch.from_numpy(np.stack([prepared[i].pattern for i in with_pattern]).astype(np.float32))
            xrd = dict(zip(with_pattern, model.xrd(patterns).float().numpy()))
    return crystal, xrd


def preload(artifacts: MapArtifacts) -> None:
    """Load now what placing the first CIF would load: the map's model (checked against the
    build's) and its t-SNE states (crystal map, and the XRD map's when it has one). A server
    does it at start, in the process its workers are forked from, so that the first upload is
    placed as fast as the next and every worker shares one copy (about 80 MB for both states on
    mp2024, :func:`load_tsne`), and imports pymatgen's diffraction module for the patterns
    and its CIF reader (77 ms of imports in the first upload otherwise: the first placement
    took 0.36 s and the next 0.10 s in one process on mp2024, session 12).

    Raises:
        ArtifactError: the map's model is missing or changed since the build.
    """
    import importlib

    from ml.features.xrd_scattering import scattering_table

    importlib.import_module("pymatgen.io.cif")  # imported now, not in the first upload

    _model_for(artifacts.model, artifacts.manifest.get("model_sha256"))
    _tsne_for(artifacts.folder)
    if _has_xrd_map(artifacts):
        _tsne_for(artifacts.folder, XRD_TSNE)
    scattering_table()  # pymatgen's diffraction module: 1 s of imports on the first pattern


def _has_xrd_map(artifacts: MapArtifacts) -> bool:
    return "xrd" in artifacts.views and (artifacts.folder / XRD_TSNE).is_file()


def locate_prepared(prepared: list[PreparedStructure], artifacts: MapArtifacts, k: int = 10) -> list[LocatedMaterial]:
    """Place prepared structures on ``artifacts``' maps, in order; see :class:`LocatedMaterial`.

    Raises:
        ArtifactError: the map's model is missing or changed since the build.
        ValueError: ``k`` outside 1 … 1000.
    """
    if not prepared:
        return []
    with _lock:
        embeddings, xrd_embeddings = _embed(prepared, artifacts)
        coordinates = place(_tsne_for(artifacts.folder), embeddings)
        xrd_xy: dict[int, tuple[float, float]] = {}
        if xrd_embeddings:
            rows = sorted(xrd_embeddings)
            placed = place(_tsne_for(artifacts.folder, XRD_TSNE), np.stack([xrd_embeddings[i] for i in rows]))
            xrd_xy = {i: (float(x), float(y)) for i, (x, y) in zip(rows, np.asarray(placed))}
    located = []
    for i, (p, e, xy) in enumerate(zip(prepared, embeddings, coordinates)):
        neighbors = artifacts.neighbors_of_embedding(e, k)
        located.append(LocatedMaterial(
            formula=p.structure.composition.reduced_formula,
            x=float(xy[0]),
            y=float(xy[1]),
            embedding=e,
            neighbors=neighbors,
            x_xrd=xrd_xy.get(i, (None, None))[0],
            y_xrd=xrd_xy.get(i, (None, None))[1],
            notes=p.notes + _placement_notes(p, artifacts) + _closeness_notes(neighbors, artifacts),
        ))
    return located


def _placement_notes(prepared: PreparedStructure, artifacts: MapArtifacts) -> tuple[str, ...]:
    """What is unusual about placing this structure on this map, for the user."""
    notes = []
    n = len(prepared.structure.composition.elements)
    if "nelements" in artifacts.materials and len(artifacts.materials):
        low, high = int(artifacts.materials["nelements"].min()), int(artifacts.materials["nelements"].max())
        if not low <= n <= high:
            span = f"{low}" if low == high else f"{low} to {high}"
            notes.append(
                f"{prepared.structure.composition.reduced_formula} has {n} element{'s' if n != 1 else ''}, but the "
                f"map holds only materials with {span} elements: its neighbours are the nearest of those, "
                "not materials like it"
            )
    if prepared.pattern is None and _has_xrd_map(artifacts):
        notes.append(f"not placed on the XRD map: {prepared.pattern_error}")
    return tuple(notes)


def _closeness_notes(neighbors, artifacts: MapArtifacts) -> tuple[str, ...]:
    """"No close match" when the nearest material is farther than the map's materials usually
    are from their own nearest neighbour (:attr:`MapArtifacts.close_match_distance`)."""
    if not len(neighbors):
        return ()
    nearest, threshold = float(neighbors["distance"].iloc[0]), artifacts.close_match_distance
    if nearest <= threshold:
        return ()
    return (f"no close match: the nearest material ({neighbors['formula'].iloc[0]}, "
            f"{neighbors['material_id'].iloc[0]}) is {nearest:.3g} away in the embedding, farther than "
            f"{100 * CLOSE_MATCH_QUANTILE:.0f} % of this map's materials are from their own nearest neighbour "
            f"({threshold:.3g}); the neighbours below are the least unlike it, not necessarily like it",)


def locate_structures(structures: list, artifacts: MapArtifacts, k: int = 10) -> list[LocatedMaterial]:
    """Place pymatgen structures on ``artifacts``' maps (disordered ones by their ordered
    approximation); see :class:`LocatedMaterial`.

    Raises:
        ml.features.errors.FeaturisationError: a structure the model cannot take. ArtifactError:
        model missing or changed.
    """
    return locate_prepared([prepare_structure(s) for s in structures], artifacts, k)


def locate_cif(cif_text: str, artifacts: MapArtifacts, k: int = 10) -> LocatedMaterial:
    """Place the structure of a CIF on the map (:func:`prepare_cif`, then :func:`locate_prepared`).

    Raises:
        ml.data.structures.CifError, ml.features.errors.FeaturisationError: unusable input, with a message
        for the user (see :func:`prepare_cif`); checked before the model is loaded.
        ArtifactError: model missing or changed.
    """
    return locate_prepared([prepare_cif(cif_text)], artifacts, k)[0]
