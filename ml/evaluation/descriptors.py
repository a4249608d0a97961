"""The descriptors the evaluation compares, each as a :class:`ml.descriptors.compute.DescriptorTable`:

- ``cmml``: our crystal embedding, read from the built map (:class:`ml.mapping.artifacts.MapArtifacts`);
- ``cgcnn_formation_energy``: the latent vector (mean-pooled atom vector, 64-d) of the CGCNN
  trained to predict formation energy (:mod:`ml.training.property`), the concept baseline of
  Suzuki et al. (2022); computed here for every material of the dataset and cached under
  ``data/cache/descriptors/<dataset>/cgcnn-latent-<model name>-<model sha12>.npz``;
- the baselines of :mod:`ml.descriptors` (``ewald``, ``sine_coulomb``, ``crystalnn``,
  ``chgnet``), each on the set it was computed for.

A descriptor that is not available (not computed, module missing, model missing) comes back
with ``table=None`` and the reason, so the report lists it as "not computed".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml.mapping.artifacts import MapArtifacts
from ml.data.datasets import Dataset
from ml.settings import get_settings

if TYPE_CHECKING:
    from ml.descriptors.compute import DescriptorTable

log = logging.getLogger(__name__)

OURS = "cmml"
CGCNN_LATENT = "cgcnn_formation_energy"
CGCNN_MODEL = "cgcnn-formation-energy"
BASELINES = ("ewald", "sine_coulomb", "crystalnn", "chgnet")


@dataclass
class DescriptorStatus:
    """One descriptor of the comparison.

    Attributes:
        name: key (``cmml``, ``cgcnn_formation_energy``, ``ewald`` …). label: what it is.
        table: the vectors, or ``None`` when not available. note: why not / what it covers.
    """

    name: str
    label: str
    table: DescriptorTable | None
    note: str

    @property
    def available(self) -> bool:
        return self.table is not None

    @property
    def coverage(self) -> str:
        """``"<n> materials (<set>)"`` or ``"not computed: <reason>"``."""
        if self.table is None:
            return f"not computed: {self.note}"
        return f"{len(self.table):,} materials ({self.table.coverage or 'unknown set'})"


def rows_in(table, material_ids) -> np.ndarray:
    """Row of each id in ``table`` (``-1`` where not covered), ``(n,)`` int."""
    return pd.Index(np.asarray(table.material_ids, dtype=str)).get_indexer(np.asarray(material_ids, dtype=str))


def ours(artifacts: MapArtifacts) -> DescriptorStatus:
    """Our embedding of every material of the map."""
    from ml.descriptors.compute import DescriptorTable

    table = DescriptorTable(OURS, artifacts.materials["material_id"].to_numpy().astype(str),
                            np.asarray(artifacts.embeddings, dtype=np.float32), "euclidean",
                            f"all of {artifacts.dataset}")
    return DescriptorStatus(OURS, f"CMML crystal embedding ({artifacts.model}, {table.values.shape[1]}-d; ours)",
                            table, "")


def cgcnn_latent(dataset: Dataset, model_name: str = CGCNN_MODEL, progress: bool = True) -> DescriptorStatus:
    """The CGCNN formation-energy latent of every featurised material of ``dataset`` (cached)."""
    from ml.descriptors.compute import DescriptorTable
    from ml.models.registry import file_sha256, resolve_model

    label = f"CGCNN latent ({model_name}, mean-pooled atom vector; the paper's baseline)"
    try:
        _name, path = resolve_model(model_name)
    except FileNotFoundError as exc:
        return DescriptorStatus(CGCNN_LATENT, label, None, str(exc))
    cache = (get_settings().cache_dir / "descriptors" / dataset.name
             / f"cgcnn-latent-{model_name}-{file_sha256(path)[:12]}.npz")
    if not cache.is_file():
        from ml.data.batches import GraphStore
        from ml.data.featurize import load_features
        from ml.training.property import load_property_model

        model = load_property_model(model_name)
        store = GraphStore(load_features(dataset, "graph"))
        latent = model.latent_graphs(store, progress=progress)
        cache.parent.mkdir(parents=True, exist_ok=True)
        part = cache.with_name(cache.name + ".part.npz")
        np.savez(part, material_ids=store.material_ids.astype(str), values=latent)
        part.replace(cache)
    with np.load(cache) as data:
        table = DescriptorTable(CGCNN_LATENT, data["material_ids"], data["values"], "euclidean", f"all of {dataset.name}")
    return DescriptorStatus(CGCNN_LATENT, label, table, "")


def baseline(dataset: Dataset, name: str) -> DescriptorStatus:
    """A baseline of :mod:`ml.descriptors`, or its reason for being unavailable."""
    try:
        from ml.descriptors.compute import load_descriptor
        from ml.descriptors.registry import get_spec

        spec = get_spec(name)
        return DescriptorStatus(name, spec.label, load_descriptor(dataset, name), "")
    except (ImportError, FileNotFoundError, ValueError, OSError, KeyError) as exc:
        return DescriptorStatus(name, name, None, str(exc).split("\n")[0])


def collect(dataset: Dataset, artifacts: MapArtifacts, progress: bool = True) -> dict[str, DescriptorStatus]:
    """Every descriptor of the comparison, ours first, then the CGCNN latent, then the baselines."""
    out = {OURS: ours(artifacts), CGCNN_LATENT: cgcnn_latent(dataset, progress=progress)}
    for name in BASELINES:
        out[name] = baseline(dataset, name)
    for status in out.values():
        log.info("descriptor %s: %s", status.name, status.coverage)
    return out


def aligned(statuses: dict[str, DescriptorStatus], material_ids) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Matrices of the available descriptors restricted to the ids all of them cover.

    Returns:
        ``({name: (m, d) matrix}, mask)``: ``mask`` ``(n,)`` marks which of ``material_ids``
        are covered by every available descriptor; matrix rows follow ``material_ids[mask]``.
    """
    material_ids = np.asarray(material_ids, dtype=str)
    rows = {name: rows_in(s.table, material_ids) for name, s in statuses.items() if s.available}
    mask = np.all([r >= 0 for r in rows.values()], axis=0) if rows else np.zeros(len(material_ids), bool)
    return {name: np.asarray(statuses[name].table.values[r[mask]], dtype=np.float32) for name, r in rows.items()}, mask
