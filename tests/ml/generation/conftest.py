"""The ``store`` fixture of the generation tests: the six hand-built crystals of
``tests/ml/voxel_store.py`` voxelised on a 16³ grid."""

from __future__ import annotations

import pytest

from voxel_store import six_crystal_store


@pytest.fixture(scope="module")
def store():
    """(VoxelArrays, selection table, id → true structure) of the six crystals."""
    return six_crystal_store()
