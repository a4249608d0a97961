"""The shared sharded cache: stable shard assignment, failures kept, resume computes nothing twice."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ml.data import shard_cache
from ml.data.shard_cache import (
    NOT_FOUND, apply_each, compute_shards, ids_digest, init_worker, n_shards_for, read_failures, save_npz_atomically,
    shard_of, split_results,
)


def test_shard_assignment_is_pinned():
    """The full-data caches (hours of compute) were built with these shards: they must not move."""
    assert [shard_of(m, 71) for m in ["mp-1", "mp-149", "mp-22862", "mp-1143", "mp-2534"]] == [67, 54, 35, 54, 38]
    assert [shard_of(m, 4) for m in ["mp-1", "mp-149", "mp-22862", "mp-1143", "mp-2534"]] == [3, 0, 2, 1, 0]
    assert [n_shards_for(n) for n in (0, 1, 2000, 2001, 141_999)] == [1, 1, 1, 2, 71]
    assert ids_digest(["mp-1", "mp-149"]) == "efd1cafa6443"  # the folder suffix of a cache


def _square(x: int) -> int:
    if x < 0:
        raise ValueError("negative\nsecond line")
    if x == 0:
        raise ZeroDivisionError("zero")
    return x * x


def _square_chunk(job):
    (records,) = job
    return apply_each(_square, records, plain=(ZeroDivisionError,))


def test_apply_each_keeps_a_failure_with_its_reason():
    results = apply_each(_square, [("a", 2), ("b", -1), ("c", 0), ("d", 3)], plain=(ZeroDivisionError,))
    assert results == [("a", 4, None), ("b", None, "ValueError: negative\nsecond line"), ("c", None, "zero"),
                       ("d", 9, None)]
    first = apply_each(_square, [("b", -1)], first_line=True)
    assert first == [("b", None, "ValueError: negative")]
    ok, failures = split_results(results)
    assert ok == [("a", 4), ("d", 9)] and [f["material_id"] for f in failures] == ["b", "c"]


def test_a_keyboard_interrupt_is_not_a_failure():
    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        apply_each(stop, [("a", 1)])


class _Cache:
    """A minimal cache on the driver: one ``.npz`` per shard; a shard is done when its file exists."""

    def __init__(self, folder, ids, n_shards):
        self.folder, self.ids, self.n_shards = folder, ids, n_shards
        self.computed: list[str] = []

    def path(self, s):
        return self.folder / f"shard_{s:05d}.npz"

    def write(self, s, results):
        ok, failures = split_results(results)
        save_npz_atomically(self.path(s), ok, failures, values=np.array([v for _, v in ok], dtype=np.int64))

    def run(self, source: dict[str, int]):
        shard_by_id = {m: s for m in self.ids if not self.path(s := shard_of(m, self.n_shards)).exists()}
        records = [(m, source[m]) for m in shard_by_id if m in source]
        self.computed += [m for m, _ in records]
        compute_shards(records, shard_by_id, _square_chunk, (), self.write, chunk_size=2, progress=False)

    def load(self):
        ids, values, failures = [], [], []
        for s in range(self.n_shards):
            with np.load(self.path(s)) as data:
                ids += data["material_ids"].tolist()
                values += data["values"].tolist()
                failures += read_failures(data)
        return dict(zip(ids, values)), {f["material_id"]: f["reason"] for f in failures}


def test_shards_are_written_failures_recorded_and_a_second_run_computes_nothing(tmp_path):
    source = {f"mp-{i}": i - 3 for i in range(12)}  # -3 … 8: three negatives fail, one zero
    source.pop("mp-7")  # listed, but the source does not hold it
    cache = _Cache(tmp_path, [f"mp-{i}" for i in range(12)], n_shards=3)
    cache.run(source)
    values, failures = cache.load()
    assert values == {m: v * v for m, v in source.items() if v > 0}
    assert failures == {"mp-0": "ValueError: negative\nsecond line", "mp-1": "ValueError: negative\nsecond line",
                        "mp-2": "ValueError: negative\nsecond line", "mp-3": "zero", "mp-7": NOT_FOUND}
    # the missing id is recorded in its own shard
    with np.load(cache.path(shard_of("mp-7", 3))) as data:
        assert "mp-7" in {f["material_id"] for f in read_failures(data)}
    assert not list(tmp_path.glob("*.part*"))

    mtimes = {s: cache.path(s).stat().st_mtime_ns for s in range(3)}
    cache.computed.clear()
    cache.run(source)
    assert cache.computed == []
    assert {s: cache.path(s).stat().st_mtime_ns for s in range(3)} == mtimes

    victim = shard_of("mp-8", 3)
    cache.path(victim).unlink()
    cache.run(source)
    assert sorted(cache.computed) == sorted(m for m in source if shard_of(m, 3) == victim)
    assert cache.load() == (values, failures)


def test_part_size_and_missing_shard(tmp_path):
    writes: list[tuple[int, list]] = []
    shard_by_id = {"a": 1, "b": 1, "c": 1, "d": 2, "e": 2}
    records = [("a", 1), ("b", 2), ("c", 3), ("d", 4)]  # e is missing
    compute_shards(records, shard_by_id, _square_chunk, (), lambda s, r: writes.append((s, r)), part_size=2,
                   missing_shard=0, missing_reason="gone", progress=False)
    assert writes == [(1, [("a", 1, None), ("b", 4, None)]), (1, [("c", 9, None)]), (2, [("d", 16, None)]),
                      (0, [("e", None, "gone")])]


def test_an_interrupted_run_keeps_its_finished_shards(tmp_path):
    written: list[int] = []

    def worker(job):
        (records,) = job
        if any(m == "z" for m, _ in records):
            raise KeyboardInterrupt
        return apply_each(_square, records)

    with pytest.raises(KeyboardInterrupt):
        compute_shards([("a", 1), ("z", 2)], {"a": 0, "z": 1}, worker, (), lambda s, r: written.append(s),
                       chunk_size=1, progress=False)
    assert written == [0]


def test_workers_run_one_blas_thread(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    limits: list[int] = []
    monkeypatch.setattr(threadpoolctl, "threadpool_limits", limits.append)  # not this test process's BLAS
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    init_worker()
    assert os.environ["OMP_NUM_THREADS"] == "1" and limits == [1]
    assert list(shard_cache.map_chunks(_square_chunk, [([("a", 3)],)], processes=1)) == [[("a", 9, None)]]
