"""The 24 proper rotations of the cube, applied to voxel grids and lattices (data augmentation of
the VAE: a cubic crystal's voxels rotated by 90° are the same crystal's)."""

from __future__ import annotations

import itertools

import numpy as np


def _cube_rotations() -> np.ndarray:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3), dtype=np.int64)
            for row in range(3):
                m[row, perm[row]] = signs[row]
            if round(np.linalg.det(m)) == 1:
                mats.append(m)
    mats.sort(key=lambda m: (not np.array_equal(m, np.eye(3, dtype=np.int64)),))  # identity first
    return np.stack(mats)


#: The 24 proper rotations of the cube as signed permutation matrices, shape ``(24, 3, 3)``;
#: index 0 is the identity. Rotation ``R`` moves fractional position ``p`` to ``R p``.
CUBE_ROTATIONS = _cube_rotations()


def _rotation_matrix(rotation) -> np.ndarray:
    if isinstance(rotation, (int, np.integer)):
        if not 0 <= int(rotation) < len(CUBE_ROTATIONS):
            raise ValueError(f"rotation index must be in 0–23, got {rotation}")
        return CUBE_ROTATIONS[int(rotation)]
    matrix = np.asarray(rotation)
    if matrix.shape != (3, 3) or not any(np.array_equal(matrix, m) for m in CUBE_ROTATIONS):
        raise ValueError("rotation must be an index 0–23 or one of CUBE_ROTATIONS (a 3×3 signed permutation, det +1)")
    return matrix.astype(np.int64)


def random_rotation(rng: np.random.Generator) -> int:
    """Index of one of the 24 cube rotations, uniformly at random."""
    return int(rng.integers(len(CUBE_ROTATIONS)))


def rotate90(grid, rotation):
    """A voxel grid rotated by one of the 24 proper 90° rotations of the cube about the origin.

    Voxel ``p`` (fractional ``p / N``) moves to ``R p mod N``: the same crystal turned in space,
    the periodic lattice unchanged for a cubic cell (for orthogonal non-cubic cells rotate the
    lattice lengths too, :func:`rotate_lattice`). Apply the same rotation to the density and the
    species grid of a sample. The coordinate channels are not rotated: they are the positions of
    the voxels and are recomputed from the (rotated) lattice (for a cubic cell they are unchanged).

    Args:
        grid: numpy array or torch tensor whose last three axes are the ``(N, N, N)`` grid
            (``(N,N,N)``, ``(C,N,N,N)`` or ``(B,C,N,N,N)``).
        rotation: index 0–23 into :data:`CUBE_ROTATIONS`, or one of its matrices.

    Returns:
        The rotated grid, same type, shape and dtype.

    Raises:
        ValueError: a bad rotation, or a grid whose last three axes are not equal.
    """
    matrix = _rotation_matrix(rotation)
    shape = tuple(grid.shape)
    if len(shape) < 3 or not shape[-1] == shape[-2] == shape[-3]:
        raise ValueError(f"the last three axes of a grid must be equal (N, N, N), got {shape}")
    lead = len(shape) - 3
    perm = [int(np.flatnonzero(matrix[row])[0]) for row in range(3)]
    signs = [int(matrix[row, perm[row]]) for row in range(3)]
    order = list(range(lead)) + [lead + p for p in perm]
    is_torch = type(grid).__module__.startswith("torch")
    out = grid.permute(*order) if is_torch else np.transpose(grid, order)
    for row in range(3):
        if signs[row] < 0:  # index q -> -q mod N
            axis = lead + row
            if is_torch:
                import torch

                out = torch.roll(torch.flip(out, dims=(axis,)), shifts=1, dims=axis)
            else:
                out = np.roll(np.flip(out, axis=axis), 1, axis=axis)
    return out if is_torch else np.ascontiguousarray(out)


def rotate_lattice(lattice, rotation) -> np.ndarray:
    """Cell lengths ``(a, b, c)`` after :func:`rotate90` with the same rotation, shape ``(3,)``."""
    matrix = _rotation_matrix(rotation)
    perm = [int(np.flatnonzero(matrix[row])[0]) for row in range(3)]
    return np.asarray(lattice)[perm]
