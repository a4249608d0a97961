"""The one segmentation of grids into atoms (``ml/generation/devoxelize.py``): periodic maxima,
their peak voxels and sub-voxel offsets, shared by the voxel round trip and the VAE's decoder."""

from __future__ import annotations

import numpy as np
import pytest

from ml.generation.decode import find_sites
from ml.generation.devoxelize import marker_peak, periodic_maxima, subvoxel_offset

N = 16


def gaussians(centres, sigma: float = 1.2) -> np.ndarray:
    """``(N, N, N)`` sum of unit periodic Gaussians at voxel coordinates ``centres``."""
    axis = np.arange(N, dtype=np.float64)
    grid = np.zeros((N, N, N))
    for centre in centres:
        d = [((axis - c + N / 2) % N - N / 2).reshape([-1 if j == k else 1 for j in range(3)])
             for k, c in enumerate(centre)]
        grid += np.exp(-(d[0] ** 2 + d[1] ** 2 + d[2] ** 2) / (2 * sigma**2))
    return grid


def test_an_atom_on_the_cell_face_is_one_marker_and_a_threshold_drops_a_weak_one():
    # an atom midway between voxel 15 and voxel 0: a plateau of two equal maxima split by the cell face
    face = gaussians([(15.5, 4.0, 4.0)])
    markers = periodic_maxima(face, 0.5)
    assert markers.max() == 1
    assert set(map(tuple, np.argwhere(markers == 1))) == {(15, 4, 4), (0, 4, 4)}
    # a weak atom (peak 0.3) counts above a threshold of 0.2, not above 0.5
    density = face + 0.3 * gaussians([(8.0, 8.0, 8.0)])
    assert periodic_maxima(density, 0.5).max() == 1 and periodic_maxima(density, 0.2).max() == 2
    # within a mask, the maxima of the masked part only
    mask = np.zeros((N, N, N), dtype=bool)
    mask[6:11, 6:11, 6:11] = True
    only = periodic_maxima(density, 0.2, mask)
    assert only.max() == 1 and tuple(marker_peak(density, only, 1)) == (8, 8, 8)


def test_the_subvoxel_offset_recovers_a_gaussians_centre():
    centre = np.array([4.3, 8.0, 11.8])
    density = gaussians([centre])
    peak = marker_peak(density, periodic_maxima(density, 0.5), 1)
    assert tuple(peak) == (4, 8, 12)
    assert peak + subvoxel_offset(density, peak) == pytest.approx(centre, abs=1e-9)  # exact for one Gaussian


def test_the_vae_decoder_finds_the_same_atoms_as_the_segmentation():
    density = gaussians([(0.0, 0.0, 0.0), (8.0, 8.0, 8.0), (4.0, 12.0, 4.0)])
    markers = periodic_maxima(density, 0.5)
    peaks = {tuple(marker_peak(density, markers, label)) for label in range(1, markers.max() + 1)}
    sites = find_sites(density, np.zeros((1, N, N, N)), peak_threshold=0.5)
    assert {tuple(np.rint(c * N).astype(int)) for c in sites.frac_coords} == peaks == {(0, 0, 0), (8, 8, 8), (4, 12, 4)}
