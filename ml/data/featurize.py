"""Parallel, cached, resumable featurisation of a dataset into on-disk shards.

Each material goes into one of ``n_shards`` shards chosen by a hash of its id (independent of
the split hash), so every shard is a random sample of the dataset and a training run on a
budget can use the first few shards. A shard is written atomically once all its materials
are done; an interrupted run resumes at the missing shards. The cache folder is
``data/cache/features/<dataset>/<featuriser key>-<ids digest>/``: a changed featuriser
configuration or a changed id list never reuses a stale cache.

Kinds:
- ``graph``: crystal graphs (:func:`ml.features.graph.crystal_graph`) plus a structure summary
  (reduced formula, density, spglib space group, elements) and the parsed cell
  (:class:`ml.data.structures.CellArrays`: lattice, atomic numbers, fractional coordinates).
  Density and space group are computed only for the materials whose properties table lacks
  one of them (a row with both known gets NaN and 0): the map's table takes them from the
  properties table first (:func:`ml.mapping.build.materials_table`);
- ``xrd``: binned XRD patterns (:func:`ml.features.xrd.xrd_pattern`), stored sparse. Each CIF
  is parsed once: a material whose graph shard is cached gets its pattern from the cell stored
  there (:func:`cached_cells`, the same ``Structure`` and the same pattern, 4× faster than
  parsing again); the others (no graph cache yet, or a graph that failed) from their CIF.

A structure that fails to parse or featurise is recorded with its reason in the shard
(``failures``) and skipped; it never aborts the build. Shards, workers and resuming:
:mod:`ml.data.shard_cache`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ml.data.datasets import Dataset
from ml.data.shard_cache import (
    Result, apply_each, compute_shards, ids_digest, n_shards_for, read_failures, save_npz_atomically, shard_of,
    split_results,
)
from ml.features.errors import FeaturisationError
from ml.features.graph import CrystalGraph, GraphConfig, crystal_graph
from ml.settings import get_settings
from ml.data.structures import CellArrays, CifError, parse_cif, structure_summary
from ml.features.xrd import XRDConfig, xrd_pattern
from ml.features.xrd_sim import xrd_pattern_fast

log = logging.getLogger(__name__)

CHUNK_SIZE = 50
KINDS = ("graph", "xrd")


def _config_for(kind: str, config=None):
    if kind == "graph":
        return config or GraphConfig()
    if kind == "xrd":
        return config or XRDConfig()
    raise ValueError(f"unknown feature kind {kind!r}; expected one of {KINDS}")


def cache_dir(dataset: Dataset, kind: str, config=None) -> Path:
    """Folder of a dataset's shards for one featuriser configuration."""
    config = _config_for(kind, config)
    return get_settings().cache_dir / "features" / dataset.name / f"{config.key()}-{ids_digest(dataset.material_ids)}"


# --------------------------------------------------------------------------- worker side


def graph_features(cif: str, config: GraphConfig, symmetry: bool = True) -> tuple[CrystalGraph, dict, CellArrays]:
    """The graph-cache entry of one CIF: its graph, summary (:func:`structure_summary`; density and
    space group left out with ``symmetry=False``) and parsed cell.

    Raises:
        CifError, FeaturisationError: the text holds no usable structure.
    """
    structure = parse_cif(cif)
    graph = crystal_graph(structure, config)  # refuses disordered structures first
    return graph, structure_summary(structure, symmetry=symmetry), CellArrays.of(structure)


def xrd_features(source: str | CellArrays, config: XRDConfig, engine: str = "fast") -> np.ndarray:
    """The binned ``(n_bins,)`` pattern of a CIF text or of a cell the graph cache stored.

    Patterns come from our batched simulator (:mod:`ml.features.xrd_sim`, identical to pymatgen's
    ``XRDCalculator`` to float precision, ~30× faster) unless ``engine="pymatgen"``.

    Raises:
        CifError, FeaturisationError: the text holds no usable structure.
    """
    structure = source.structure() if isinstance(source, CellArrays) else parse_cif(source)
    if not structure.is_ordered:
        raise FeaturisationError("disordered structure (partial occupancies) is not supported")
    if engine == "pymatgen":
        return xrd_pattern(structure, config)
    return xrd_pattern_fast(structure, config)


