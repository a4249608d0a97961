"""Parallel, cached, resumable featurisation of a dataset into on-disk shards.

Each material goes into one of ``n_shards`` shards chosen by a hash of its id (independent of
the split hash), so every shard is a random sample of the dataset and a training run on a
budget can use the first few shards. A shard is written atomically once all its materials
are done; an interrupted run resumes at the missing shards. The cache folder is
``data/cache/features/<dataset>/<featuriser key>-<ids digest>/``: a changed featuriser
configuration or a changed id list never reuses a stale cache.

Kinds:
- ``graph``: crystal graphs (:func:`ml.features.graph.crystal_graph`) plus a structure summary
  (reduced formula, density, spglib space group, elements);
- ``xrd``: binned XRD patterns (:func:`ml.features.xrd.xrd_pattern`), stored sparse.

A structure that fails to parse or featurise is recorded with its reason in the shard
(``failures``) and skipped; it never aborts the build.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import multiprocessing as mp
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm.auto import tqdm

from ml.data.datasets import Dataset
from ml.features.errors import FeaturisationError
from ml.features.graph import CrystalGraph, GraphConfig, crystal_graph
from ml.settings import get_settings
from ml.data.structures import CifError, parse_cif, structure_summary
from ml.features.xrd import XRDConfig, xrd_pattern
from ml.features.xrd_sim import xrd_pattern_fast

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

SHARD_SIZE = 2000
CHUNK_SIZE = 50
KINDS = ("graph", "xrd")


def shard_of(material_id: str, n_shards: int) -> int:
    """Shard index of a material: bytes 8–16 of SHA-256 of its id, modulo ``n_shards``."""
    digest = hashlib.sha256(material_id.encode("utf-8")).digest()
    return int.from_bytes(digest[8:16], "big") % n_shards


def n_shards_for(n_materials: int) -> int:
    """Number of shards for a dataset of ``n_materials`` (about 2,000 materials each)."""
    return max(1, math.ceil(n_materials / SHARD_SIZE))


def _config_for(kind: str, config=None):
    if kind == "graph":
        return config or GraphConfig()
    if kind == "xrd":
        return config or XRDConfig()
    raise ValueError(f"unknown feature kind {kind!r}; expected one of {KINDS}")


def cache_dir(dataset: Dataset, kind: str, config=None) -> Path:
    """Folder of a dataset's shards for one featuriser configuration."""
    config = _config_for(kind, config)
    ids_digest = hashlib.sha256("\n".join(dataset.material_ids).encode()).hexdigest()[:12]
    return get_settings().cache_dir / "features" / dataset.name / f"{config.key()}-{ids_digest}"


# --------------------------------------------------------------------------- worker side


def init_worker() -> None:
    """One BLAS / torch thread per worker process, or 2 workers run no faster than 1."""
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # threadpoolctl comes with scikit-learn; absent is only slower
        pass


def map_chunks(func: Callable[[T], R], jobs: Iterable[T], processes: int) -> Iterator[R]:
    """``func(job)`` for each job: in this process when ``processes == 1``, else in a ``spawn``
    pool of ``processes`` workers with one BLAS thread each (results in completion order).

    ``func`` must be a module-level function (pickled by name for the workers)."""
    if processes == 1:
        for job in jobs:
            yield func(job)
        return
    with mp.get_context("spawn").Pool(processes, initializer=init_worker) as pool:
        yield from pool.imap_unordered(func, jobs)


def featurize_cif(kind: str, config, cif: str, engine: str = "fast"):
    """Features of one CIF: ``(CrystalGraph, summary dict)`` for ``graph``, a pattern for ``xrd``.

    XRD patterns come from our batched simulator (:mod:`ml.features.xrd_sim`, identical to pymatgen's
    ``XRDCalculator`` to float precision, ~30× faster) unless ``engine="pymatgen"``.

    Raises:
        CifError, FeaturisationError: the text holds no usable structure.
    """
    structure = parse_cif(cif)
    if kind == "graph":
        return crystal_graph(structure, config), structure_summary(structure)
    if not structure.is_ordered:
        raise FeaturisationError("disordered structure (partial occupancies) is not supported")
    if engine == "pymatgen":
        return xrd_pattern(structure, config)
    return xrd_pattern_fast(structure, config)


def _featurize_chunk(job: tuple[str, object, str, list[tuple[str, str]]]) -> list[tuple[str, object, str | None]]:
    kind, config, xrd_engine, records = job
    out = []
    for material_id, cif in records:
        try:
            out.append((material_id, featurize_cif(kind, config, cif, xrd_engine), None))
        except (CifError, FeaturisationError) as exc:
            out.append((material_id, None, str(exc)))
        except Exception as exc:  # never abort a build on one structure; keep the reason
            out.append((material_id, None, f"{type(exc).__name__}: {exc}"))
    return out


# --------------------------------------------------------------------------- shard files


def _write_shard(path: Path, kind: str, results: list[tuple[str, object, str | None]]) -> None:
    ok = [(mid, value) for mid, value, error in results if error is None]
    failures = [{"material_id": mid, "reason": error} for mid, _value, error in results if error is not None]
    arrays: dict[str, np.ndarray] = {
        "material_ids": np.array([mid for mid, _ in ok], dtype=str),
        "failures_json": np.array(json.dumps(failures)),
    }
    if kind == "graph":
        graphs: list[CrystalGraph] = [value[0] for _, value in ok]
        summaries = [value[1] for _, value in ok]
        arrays |= {
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
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


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
    members: dict[int, list[str]] = defaultdict(list)
    for mid in dataset.material_ids:
        s = shard_of(mid, n_shards)
        if s in missing:
            members[s].append(mid)
    for s in missing - set(members):  # an empty shard is still a finished shard
        _write_shard(shard_path(folder, s), kind, [])
    wanted_ids = {mid for ids in members.values() for mid in ids}
    shard_by_id = {mid: s for s, ids in members.items() for mid in ids}
    remaining = {s: len(ids) for s, ids in members.items()}
    results: dict[int, list] = defaultdict(list)

    # Records are grouped by shard and sent shard after shard, so shards complete one by one
    # (a consumer can start on the first shards while the rest are computed).
    by_shard: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for material_id, cif in dataset.records(wanted_ids):
        by_shard[shard_by_id[material_id]].append((material_id, cif))

    def jobs():
        for s in sorted(by_shard):
            records = by_shard.pop(s)
            for start in range(0, len(records), CHUNK_SIZE):
                yield (kind, config, xrd_engine, records[start : start + CHUNK_SIZE])

    processes = processes or os.cpu_count() or 1
    bar = tqdm(total=len(wanted_ids), desc=f"{kind} features ({dataset.name})", unit="mat", disable=not progress)
    seen: set[str] = set()

    def collect(chunk_results) -> None:
        for mid, value, error in chunk_results:
            s = shard_by_id[mid]
            results[s].append((mid, value, error))
            seen.add(mid)
            remaining[s] -= 1
            if remaining[s] == 0:
                _write_shard(shard_path(folder, s), kind, results.pop(s))
        bar.update(len(chunk_results))

    for chunk_results in map_chunks(_featurize_chunk, jobs(), processes):
        collect(chunk_results)
    bar.close()
    # ids listed in the dataset but absent from its source: record them as failures
    for mid in wanted_ids - seen:
        s = shard_by_id[mid]
        results[s].append((mid, None, "not found in the dataset's source"))
        remaining[s] -= 1
        if remaining[s] == 0:
            _write_shard(shard_path(folder, s), kind, results.pop(s))
    return folder


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
    failures = [f for p in parts for f in json.loads(str(p["failures_json"]))]
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
