"""The reader of a built map (:class:`MapArtifacts`), loaded without importing torch: materials,
coordinates, embeddings, neighbours (exact kNN), baseline descriptors, CIFs and XRD patterns.
The format is :mod:`ml.mapping.format`; the app reaches the reader through :mod:`ml.service`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data.formulas import formula_key
from ml.mapping.format import (
    CLOSE_MATCH_QUANTILE,
    CLOSE_MATCH_SAMPLE,
    DEFAULT_VIEW,
    DESCRIPTORS_DIR,
    DESCRIPTOR_IDS,
    DESCRIPTOR_MANIFEST,
    DESCRIPTOR_VALUES,
    EMBEDDINGS,
    INDEX,
    MANIFEST,
    MAP_VIEWS,
    MATERIALS,
    MAX_NEIGHBORS,
    NEIGHBOR_PROPERTY_COLUMNS,
    REQUIRED_FILES,
    STRUCTURES,
    ArtifactError,
    UnknownMaterialError,
    artifact_dir,
    descriptor_command,
)
from ml.mapping.knn import ExactL2Index
from ml.mapping.xrd_patterns import SparsePatterns, migration_command
from ml.settings import get_settings

log = logging.getLogger(__name__)


@dataclass
class MapArtifacts:
    """A loaded map: the materials table, coordinates, embeddings and neighbour index.

    Attributes:
        folder: the artifact folder.
        manifest: the parsed ``manifest.json``.
        materials: one row per material, row ``i`` matching ``embeddings[i]``.
        embeddings: ``(n_materials, embedding_dim)`` float32.
    """

    folder: Path
    manifest: dict
    materials: pd.DataFrame
    embeddings: np.ndarray
    _row_of: dict[str, int] = field(init=False, repr=False)
    _descriptors: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._row_of = {mid: i for i, mid in enumerate(self.materials["material_id"])}

    # ------------------------------------------------------------------ loading

    @classmethod
    def load(cls, dataset: str | None = None, model: str | None = None, root: Path | None = None) -> "MapArtifacts":
        """Load the map of ``dataset`` (registry name or CIF path) / ``model`` (defaults from settings).

        Raises:
            ArtifactError: the folder or one of its files is missing (the message says which
                command builds it).
        """
        from ml.data.datasets import dataset_name

        settings = get_settings()
        requested = dataset or settings.dataset  # what `python -m ml build --dataset` takes
        dataset = dataset_name(requested)
        model = model or settings.model
        folder = artifact_dir(dataset, model, root)
        missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise ArtifactError(
                f"no map of {dataset!r} with model {model!r} in {folder} (missing {', '.join(missing)}); "
                f"build it with: python -m ml build --dataset {requested} --model {model}"
            )
        manifest = json.loads((folder / MANIFEST).read_text())
        materials = pd.read_parquet(folder / MATERIALS)
        embeddings = np.load(folder / EMBEDDINGS, mmap_mode="r")
        if len(materials) != len(embeddings):
            raise ArtifactError(f"{folder}: {len(materials)} materials but {len(embeddings)} embeddings")
        return cls(folder=folder, manifest=manifest, materials=materials, embeddings=embeddings)

    def preload(self) -> "MapArtifacts":
        """Load now what is otherwise loaded on first use: the faiss index and the formula keys
        of :meth:`search` (a server does it at start, so no request waits for it).

        Returns:
            This map.

        Raises:
            RuntimeError: faiss cannot read ``index.faiss``.
        """
        self.index
        self._formula_rows
        self.close_match_distance
        return self

    @cached_property
    def index(self) -> ExactL2Index:
        """The exact L2 index of the embeddings (loaded on first use)."""
        return ExactL2Index.read(self.folder / INDEX)

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]

    @property
    def model(self) -> str:
        return self.manifest["model"]

    @property
    def coordinates(self) -> np.ndarray:
        """Crystal-graph map coordinates, ``(n_materials, 2)`` float32."""
        return self.coordinates_of(DEFAULT_VIEW)

    @property
    def views(self) -> list[str]:
        """The maps this build has (keys of :data:`MAP_VIEWS`); ``"crystal"`` always first."""
        return [view for view, (_, x, y) in MAP_VIEWS.items() if x in self.materials and y in self.materials]

    def coordinates_of(self, view: str) -> np.ndarray:
        """Coordinates of map ``view`` (see :data:`MAP_VIEWS`), ``(n_materials, 2)`` float32;
        NaN rows for materials that map does not place.

        Raises:
            ValueError: unknown view, or one this build does not have.
        """
        if view not in MAP_VIEWS:
            raise ValueError(f"unknown map {view!r}; expected one of {', '.join(MAP_VIEWS)}")
        if view not in self.views:
            raise ValueError(f"this build has no {MAP_VIEWS[view][0]} map; rebuild with: python -m ml build --force")
        _, x, y = MAP_VIEWS[view]
        return self.materials[[x, y]].to_numpy(np.float32)

    def __len__(self) -> int:
        return len(self.materials)

    # ------------------------------------------------------------------ look-ups

    def __contains__(self, material_id: str) -> bool:
        return material_id in self._row_of

    def row_of(self, material_id: str) -> int:
        """Row of a material in :attr:`materials`.

        Raises:
            UnknownMaterialError: the id is not in this map.
        """
        try:
            return self._row_of[material_id]
        except KeyError:
            raise UnknownMaterialError(
                f"{material_id!r} is not in the {self.dataset} map ({len(self)} materials)"
            ) from None

    def material(self, material_id: str) -> pd.Series:
        """The table row of one material (raises :class:`UnknownMaterialError`)."""
        return self.materials.iloc[self.row_of(material_id)]

    def search(self, query: str, limit: int = 50) -> list[int]:
        """Rows matching an id (exact) or a formula (reduced formula, case-insensitive, any
        order of elements: ``O2Li Co`` finds LiCoO2), at most ``limit``."""
        query = query.strip()
        if not query:
            return []
        if query in self._row_of:
            return [self._row_of[query]]
        key = formula_key(query)
        if key is None:
            return []
        return [int(row) for row in self._formula_rows.get(key, ())[:limit]]

    @cached_property
    def _formula_rows(self) -> dict[str, np.ndarray]:
        """Each formula key (:func:`ml.data.formulas.formula_key`) and its rows, ascending."""
        keys = pd.Series([formula_key(f) or "" for f in self.materials["formula"]])
        return {key: rows.to_numpy() for key, rows in keys.groupby(keys, sort=False).groups.items() if key}

    # ------------------------------------------------------------------ neighbours

    def neighbors(self, material_id: str, k: int = 50) -> pd.DataFrame:
        """The ``k`` nearest materials to ``material_id`` in embedding space (Euclidean).

        Returns:
            Table with :data:`NEIGHBOR_COLUMNS` (``rank`` from 1, ``distance`` in embedding
            units) then the property columns; the query itself is left out.

        Raises:
            UnknownMaterialError: unknown id. ValueError: ``k`` outside 1 … 1000.
        """
        row = self.row_of(material_id)
        query = np.asarray(self.embeddings[row], dtype=np.float32)
        return self.neighbors_of_embedding(query, k, exclude_row=row)

    @cached_property
    def close_match_distance(self) -> float:
        """The embedding distance beyond which a query has no close match on this map: the
        :data:`CLOSE_MATCH_QUANTILE` quantile of the distance from a material to its own nearest
        other material, over a fixed sample of :data:`CLOSE_MATCH_SAMPLE` materials (all of them
        on smaller maps). A located structure whose nearest material lies farther than this is
        farther from everything than 99 % of the map's materials are from their nearest
        neighbour. Computed once per loaded map (~2 s for 141k × 128-d on one core; the server's
        warm-up does it). ``inf`` on a map of one material."""
        if len(self) < 2:
            return float("inf")
        rng = np.random.default_rng(0)
        rows = np.sort(rng.choice(len(self), size=min(CLOSE_MATCH_SAMPLE, len(self)), replace=False))
        queries = np.ascontiguousarray(np.asarray(self.embeddings[rows], dtype=np.float32))
        distance, found = self.index.search(queries, 2)
        # the nearest other material: the first hit that is not the query itself (duplicates may come first)
        other = np.where(found[:, 0] == rows, distance[:, 1], distance[:, 0])
        return float(np.quantile(other, CLOSE_MATCH_QUANTILE))

    def neighbors_of_embedding(self, embedding: np.ndarray, k: int = 50, exclude_row: int | None = None) -> pd.DataFrame:
        """The ``k`` nearest materials to an embedding of shape ``(embedding_dim,)``."""
        if not 1 <= int(k) <= MAX_NEIGHBORS:
            raise ValueError(f"k must be between 1 and {MAX_NEIGHBORS}, got {k}")
        k = min(int(k), len(self) - (exclude_row is not None))
        query = np.ascontiguousarray(np.asarray(embedding, dtype=np.float32).reshape(1, -1))
        if query.shape[1] != self.embeddings.shape[1]:
            raise ValueError(f"embedding has {query.shape[1]} dimensions, the map {self.embeddings.shape[1]}")
        distance, rows = self.index.search(query, k + (exclude_row is not None))
        rows, distance = rows[0], distance[0]
        keep = (rows >= 0) & (rows != (exclude_row if exclude_row is not None else -1))
        return self._neighbor_table(rows[keep][:k], distance[keep][:k])

    def _neighbor_table(self, rows: np.ndarray, distance: np.ndarray) -> pd.DataFrame:
        """:data:`NEIGHBOR_COLUMNS` plus property columns for map ``rows`` (nearest first)."""
        table = self.materials.iloc[rows]
        out = pd.DataFrame(
            {
                "rank": np.arange(1, len(rows) + 1),
                "material_id": table["material_id"].to_numpy(),
                "formula": table["formula"].to_numpy(),
                "distance": distance.astype(np.float64),
            }
        )
        for column in NEIGHBOR_PROPERTY_COLUMNS:
            if column in table:
                out[column] = table[column].to_numpy()
        return out

    # ------------------------------------------------------------------ baseline descriptors

    def descriptor_names(self) -> list[str]:
        """Names of the baseline descriptors exported for this map's dataset (see
        :mod:`ml.descriptors`; built with ``python -m ml descriptors --export``), sorted."""
        folder = self.folder.parent / DESCRIPTORS_DIR
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / DESCRIPTOR_MANIFEST).is_file())

    def descriptor_info(self, name: str) -> dict:
        """The manifest of descriptor ``name``: ``label``, ``citation``, ``metric``, ``coverage``
        (the set of materials it was computed on), ``n_materials``, ``dim``.

        Raises:
            ArtifactError: no such descriptor exported (the message lists those there are).
        """
        return self._descriptor(name)["manifest"]

    def descriptor_neighbors(self, name: str, material_id: str, k: int = 50) -> pd.DataFrame:
        """The ``k`` nearest materials to ``material_id`` under baseline descriptor ``name``
        (exact Euclidean distance in that descriptor's space), among the materials it covers.

        Returns:
            The columns of :meth:`neighbors` (``distance`` in descriptor units); the query
            itself is left out.

        Raises:
            ArtifactError: descriptor not exported. UnknownMaterialError: the id is not in the
            map, or the descriptor does not cover it (the message says which set it covers).
            ValueError: ``k`` outside 1 … 1000.
        """
        if not 1 <= int(k) <= MAX_NEIGHBORS:
            raise ValueError(f"k must be between 1 and {MAX_NEIGHBORS}, got {k}")
        self.row_of(material_id)
        descriptor = self._descriptor(name)
        row = descriptor["row_of"].get(material_id)
        if row is None:
            manifest = descriptor["manifest"]
            raise UnknownMaterialError(
                f"{material_id!r} is not covered by the {name} descriptor (computed on "
                f"{manifest.get('coverage', '?')}: {manifest.get('n_materials', '?')} materials)"
            )
        distance, rows = descriptor["index"].neighbors_of_row(row, descriptor["values"], int(k))
        ids = descriptor["material_ids"][rows]
        in_map = np.array([mid in self._row_of for mid in ids], dtype=bool)
        map_rows = np.array([self._row_of[mid] for mid in ids[in_map]], dtype=np.int64)
        return self._neighbor_table(map_rows[: int(k)], distance[in_map][: int(k)])

    def _descriptor(self, name: str) -> dict:
        """Loaded descriptor ``name`` (values memory-mapped, exact L2 index), cached."""
        if name not in self._descriptors:
            folder = self.folder.parent / DESCRIPTORS_DIR / name
            if not (folder / DESCRIPTOR_MANIFEST).is_file():
                known = ", ".join(self.descriptor_names()) or "none"
                raise ArtifactError(
                    f"no descriptor {name!r} exported for {self.dataset} (exported: {known}); build it with: "
                    f"{descriptor_command(self.dataset, name)}"
                )
            manifest = json.loads((folder / DESCRIPTOR_MANIFEST).read_text())
            values = np.load(folder / DESCRIPTOR_VALUES, mmap_mode="r")
            ids = np.load(folder / DESCRIPTOR_IDS, allow_pickle=False)
            if len(ids) != len(values):
                raise ArtifactError(f"{folder}: {len(ids)} ids but {len(values)} vectors")
            index = ExactL2Index.build(values)
            self._descriptors[name] = {
                "manifest": manifest, "values": values, "material_ids": ids, "index": index,
                "row_of": {mid: i for i, mid in enumerate(ids.tolist())},
            }
        return self._descriptors[name]


    # ------------------------------------------------------------------ structures, XRD (placing a CIF: ml.service.LoadedMap)

    def cif(self, material_id: str) -> str:
        """The CIF text of a material of the map.

        Raises:
            UnknownMaterialError: unknown id. ArtifactError: the map has no structure store.
        """
        self.row_of(material_id)
        path = self.folder / STRUCTURES
        if not path.is_file():
            raise ArtifactError(f"{self.folder} has no {STRUCTURES}; rebuild the map")
        cif = _cif_from_sqlite(path, material_id)
        if cif is None:
            raise UnknownMaterialError(f"no structure stored for {material_id!r}")
        return cif


    def structure(self, material_id: str):
        """The pymatgen ``Structure`` of a material of the map (see :meth:`cif`)."""
        from ml.data.structures import parse_cif

        return parse_cif(self.cif(material_id))


    @cached_property
    def stored_xrd_patterns(self) -> SparsePatterns | None:
        """The patterns the build stored (:mod:`ml.mapping.xrd_patterns`, memory-mapped), ``None``
        for a map built before they were stored."""
        return SparsePatterns.read(self.folder, self.manifest)

    def xrd_pattern(self, material_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(two_theta, intensity)`` of a material's simulated powder XRD pattern (Cu Kα,
        λ = 1.54184 Å): the bins' left edges in degrees and the max-normalised intensities, both
        ``(5000,)`` (see :mod:`ml.features.xrd`).

        Read from the patterns the build stored. A map folder without them (built before they were
        stored) simulates the pattern from the structure (:mod:`ml.features.xrd_sim`, imports
        torch and pymatgen) and says once which command adds them.

        Raises:
            UnknownMaterialError: unknown id. ValueError: the build could not simulate this
            material's pattern. ArtifactError: no stored pattern and no structure store.
        """
        row = self.row_of(material_id)
        stored = self.stored_xrd_patterns
        if stored is not None:
            return stored.pattern(row)
        _warn_once(self.folder, f"{self.folder} has no stored XRD patterns: simulating each on request; add them "
                                f"(seconds, from the cached features) with: {migration_command(self.dataset, self.model)}")
        from ml.features.xrd import XRDConfig
        from ml.features.xrd_sim import xrd_pattern_fast

        config = XRDConfig()
        return config.two_theta(), xrd_pattern_fast(self.structure(material_id), config)


_warned: set[Path] = set()


def _warn_once(folder: Path, message: str) -> None:
    if folder not in _warned:
        _warned.add(folder)
        log.warning(message)


def _cif_from_sqlite(path: Path, material_id: str) -> str | None:
    import sqlite3

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        row = connection.execute("SELECT cif FROM structures WHERE material_id = ?", (material_id,)).fetchone()
    return row[0] if row else None
