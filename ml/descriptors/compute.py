"""Baseline crystal descriptors, computed and queried like the learned map (matmap issue 5): the
cache, its computation, loading and exact neighbours.

Does the CMML map capture materials concepts better than established descriptors? Each
descriptor of :data:`ml.descriptors.registry.DESCRIPTORS` turns a crystal into one vector; neighbours are exact
nearest neighbours under the metric its authors use (Euclidean for all five, see each spec).

Cache: ``data/cache/descriptors/<dataset>/<name>-<config hash>-<ids digest>/``, one or more
``shard_<s>-<ids hash>.npz`` per shard of :func:`ml.data.shard_cache.shard_of` (so a run on a sample,
then on ``mp2024-icsd``, then on everything, never recomputes a material), and a
``manifest.json`` recording what the cache covers. Failures are kept with their reason.
For the app, :func:`ml.descriptors.export.export_descriptor` writes a torch-free copy to
``data/artifacts/<dataset>/descriptors/<name>/`` read by ``MapArtifacts.descriptor_neighbors``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data.datasets import Dataset, get_dataset
from ml.data.shard_cache import (
    apply_each, compute_shards, ids_digest, n_shards_for, read_failures, save_npz_atomically, shard_of, split_results,
    write_atomically,
)
from ml.descriptors.ids import icsd_ids
from ml.descriptors.registry import DESCRIPTORS, DescriptorSpec, get_spec
from ml.mapping.artifacts import MapArtifacts
from ml.mapping.format import UnknownMaterialError
from ml.mapping.knn import ExactL2Index
from ml.settings import get_settings

log = logging.getLogger(__name__)

#: Materials sent to a worker at a time, and the most results held before a part file is written.
CHUNK_SIZE = 10
PART_SIZE = 200


# --------------------------------------------------------------------------- cache


def cache_folder(dataset: Dataset, spec: DescriptorSpec) -> Path:
    """Cache folder of one descriptor of ``dataset``."""
    return get_settings().cache_dir / "descriptors" / dataset.name / f"{spec.key()}-{ids_digest(dataset.material_ids)}"


def _part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("shard_*.npz") if not p.name.endswith(".part.npz"))


def _write_part(folder: Path, shard: int, dim: int, results: list[tuple[str, np.ndarray | None, str | None]]) -> None:
    """Write one part file of a shard atomically (name: shard and hash of its ids)."""
    ok, failures = split_results(results)
    path = folder / f"shard_{shard:05d}-{ids_digest(sorted(mid for mid, _, _ in results))}.npz"
    values = np.stack([v for _, v in ok]).astype(np.float32) if ok else np.zeros((0, dim), np.float32)
    save_npz_atomically(path, ok, failures, values=values)


def _read_parts(folder: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    ids, values, failures = [], [], []
    for path in _part_files(folder):
        with np.load(path) as data:
            ids.append(data["material_ids"])
            values.append(data["values"])
            failures.extend(read_failures(data))
    if not ids:
        return np.zeros(0, dtype=str), np.zeros((0, 0), np.float32), []
    # two runs sharing a cache (e.g. two processes on parts of a sample) may both have done a material
    ids_all, first = np.unique(np.concatenate(ids), return_index=True)
    done = set(ids_all.tolist())
    failures = [f for f in {f["material_id"]: f for f in failures}.values() if f["material_id"] not in done]
    return ids_all, np.concatenate(values).astype(np.float32)[first], failures


def _done_ids(folder: Path) -> set[str]:
    done: set[str] = set()
    for path in _part_files(folder):
        with np.load(path) as data:
            done.update(data["material_ids"].tolist())
            done.update(f["material_id"] for f in read_failures(data))
    return done


def _describe(name: str, cif: str) -> np.ndarray:
    """The ``(dim,)`` float32 vector of descriptor ``name`` for one CIF.

    Raises:
        ValueError: a vector of the wrong shape or not finite; whatever parsing or the
        featuriser raise.
    """
    from ml.data.structures import parse_cif

    spec = DESCRIPTORS[name]
    value = np.asarray(spec.featurize(parse_cif(cif)), dtype=np.float32)
    if value.shape != (spec.dim,) or not np.isfinite(value).all():
        raise ValueError(f"bad {name} vector: shape {value.shape}, finite {np.isfinite(value).all()}")
    return value


def _describe_chunk(job: tuple[str, list[tuple[str, str]]]) -> list[tuple[str, np.ndarray | None, str | None]]:
    """Worker: ``(material_id, vector, None)`` or ``(material_id, None, "<type>: <first line>")`` per record."""
    name, records = job
    return apply_each(partial(_describe, name), records, first_line=True)


def _coverage_label(dataset: Dataset, done: set[str], runs: list[dict]) -> str:
    """Which set a cache covers: the dataset, ``mp2024-icsd``, or the id sets of its runs
    (``partial`` for a run that was interrupted)."""
    if len(done) == len(dataset):
        return dataset.name
    if dataset.name == "mp2024":
        icsd = set(icsd_ids())
        if icsd <= done:
            return "mp2024-icsd" if len(done) == len(icsd) else "mp2024-icsd plus others"
    labels: dict[str, bool] = {}
    for run in runs:
        labels[run["ids"]] = labels.get(run["ids"], False) or "finished" in run
    # concept samples of one seed are nested (concept_sample_ids): a finished larger one says it all
    largest: dict[int, int] = {}
    for run in runs:
        concepts = run.get("concept_sample")
        if concepts and "finished" in run:
            largest[concepts["seed"]] = max(largest.get(concepts["seed"], 0), concepts["per_class"])
    hidden = {run["ids"] for run in runs
              if (concepts := run.get("concept_sample")) and concepts["per_class"] < largest.get(concepts["seed"], 0)}
    return "; ".join(label if finished else f"partial: {label}"
                     for label, finished in labels.items() if label not in hidden) or "none"


def _cache_manifest(dataset: Dataset, spec: DescriptorSpec) -> dict:
    path = cache_folder(dataset, spec) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _now() -> str:
    """Local time to the microsecond: a run's start also identifies it in the manifest."""
    return datetime.now().isoformat(timespec="microseconds")


