"""Deterministic train / val / test split by hash of material_id."""

from __future__ import annotations

import hashlib

import numpy as np

from ml.data.splits import SPLIT_FRACTIONS, assign_splits, hash_fraction, split_of


def reference_split(material_id: str) -> str:
    """The documented rule, written out: SHA-256, first 8 bytes big-endian / 2**64; 90/5/5."""
    value = int(hashlib.sha256(material_id.encode("utf-8")).hexdigest()[:16], 16) / 2**64
    return "train" if value < 0.90 else "val" if value < 0.95 else "test"


def test_split_fractions_are_90_5_5():
    assert SPLIT_FRACTIONS == {"train": 0.90, "val": 0.05, "test": 0.05}


def test_known_ids_match_the_documented_hash():
    ids = ["mp-22526", "mp-22601", "mp-541449", "mp-1200096", "mp-149", "user/été.cif"]
    assert [split_of(m) for m in ids] == [reference_split(m) for m in ids]
    assert list(assign_splits(ids)) == [reference_split(m) for m in ids]
    for m in ids:
        assert 0.0 <= hash_fraction(m) < 1.0


def test_every_split_occurs_and_matches_the_reference_on_many_ids():
    ids = [f"mp-{i}" for i in range(20_000)]
    splits = assign_splits(ids)
    assert splits.shape == (20_000,)
    sample = ids[::997]
    assert [str(s) for s in splits[::997]] == [reference_split(m) for m in sample]
    counts = {name: int((splits == name).sum()) for name in ("train", "val", "test")}
    assert sum(counts.values()) == 20_000
    # binomial standard deviation of the val share on 20k ids is 0.0015
    assert abs(counts["train"] / 20_000 - 0.90) < 0.01
    assert abs(counts["val"] / 20_000 - 0.05) < 0.006
    assert abs(counts["test"] / 20_000 - 0.05) < 0.006


def test_adding_or_reordering_ids_does_not_move_existing_ones():
    ids = [f"mp-{i}" for i in range(2_000)]
    before = dict(zip(ids, assign_splits(ids)))
    grown = [f"mvc-{i}" for i in range(500)] + ids[::-1] + [f"user-{i}" for i in range(500)]
    after = dict(zip(grown, assign_splits(grown)))
    assert all(after[m] == before[m] for m in ids)


def test_empty_input():
    out = assign_splits([])
    assert out.shape == (0,) and out.dtype == np.dtype("<U5")
