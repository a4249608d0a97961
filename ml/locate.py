"""Placing materials the model never saw onto a built map (Suzuki et al. 2022, analysis 5).

A CIF is parsed, turned into a crystal graph, embedded with the map's own model, placed on the
t-SNE map with openTSNE's ``transform`` (optimising the new point against the fixed map), and
given its nearest neighbours in embedding space. Where the build has the XRD map, the
structure's simulated powder pattern is embedded with the XRD encoder and placed on that map
the same way.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ml.artifacts import TSNE, XRD_TSNE, ArtifactError, MapArtifacts
from ml.graph import GraphConfig, crystal_graph
from ml.models_registry import file_sha256, resolve_model
from ml.structures import parse_cif

_lock = threading.Lock()  # the model and openTSNE are not re-entrant across callbacks


@dataclass
class LocatedMaterial:
    """A new material placed on a map.

    Attributes:
        formula: reduced formula. x, y: crystal-graph map coordinates.
        embedding: ``(embedding_dim,)`` float32 crystal embedding.
        neighbors: the ``k`` nearest map materials (columns of :meth:`MapArtifacts.neighbors`).
        x_xrd, y_xrd: XRD map coordinates (``None`` when the build has no XRD map).
    """

    formula: str
    x: float
    y: float
    embedding: np.ndarray
    neighbors: pd.DataFrame
    x_xrd: float | None = None
    y_xrd: float | None = None


@lru_cache(maxsize=4)
def _model_for(model_name: str, expected_sha256: str | None):
    from ml.cmml import load_model

    _name, path = resolve_model(model_name)
    if expected_sha256 and file_sha256(path) != expected_sha256:
        raise ArtifactError(f"the map was built with another version of model {model_name!r}; rebuild it "
                            "with: python -m ml build --force")
    model, _payload = load_model(path)
    return model


@lru_cache(maxsize=4)
def _tsne_for(folder: Path, name: str = TSNE):
    with open(folder / name, "rb") as handle:
        return pickle.load(handle)


def embed_structures(structures: list, artifacts: MapArtifacts) -> np.ndarray:
    """Crystal embeddings of pymatgen structures with the map's model, ``(n, D)`` float32.

    Raises:
        ml.graph.FeaturisationError: a structure cannot be featurised (disordered, too large …).
    """
    import torch

    from ml.batches import GraphStore
    from ml.embed import embed_crystals

    graphs = [crystal_graph(s, GraphConfig()) for s in structures]  # input errors before model errors
    model = _model_for(artifacts.model, artifacts.manifest.get("model_sha256"))
    with torch.inference_mode():
        return embed_crystals(model, GraphStore.from_graphs(graphs))


def embed_patterns(structures: list, artifacts: MapArtifacts) -> np.ndarray:
    """XRD-encoder embeddings of the simulated powder patterns of pymatgen structures,
    ``(n, D)`` float32 (patterns from :func:`ml.xrd_sim.xrd_pattern_fast`, Cu Kα, 5000 bins)."""
    import torch

    from ml.xrd import XRDConfig
    from ml.xrd_sim import xrd_pattern_fast

    config = XRDConfig()
    patterns = np.stack([xrd_pattern_fast(s, config) for s in structures]).astype(np.float32)
    model = _model_for(artifacts.model, artifacts.manifest.get("model_sha256"))
    with torch.inference_mode():
        model.eval()
        return model.xrd(torch.from_numpy(patterns)).float().numpy()


def locate_structures(structures: list, artifacts: MapArtifacts, k: int = 10) -> list[LocatedMaterial]:
    """Place pymatgen structures on ``artifacts``' maps; see :class:`LocatedMaterial`."""
    if not structures:
        return []
    with _lock:
        embeddings = embed_structures(structures, artifacts)
        coordinates = np.asarray(_tsne_for(artifacts.folder).transform(embeddings.astype(np.float64)))
        xrd_coordinates = [(None, None)] * len(structures)
        if "xrd" in artifacts.views and (artifacts.folder / XRD_TSNE).is_file():
            xrd_embeddings = embed_patterns(structures, artifacts)
            xrd_tsne = _tsne_for(artifacts.folder, XRD_TSNE)
            xrd_coordinates = [tuple(map(float, xy)) for xy in np.asarray(xrd_tsne.transform(xrd_embeddings.astype(np.float64)))]
    return [
        LocatedMaterial(
            formula=s.composition.reduced_formula,
            x=float(xy[0]),
            y=float(xy[1]),
            embedding=e,
            neighbors=artifacts.neighbors_of_embedding(e, k),
            x_xrd=xrd_xy[0],
            y_xrd=xrd_xy[1],
        )
        for s, e, xy, xrd_xy in zip(structures, embeddings, coordinates, xrd_coordinates)
    ]


def locate_cif(cif_text: str, artifacts: MapArtifacts, k: int = 10) -> LocatedMaterial:
    """Place the structure of a CIF on the map.

    Raises:
        ml.structures.CifError: not a CIF / no structure. ml.graph.FeaturisationError:
        disordered or otherwise unusable structure. ArtifactError: model missing or changed.
    """
    return locate_structures([parse_cif(cif_text)], artifacts, k)[0]