def _write_manifest(folder: Path, dataset: Dataset, spec: DescriptorSpec, request: dict | None = None) -> dict:
    """(Re)write ``manifest.json`` of a cache from its part files; ``request`` (a run: id-set
    label, counts, start and — once done — finish time) is added or updated by its start time."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    if request is not None:
        runs = [run for run in manifest["runs"] if run.get("started") != request["started"]]
        manifest["runs"] = [*runs, request]
    ids, _values, failures = _read_parts(folder)
    done = set(ids.tolist()) | {f["material_id"] for f in failures}
    manifest.update(
        name=spec.name, label=spec.label, citation=spec.citation, metric=spec.metric, dim=spec.dim,
        config=spec.config, dataset=dataset.name, n_dataset=len(dataset), n_materials=len(ids),
        n_failures=len(failures), coverage=_coverage_label(dataset, done, manifest["runs"]),
    )
    write_atomically(path, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)), ".tmp")
    return manifest


#: Cores the "whole dataset" estimate of :func:`cost_estimate` assumes (the project's machine).
ESTIMATE_CORES = 2


def cost_estimate(dataset: str | Dataset, name: str, cores: int = ESTIMATE_CORES, min_run: int = 50) -> dict:
    """What ``name`` costs per structure and what computing it for all of ``dataset`` would take.

    The rate comes from the largest finished run of at least ``min_run`` materials in the cache
    manifest (wall seconds × worker processes / materials computed: seconds of one core per
    structure, parsing included), else from the spec's :attr:`DescriptorSpec.seconds_per_structure`.

    Returns:
        ``{"seconds_per_structure", "source", "whole_dataset_hours", "cores"}``; the first and
        third are ``None`` when nothing is known (``cmml``: read from the map).

    Raises:
        ValueError: unknown descriptor.
    """
    spec = get_spec(name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    runs = [run for run in _cache_manifest(dataset, spec).get("runs", [])
            if run.get("seconds") and run.get("processes") and run.get("n_todo", 0) >= min_run]
    if runs:
        run = max(runs, key=lambda r: r["n_todo"])
        rate = run["seconds"] * run["processes"] / run["n_todo"]
        source = f"measured: {run['n_todo']:,} materials, {run['processes']} processes, {run['seconds']:.0f} s"
    elif spec.seconds_per_structure is not None:
        rate, source = spec.seconds_per_structure, "registry (measured on the 2-core machine, see DescriptorSpec)"
    else:
        return {"seconds_per_structure": None, "source": "read from the built map", "whole_dataset_hours": None,
                "cores": cores}
    return {"seconds_per_structure": round(rate, 4), "source": source,
            "whole_dataset_hours": round(len(dataset) * rate / cores / 3600, 2), "cores": cores}


def compute_descriptor(
    dataset: str | Dataset,
    name: str,
    processes: int = 1,
    ids: Collection[str] | None = None,
    progress: bool = True,
    ids_label: str | None = None,
    concept_sample: dict | None = None,
) -> Path:
    """Compute the missing vectors of descriptor ``name`` for ``dataset``; return the cache folder.

    Resumable: materials already in the cache (computed or failed) are skipped; results are
    written per shard in part files of at most :data:`PART_SIZE` materials.

    Args:
        dataset: registry name (``"mp2024"``) or a :class:`~ml.data.datasets.Dataset`.
        name: a key of :data:`DESCRIPTORS`. For ``cmml`` nothing is computed: the built map is
            the source; its folder is returned.
        processes: worker processes (spawn, one BLAS thread each); 1 runs here.
        ids: materials to compute (all of the dataset when ``None``).
        progress: tqdm bar of materials.
        ids_label: how ``ids`` were chosen, recorded in the cache manifest.
        concept_sample: ``{"per_class", "seed"}`` when ``ids`` are :func:`concept_sample_ids`
            (recorded too: a cache then names only the largest of one seed's nested samples).

    Raises:
        ValueError: unknown descriptor, or ``ids`` not in the dataset.
        ml.mapping.format.ArtifactError: ``cmml`` without a built map.
    """
    spec = get_spec(name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if spec.featurize is None:
        return MapArtifacts.load(dataset.name).folder
    known = set(dataset.material_ids)
    wanted = known if ids is None else set(ids)
    unknown = wanted - known
    if unknown:
        raise ValueError(f"{len(unknown)} ids are not in {dataset.name}, e.g. {sorted(unknown)[:3]}")
    folder = cache_folder(dataset, spec)
    folder.mkdir(parents=True, exist_ok=True)
    todo = wanted - _done_ids(folder)
    request = {"ids": ids_label or ("all" if ids is None else f"{len(wanted)} given ids"),
               "n_requested": len(wanted), "n_todo": len(todo), "processes": processes,
               "started": _now()}
    if concept_sample is not None:
        request["concept_sample"] = {"per_class": int(concept_sample["per_class"]), "seed": int(concept_sample["seed"])}
    began = time.perf_counter()
    log.info("%s on %s: %d requested, %d to compute", name, dataset.name, len(wanted), len(todo))
    _write_manifest(folder, dataset, spec, request)  # an interrupted run stays listed, unfinished
    if todo:
        n_shards = n_shards_for(len(dataset))
        shard_by_id = {mid: shard_of(mid, n_shards) for mid in sorted(todo)}
        # ids listed in the dataset but absent from its source go to shard 0, in one part
        compute_shards(dataset.records(todo), shard_by_id, _describe_chunk, (name,),
                       lambda s, results: _write_part(folder, s, spec.dim, results), processes=processes,
                       chunk_size=CHUNK_SIZE, part_size=PART_SIZE, missing_shard=0,
                       desc=f"{name} ({dataset.name})", progress=progress)
    request |= {"finished": _now(), "seconds": round(time.perf_counter() - began, 1)}
    _write_manifest(folder, dataset, spec, request)
    return folder


# --------------------------------------------------------------------------- loading and queries


@dataclass
class DescriptorTable:
    """The computed vectors of one descriptor.

    Attributes:
        name: descriptor name.
        material_ids: ``(n,)`` ids, sorted.
        values: ``(n, d)`` float32.
        metric: ``"euclidean"``.
        coverage: which set the vectors cover (``mp2024``, ``mp2024-icsd``, ``sample`` …).
        failures: ``[{"material_id", "reason"}]``.
    """

    name: str
    material_ids: np.ndarray
    values: np.ndarray
    metric: str = "euclidean"
    coverage: str = ""
    failures: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or len(self.values) != len(self.material_ids):
            raise ValueError(f"values {self.values.shape} do not match {len(self.material_ids)} ids")

    def __len__(self) -> int:
        return len(self.material_ids)

    def __contains__(self, material_id: str) -> bool:
        return material_id in self._row_of

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.material_ids.tolist())}

    @cached_property
    def _index(self) -> ExactL2Index:
        return ExactL2Index.build(self.values)

    def restrict(self, material_ids: Collection[str]) -> DescriptorTable:
        """The rows of the materials in ``material_ids`` (those not covered are ignored)."""
        keep = np.isin(self.material_ids, np.asarray(list(material_ids), dtype=str))
        return DescriptorTable(self.name, self.material_ids[keep], self.values[keep], self.metric,
                               f"{self.coverage} ∩ {len(material_ids)} given ids")

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact Euclidean ``k`` nearest rows of ``vectors`` ``(m, d)``: ``(distances, rows)``, each ``(m, k)``."""
        return self._index.search(vectors, k)

    def neighbors(self, material_id: str, k: int = 50) -> pd.DataFrame:
        """The ``k`` nearest other materials: columns ``rank`` (from 1), ``material_id``, ``distance``.

        Raises:
            UnknownMaterialError: the material is not covered by this table.
        """
        if material_id not in self:
            raise UnknownMaterialError(
                f"{material_id!r} is not covered by descriptor {self.name!r} ({self.coverage}, {len(self)} materials)"
            )
        distance, rows = self._index.neighbors_of_row(self._row_of[material_id], self.values, k)
        return pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "material_id": self.material_ids[rows],
                             "distance": distance.astype(np.float64)})