def _featurize_chunk(job: tuple[str, object, str, list[tuple[str, object]]]) -> list[Result]:
    """Worker: the features of one chunk of ``(material_id, source)`` (graph: ``(cif, symmetry)``;
    xrd: a CIF or a :class:`CellArrays`)."""
    kind, config, xrd_engine, records = job
    if kind == "graph":
        def work(source: tuple[str, bool]):
            cif, symmetry = source
            return graph_features(cif, config, symmetry=symmetry)
    else:
        work = partial(xrd_features, config=config, engine=xrd_engine)
    return apply_each(work, records, plain=(CifError, FeaturisationError))


# --------------------------------------------------------------------------- shard files


def _write_shard(path: Path, kind: str, results: list[tuple[str, object, str | None]]) -> None:
    ok, failures = split_results(results)
    arrays: dict[str, np.ndarray] = {}
    if kind == "graph":
        graphs: list[CrystalGraph] = [value[0] for _, value in ok]
        summaries = [value[1] for _, value in ok]
        cells: list[CellArrays] = [value[2] for _, value in ok]
        arrays |= {
            "lattice": np.array([c.lattice for c in cells], dtype=np.float64).reshape(-1, 3, 3),
            "frac_coords": _concat([c.frac_coords for c in cells], np.float64).reshape(-1, 3),
            "n_atoms": np.array([len(g.atomic_numbers) for g in graphs], dtype=np.int32),
            "n_edges": np.array([len(g.edge_src) for g in graphs], dtype=np.int32),
            "atomic_numbers": _concat([g.atomic_numbers for g in graphs], np.int16),
            "edge_src": _concat([g.edge_src for g in graphs], np.int16),
            "edge_dst": _concat([g.edge_dst for g in graphs], np.int16),
            "edge_distance": _concat([g.edge_distance for g in graphs], np.float32),
            "formula": np.array([s["formula"] for s in summaries], dtype=str),
            "elements": np.array([s["elements"] for s in summaries], dtype=str),
            "density": np.array([s["density"] for s in summaries], dtype=np.float32),
            "spacegroup_number": np.array(
                [s["spacegroup_number"] or 0 for s in summaries], dtype=np.int16
            ),
        }
    else:
        patterns = [value for _, value in ok]
        nonzero = [np.flatnonzero(p) for p in patterns]
        arrays |= {
            "indptr": np.concatenate([[0], np.cumsum([len(nz) for nz in nonzero])]).astype(np.int64),
            "bins": _concat(nonzero, np.int16),
            "values": _concat([p[nz] for p, nz in zip(patterns, nonzero)], np.float32),
        }
    save_npz_atomically(path, ok, failures, **arrays)


