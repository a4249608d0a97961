"""Deterministic train / validation / test split by a hash of ``material_id``.

A material's split depends on its id alone (SHA-256 of the UTF-8 id, first 8 bytes read as a
fraction of 2**64), so it never changes when a dataset grows or is filtered.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np

SPLIT_FRACTIONS = {"train": 0.90, "val": 0.05, "test": 0.05}
SPLITS = tuple(SPLIT_FRACTIONS)


def hash_fraction(material_id: str) -> float:
    """A number in [0, 1) fixed by ``material_id`` alone."""
    digest = hashlib.sha256(material_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(material_id: str) -> str:
    """``"train"``, ``"val"`` or ``"test"`` for one material (90 / 5 / 5)."""
    h = hash_fraction(material_id)
    if h < SPLIT_FRACTIONS["train"]:
        return "train"
    if h < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["val"]:
        return "val"
    return "test"


def assign_splits(material_ids: Iterable[str]) -> np.ndarray:
    """Split names for many materials, shape ``(n,)``, dtype ``<U5``."""
    return np.array([split_of(m) for m in material_ids], dtype="<U5")
