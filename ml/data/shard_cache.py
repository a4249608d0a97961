"""The one sharded, resumable cache of per-material results (features, descriptors, VAE classes).

A dataset's materials are split into shards; each shard's results go to files written
atomically (``<name><suffix>`` then a rename), so a folder only ever holds finished files and
an interrupted run resumes by skipping what is there. Three caches use it:
:mod:`ml.data.featurize` (one file per shard of :func:`shard_of`), :mod:`ml.descriptors.compute`
(part files per shard of :func:`shard_of`) and :mod:`ml.generation.voxel_data` (part files of
consecutive candidates). Each keeps its own file layout and decides what is already done;
this module assigns shards, runs the work (here or in a ``spawn`` pool with one BLAS thread per
worker), records a failing material with its reason instead of aborting, shows progress, and
hands each finished shard (or part) to the cache's writer.

A result is ``(material_id, value, None)`` or ``(material_id, None, reason)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing as mp
import os
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from tqdm.auto import tqdm

T = TypeVar("T")
R = TypeVar("R")
Result = tuple[str, Any, "str | None"]

#: Materials per shard of :func:`n_shards_for`.
SHARD_SIZE = 2000
#: The reason recorded for an id the dataset lists but its source does not hold.
NOT_FOUND = "not found in the dataset's source"


def shard_of(material_id: str, n_shards: int) -> int:
    """Shard index of a material: bytes 8–16 of SHA-256 of its id, modulo ``n_shards``.

    Independent of the split hash, so every shard is a random sample of the dataset."""
    digest = hashlib.sha256(material_id.encode("utf-8")).digest()
    return int.from_bytes(digest[8:16], "big") % n_shards


def n_shards_for(n_materials: int) -> int:
    """Number of shards for a dataset of ``n_materials`` (about :data:`SHARD_SIZE` materials each)."""
    return max(1, math.ceil(n_materials / SHARD_SIZE))


def ids_digest(material_ids: Iterable[str]) -> str:
    """12 hex digits of SHA-256 of the ids joined by newlines (in the order given): names a
    cache folder or part file after exactly the materials it covers."""
    return hashlib.sha256("\n".join(material_ids).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- workers


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


def apply_each(func: Callable[[Any], Any], records: Iterable[tuple[str, Any]],
               plain: tuple[type[BaseException], ...] = (), first_line: bool = False) -> list[Result]:
    """``func(item)`` for each ``(material_id, item)``, a failure kept as its reason.

    Args:
        func: the per-material work (module-level or a ``functools.partial`` of one, when it
            runs in workers).
        records: ``(material_id, item)`` pairs.
        plain: exception types whose message alone is the reason; any other ``Exception``
            becomes ``"<type name>: <message>"``. ``KeyboardInterrupt`` is never caught.
        first_line: keep only the first line of the message.

    Returns:
        ``(material_id, value, None)`` or ``(material_id, None, reason)`` per record, in order.
    """
    out: list[Result] = []
    for material_id, item in records:
        try:
            out.append((material_id, func(item), None))
        except Exception as exc:  # noqa: BLE001 — never abort a build on one structure; keep the reason
            message = str(exc)
            if first_line:
                message = message.strip().splitlines()[0] if message.strip() else ""
            out.append((material_id, None, message if isinstance(exc, plain) else f"{type(exc).__name__}: {message}"))
    return out


# --------------------------------------------------------------------------- files


def write_atomically(path: Path, write: Callable[[Path], None], suffix: str = ".part") -> None:
    """Call ``write(tmp)`` with ``tmp = <path><suffix>`` beside ``path``, then rename it to ``path``
    (a reader sees the old file or the whole new one)."""
    tmp = path.with_name(path.name + suffix)
    write(tmp)
    os.replace(tmp, path)


def split_results(results: Iterable[Result]) -> tuple[list[tuple[str, Any]], list[dict]]:
    """``([(material_id, value)], [{"material_id", "reason"}])`` of some results."""
    results = list(results)
    ok = [(mid, value) for mid, value, error in results if error is None]
    failures = [{"material_id": mid, "reason": error} for mid, _value, error in results if error is not None]
    return ok, failures


def save_npz_atomically(path: Path, ok: list[tuple[str, Any]], failures: list[dict], **arrays: np.ndarray) -> None:
    """Write ``material_ids`` (``(n,)`` str, the ids of ``ok``), ``failures_json`` (0-d str) and
    ``arrays`` as one ``.npz`` file, atomically (through ``<path>.part.npz``)."""
    ids = np.array([mid for mid, _ in ok], dtype=str)
    write_atomically(path, lambda tmp: np.savez(tmp, material_ids=ids, failures_json=np.array(json.dumps(failures)),
                                                **arrays), ".part.npz")


def read_failures(data: Mapping[str, np.ndarray]) -> list[dict]:
    """The ``[{"material_id", "reason"}]`` stored by :func:`save_npz_atomically` (an open ``.npz``)."""
    return json.loads(str(data["failures_json"]))


# --------------------------------------------------------------------------- the driver


def compute_shards(
    records: Iterable[tuple[str, Any]],
    shard_by_id: Mapping[str, int],
    worker: Callable[[tuple], list[Result]],
    job_args: tuple,
    write: Callable[[int, list[Result]], None],
    *,
    processes: int = 1,
    chunk_size: int = 50,
    part_size: int | None = None,
    missing_shard: int | None = None,
    missing_reason: str = NOT_FOUND,
    desc: str = "",
    unit: str = "mat",
    progress: bool = True,
) -> None:
    """Compute every material of ``shard_by_id`` and hand each shard's results to ``write``.

    Records are grouped by shard and sent shard after shard in chunks of ``chunk_size``, so
    shards complete one by one (a consumer can start on the first while the rest are computed).

    Args:
        records: ``(material_id, item)`` for the ids to compute (e.g. ``dataset.records(ids)``).
        shard_by_id: the shard (or part) of each id to compute.
        worker: module-level ``worker((*job_args, records_chunk))`` → results (see :func:`apply_each`).
        job_args: the leading entries of each job (the records are last).
        write: ``write(shard, results)``, called once a shard is complete, and also whenever
            ``part_size`` results of an unfinished shard are pending.
        processes: 1 runs here; more run in a ``spawn`` pool (:func:`map_chunks`).
        part_size: most results held per shard before ``write`` (``None``: whole shards).
        missing_shard: where the ids absent from ``records`` are written, as one sorted part
            (``None``: with their own shard's results).
        missing_reason: the failure reason of those ids.
        desc, unit, progress: the tqdm bar of materials (with a count of failures).

    Raises:
        Whatever ``worker`` does not catch (``KeyboardInterrupt``); finished shards stay written.
    """
    remaining = Counter(shard_by_id.values())
    pending: dict[int, list[Result]] = defaultdict(list)
    seen: set[str] = set()
    bar = tqdm(total=len(shard_by_id), desc=desc, unit=unit, disable=not progress)
    failed = 0
    for results in map_chunks(worker, _jobs(records, shard_by_id, job_args, chunk_size), processes):
        for result in results:
            s = shard_by_id[result[0]]
            pending[s].append(result)
            seen.add(result[0])
            failed += result[2] is not None
            remaining[s] -= 1
            if remaining[s] == 0 or (part_size is not None and len(pending[s]) >= part_size):
                write(s, pending.pop(s))
        bar.update(len(results))
        bar.set_postfix(failed=failed)
    bar.close()
    _write_missing([mid for mid in shard_by_id if mid not in seen], shard_by_id, pending, write, missing_shard,
                   missing_reason)


def _jobs(records: Iterable[tuple[str, Any]], shard_by_id: Mapping[str, int], job_args: tuple,
          chunk_size: int) -> Iterator[tuple]:
    """``(*job_args, chunk)`` of the records grouped by shard, shard after shard."""
    by_shard: dict[int, list[tuple[str, Any]]] = defaultdict(list)
    for material_id, item in records:
        by_shard[shard_by_id[material_id]].append((material_id, item))
    for s in sorted(by_shard):
        chunk = by_shard.pop(s)
        for start in range(0, len(chunk), chunk_size):
            yield (*job_args, chunk[start : start + chunk_size])


def _write_missing(lost: Collection[str], shard_by_id: Mapping[str, int], pending: dict[int, list[Result]],
                   write: Callable[[int, list[Result]], None], missing_shard: int | None, reason: str) -> None:
    """Record the ids no record came for, and write the shards they held open."""
    if missing_shard is None:
        for mid in lost:
            pending[shard_by_id[mid]].append((mid, None, reason))
    for s in sorted(pending):
        if pending[s]:
            write(s, pending[s])
    if missing_shard is not None and lost:
        write(missing_shard, [(mid, None, reason) for mid in sorted(lost)])