def _concat(parts: Sequence[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)


def shard_path(folder: Path, index: int) -> Path:
    """Path of shard ``index`` in a cache folder."""
    return folder / f"shard_{index:05d}.npz"


# --------------------------------------------------------------------------- driver


def featurize(
    dataset: Dataset,
    kind: str,
    config=None,
    shards: Iterable[int] | None = None,
    processes: int | None = None,
    progress: bool = True,
    xrd_engine: str = "fast",
) -> Path:
    """Compute the missing shards of ``kind`` features for ``dataset``; return the cache folder.

    Args:
        dataset: from :func:`ml.data.datasets.get_dataset`.
        kind: ``"graph"`` or ``"xrd"``.
        config: a :class:`GraphConfig` / :class:`XRDConfig` (defaults when ``None``).
        shards: shard indices to compute (all when ``None``).
        processes: worker processes (default: all cores); 1 runs in this process.
        progress: show a tqdm bar of materials.
        xrd_engine: ``"fast"`` (:mod:`ml.features.xrd_sim`) or ``"pymatgen"`` (the reference); both give
            the same patterns, so they share one cache.

    Raises:
        ValueError: unknown kind or engine.
    """
    if xrd_engine not in ("fast", "pymatgen"):
        raise ValueError(f"unknown XRD engine {xrd_engine!r}; expected 'fast' or 'pymatgen'")
    config = _config_for(kind, config)
    folder = cache_dir(dataset, kind, config)
    folder.mkdir(parents=True, exist_ok=True)
    n_shards = n_shards_for(len(dataset))
    wanted_shards = set(range(n_shards)) if shards is None else {s for s in shards if 0 <= s < n_shards}
    missing = {s for s in wanted_shards if not shard_path(folder, s).exists()}
    if not missing:
        return folder
    shard_by_id = {mid: s for mid in dataset.material_ids if (s := shard_of(mid, n_shards)) in missing}
    for s in missing - set(shard_by_id.values()):  # an empty shard is still a finished shard
        _write_shard(shard_path(folder, s), kind, [])
    if kind == "graph":
        known = _known_symmetry(dataset)
        records = ((mid, (cif, mid not in known)) for mid, cif in dataset.records(set(shard_by_id)))
    else:
        records = _xrd_sources(dataset, shard_by_id)
    compute_shards(records, shard_by_id, _featurize_chunk, (kind, config, xrd_engine),
                   lambda s, results: _write_shard(shard_path(folder, s), kind, results),
                   processes=processes or os.cpu_count() or 1, chunk_size=CHUNK_SIZE,
                   desc=f"{kind} features ({dataset.name})", progress=progress)
    return folder


def _known_symmetry(dataset: Dataset) -> set[str]:
    """Ids whose properties table has both density and space group (their graph entry skips them)."""
    table = dataset.properties
    if not {"density", "spacegroup_number"} <= set(table.columns):
        return set()
    known = table["density"].notna() & table["spacegroup_number"].notna()
    return set(table.index[known.to_numpy()])


def _xrd_sources(dataset: Dataset, shard_by_id: dict[str, int]) -> Iterator[tuple[str, str | CellArrays]]:
    """``(material_id, source)`` for every id of ``shard_by_id``: the cell the graph cache stored,
    else (graph shard not cached, graph failed, or a cache written before cells were stored) the CIF."""
    left = set(shard_by_id)
    for s in sorted(set(shard_by_id.values())):
        for material_id, cell in cached_cells(dataset, s):
            if material_id in left:
                left.discard(material_id)
                yield material_id, cell
    if left:
        yield from dataset.records(left)


def cached_cells(dataset: Dataset, shard: int, config: GraphConfig | None = None) -> Iterator[tuple[str, CellArrays]]:
    """``(material_id, CellArrays)`` of the materials of one graph shard (none when the shard is not
    cached, or was cached before the cells were stored)."""
    path = shard_path(cache_dir(dataset, "graph", config), shard)
    if not path.exists():
        return
    with np.load(path) as data:
        if "frac_coords" not in data.files:
            return
        ids, lattice, numbers, frac = (data[k] for k in ("material_ids", "lattice", "atomic_numbers", "frac_coords"))
        offsets = np.concatenate([[0], np.cumsum(data["n_atoms"])])
    for i, material_id in enumerate(ids):
        lo, hi = offsets[i], offsets[i + 1]
        yield str(material_id), CellArrays(lattice[i], numbers[lo:hi].astype(np.int64), frac[lo:hi])


# --------------------------------------------------------------------------- loading


@dataclass
class FeatureTable:
    """Concatenated shards of one kind.

    Attributes:
        material_ids: ``(n,)`` ids of the materials that featurised.
        arrays: per-kind arrays (graph: ``n_atoms``, ``atomic_numbers`` …; xrd: ``indptr`` …),
            concatenated over shards with offsets re-based.
        failures: ``[{"material_id", "reason"}]`` of the materials that did not.
    """

    material_ids: np.ndarray
    arrays: dict[str, np.ndarray]
    failures: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.material_ids)


def load_features(
    dataset: Dataset, kind: str, config=None, shards: Iterable[int] | None = None
) -> FeatureTable:
    """Load computed shards (all, or ``shards``) of ``kind`` for ``dataset``.

    Raises:
        FileNotFoundError: a requested shard has not been computed (run :func:`featurize`).
    """
    config = _config_for(kind, config)
    folder = cache_dir(dataset, kind, config)
    indices = range(n_shards_for(len(dataset))) if shards is None else sorted(shards)
    parts = []
    for s in indices:
        path = shard_path(folder, s)
        if not path.exists():
            raise FileNotFoundError(f"{kind} features of {dataset.name} shard {s} are not built yet: {path}")
        with np.load(path) as data:
            parts.append({k: data[k] for k in data.files})
    failures = [f for p in parts for f in read_failures(p)]
    ids = np.concatenate([p["material_ids"] for p in parts]) if parts else np.zeros(0, dtype=str)
    if kind == "graph":
        keys = ["n_atoms", "n_edges", "atomic_numbers", "edge_src", "edge_dst", "edge_distance",
                "formula", "elements", "density", "spacegroup_number"]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    else:
        values = np.concatenate([p["values"] for p in parts])
        bins = np.concatenate([p["bins"] for p in parts])
        offsets = np.cumsum([0] + [p["indptr"][-1] for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p["indptr"][1:] + o for p, o in zip(parts, offsets)])
        arrays = {"indptr": indptr.astype(np.int64), "bins": bins, "values": values}
    return FeatureTable(material_ids=ids, arrays=arrays, failures=failures)
