"""Placing materials the model never saw onto a built map (Suzuki et al. 2022, analysis 5).

A CIF is parsed, turned into a crystal graph, embedded with the map's own model, placed on the
t-SNE map with openTSNE's ``transform`` (optimising the new point against the fixed map), and
given its nearest neighbours in embedding space.
"""

from __future__ import annotations

import pickle
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ml.artifacts import TSNE, ArtifactError, MapArtifacts
from ml.graph import GraphConfig, crystal_graph
from ml.models_registry import file_sha256, resolve_model
from ml.structures import parse_cif

_lock = threading.Lock()  # the model and openTSNE are not re-entrant across callbacks


@dataclass
class LocatedMaterial:
    """A new material placed on a map.

    Attributes:
        formula: reduced formula. x, y: map coordinates.
        embedding: ``(embedding_dim,)`` float32 crystal embedding.
        neighbors: the ``k`` nearest map materials (columns of :meth:`MapArtifacts.neighbors`).
    """

    formula: str
    x: float
    y: float
    embedding: np.ndarray
    neighbors: pd.DataFrame


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
def _tsne_for(folder: Path):
    with open(folder / TSNE, "rb") as handle:
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


def locate_structures(structures: list, artifacts: MapArtifacts, k: int = 10) -> list[LocatedMaterial]:
    """Place pymatgen structures on ``artifacts``' map; see :class:`LocatedMaterial`."""
    if not structures:
        return []
    with _lock:
        embeddings = embed_structures(structures, artifacts)
        coordinates = np.asarray(_tsne_for(artifacts.folder).transform(embeddings.astype(np.float64)))
    return [
        LocatedMaterial(
            formula=s.composition.reduced_formula,
            x=float(xy[0]),
            y=float(xy[1]),
            embedding=e,
            neighbors=artifacts.neighbors_of_embedding(e, k),
        )
        for s, e, xy in zip(structures, embeddings, coordinates)
    ]


def locate_cif(cif_text: str, artifacts: MapArtifacts, k: int = 10) -> LocatedMaterial:
    """Place the structure of a CIF on the map.

    Raises:
        ml.structures.CifError: not a CIF / no structure. ml.graph.FeaturisationError:
        disordered or otherwise unusable structure. ArtifactError: model missing or changed.
    """
    return locate_structures([parse_cif(cif_text)], artifacts, k)[0]