def load_descriptor(dataset: str | Dataset, name: str) -> DescriptorTable:
    """The computed vectors of ``name`` for ``dataset`` (``cmml``: the built map's embeddings).

    Raises:
        ValueError: unknown descriptor. FileNotFoundError: nothing computed yet (the message
        gives the command). ml.mapping.format.ArtifactError: ``cmml`` without a built map.
    """
    spec = get_spec(name)
    dataset_name = dataset if isinstance(dataset, str) else dataset.name
    if spec.featurize is None:
        artifacts = MapArtifacts.load(dataset_name)
        return DescriptorTable(name, artifacts.materials["material_id"].to_numpy().astype(str),
                               np.asarray(artifacts.embeddings, dtype=np.float32), spec.metric, dataset_name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    folder = cache_folder(dataset, spec)
    ids, values, failures = _read_parts(folder) if folder.is_dir() else (np.zeros(0, str), None, [])
    if len(ids) == 0:
        raise FileNotFoundError(
            f"descriptor {name!r} of {dataset.name} is not computed yet ({folder}); run: "
            f"python -m ml descriptors --dataset {dataset.name} --name {name}"
        )
    order = np.argsort(ids)
    coverage = _cache_manifest(dataset, spec).get("coverage", "")
    return DescriptorTable(name, ids[order], values[order], spec.metric, coverage, failures)


def descriptor_neighbors(
    dataset: str | Dataset, name: str, material_id: str, k: int = 50, within: Collection[str] | None = None
) -> pd.DataFrame:
    """The ``k`` nearest materials to ``material_id`` under descriptor ``name``.

    Candidates are the materials the descriptor covers (its manifest says which set), or
    only those also in ``within``. Loads the table on each call; for many queries use
    ``load_descriptor(...).neighbors(...)``.

    Returns:
        Columns ``rank`` (from 1), ``material_id``, ``distance`` (descriptor units); the query
        itself is left out.

    Raises:
        UnknownMaterialError: the material is not covered. ValueError / FileNotFoundError: see
        :func:`load_descriptor`.
    """
    table = load_descriptor(dataset, name)
    if within is not None:
        table = table.restrict(set(within) | {material_id})
    return table.neighbors(material_id, k)


