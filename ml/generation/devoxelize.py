"""Voxel grids back to atoms: the one segmentation of matmap.

:func:`periodic_maxima` finds the atoms of a density grid (its periodic local maxima, a plateau
counting once), :func:`marker_peak` the voxel of each and :func:`subvoxel_offset` a sub-voxel
position (a parabola through the log density, exact for one Gaussian). Two decoders use them:

- :func:`structure_from_voxels` (the inverse of :func:`ml.generation.voxels.voxelize`, for true
  species grids): each species' voxels are split into atoms by a periodic marker watershed
  (``skimage.segmentation.watershed``) seeded at those maxima;
- :func:`ml.generation.decode.find_sites` (for the VAE's decoded grids): the maxima are the
  sites, each taking the element its voxels vote for.
"""

from __future__ import annotations

import numpy as np

from ml.generation.voxels import MAX_ATOMIC_NUMBER, VoxelConfig, VoxelDecodeError, _check_lattice


def periodic_label(mask: np.ndarray, connectivity: int = 3) -> np.ndarray:
    """Connected components of a periodic boolean grid (components joined across the faces)."""
    from skimage.measure import label

    padded = label(np.pad(mask, 1, mode="wrap"), connectivity=connectivity)
    central = padded[1:-1, 1:-1, 1:-1]
    n = np.array(mask.shape)
    shell = np.ones(padded.shape, dtype=bool)
    shell[1:-1, 1:-1, 1:-1] = False
    shell &= padded > 0
    idx = np.argwhere(shell)
    orig = (idx - 1) % n
    pairs = np.unique(np.stack([padded[tuple(idx.T)], central[tuple(orig.T)]], axis=1), axis=0)
    parent = np.arange(padded.max() + 1)

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([find(x) for x in range(len(parent))])
    _, compact = np.unique(roots, return_inverse=True)  # root 0 (background) stays 0
    return compact[central]


def _periodic_edt(mask: np.ndarray, spacing: np.ndarray) -> np.ndarray:
    """Distance, Å, of every voxel of ``mask`` to the nearest voxel outside it (periodic)."""
    from scipy import ndimage

    if mask.all():
        return np.ones(mask.shape)
    n = mask.shape[0]
    pad = n // 2
    dist = ndimage.distance_transform_edt(np.pad(mask, pad, mode="wrap"), sampling=spacing)
    return dist[pad:-pad, pad:-pad, pad:-pad]


def peak_offset(values: np.ndarray) -> float:
    """Sub-voxel offset of a maximum from three samples (log parabola; exact for a Gaussian)."""
    if np.any(values <= 0):
        return 0.0
    lm, l0, lp = np.log(values)
    curvature = lm - 2 * l0 + lp
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (lm - lp) / curvature, -0.5, 0.5))


def periodic_maxima(surface: np.ndarray, threshold: float, mask: np.ndarray | None = None) -> np.ndarray:
    """The atom markers of a grid: its periodic local maxima (3 × 3 × 3 neighbourhood, the grid
    wrapped) above ``threshold``, within ``mask`` when given, labelled so that a plateau of equal
    maxima (an atom midway between voxels) is one marker.

    Args:
        surface: ``(N, N, N)`` density (or any surface whose maxima are atoms).
        threshold: smallest value of a maximum.
        mask: optional ``(N, N, N)`` bool; voxels outside it are neither maxima nor neighbours.

    Returns:
        ``(N, N, N)`` int labels, 0 off the markers, 1 … n on the n markers.
    """
    from scipy import ndimage

    masked = surface if mask is None else np.where(mask, surface, -np.inf)
    peaks = (masked >= ndimage.maximum_filter(masked, size=3, mode="wrap")) & (surface > threshold)
    return periodic_label(peaks if mask is None else peaks & mask)


def marker_peak(surface: np.ndarray, markers: np.ndarray, label: int) -> np.ndarray:
    """``(3,)`` voxel index of the highest voxel of marker ``label`` (the first in raster order on ties)."""
    voxels = np.argwhere(markers == label)
    return voxels[np.argmax(surface[tuple(voxels.T)])]


def subvoxel_offset(surface: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """``(3,)`` sub-voxel offset, in voxels, of the maximum at voxel ``peak`` along each axis
    (:func:`peak_offset` through the peak and its two periodic neighbours on that axis)."""
    n = surface.shape[0]
    offset = np.zeros(3)
    for axis in range(3):
        idx = [np.full(3, peak[0]), np.full(3, peak[1]), np.full(3, peak[2])]
        idx[axis] = (peak[axis] + np.array([-1, 0, 1])) % n
        offset[axis] = peak_offset(surface[tuple(idx)])
    return offset


def _check_grids(species, lattice, density, n: int):
    species = np.asarray(species)
    if species.shape != (n, n, n):
        raise VoxelDecodeError(f"species grid must have shape ({n}, {n}, {n}), got {species.shape}")
    integral = species.dtype.kind in "iu" or (
        species.dtype.kind == "f" and np.all(np.isfinite(species)) and np.all(species == np.round(species))
    )
    if not integral:
        raise VoxelDecodeError(f"species grid must hold integer atomic numbers, got dtype {species.dtype}")
    species = species.astype(np.int64)
    if species.min() < 0 or species.max() > MAX_ATOMIC_NUMBER:
        raise VoxelDecodeError(f"species grid values must be atomic numbers 0–{MAX_ATOMIC_NUMBER}")
    try:
        lattice = _check_lattice(lattice, batched=False)
    except ValueError as exc:
        raise VoxelDecodeError(str(exc)) from None
    if density is not None:
        density = np.asarray(density, dtype=np.float64)
        if density.shape != (n, n, n):
            raise VoxelDecodeError(f"density must have shape ({n}, {n}, {n}), got {density.shape}")
        if not np.all(np.isfinite(density)):
            raise VoxelDecodeError("density holds NaN or infinite values")
    return species, lattice, density


def _atoms_of_species(
    mask: np.ndarray, surface: np.ndarray, threshold: float, use_peak_fit: bool, min_voxels: int = 1
) -> list[np.ndarray]:
    """Fractional centres of the atoms of one species' region, each ``(3,)``."""
    from skimage.segmentation import watershed

    n = mask.shape[0]
    markers = periodic_maxima(surface, threshold, mask)
    # every connected region gets a marker, even without a peak above the threshold
    regions = periodic_label(mask)
    for region in np.setdiff1d(np.unique(regions[mask]), np.unique(regions[markers > 0])):
        voxels = np.argwhere(regions == region)
        best = voxels[np.argmax(surface[tuple(voxels.T)])]
        markers[tuple(best)] = markers.max() + 1
    pad = max(2, n // 4)
    labels = watershed(
        -np.pad(surface, pad, mode="wrap"),
        np.pad(markers, pad, mode="wrap"),
        mask=np.pad(mask, pad, mode="wrap"),
    )[pad:-pad, pad:-pad, pad:-pad]
    centres = []
    for label_id in np.unique(markers[markers > 0]):
        peak = marker_peak(surface, markers, label_id)
        region = np.argwhere(labels == label_id)
        if len(region) < min_voxels:
            continue
        if use_peak_fit:
            offset = subvoxel_offset(surface, peak)
        else:
            delta = (region - peak).astype(np.float64)
            delta -= n * np.round(delta / n)  # minimum image about the peak
            weights = surface[tuple(region.T)]
            offset = (delta * weights[:, None]).sum(axis=0) / weights.sum()
        centres.append(np.mod((peak + offset) / n, 1.0))
    return centres


def structure_from_voxels(species, lattice, density=None, config: VoxelConfig | None = None):
    """Decode a species grid (and its density) into a pymatgen ``Structure``.

    Each species' voxels are split into atoms by watershed (markers at the periodic local
    maxima of the density above ``config.peak_threshold``, or of the distance to the region's
    border when ``density`` is None); a connected region with no such maximum still yields one
    atom; regions of fewer than ``config.min_region_voxels`` voxels are dropped. Regions that
    wrap around the cell boundary give one atom.

    Args:
        species: ``(N, N, N)`` integer atomic numbers, 0 = empty (e.g. a true grid).
        lattice: ``(3,)`` cell lengths ``(a, b, c)`` in Å (orthogonal cell).
        density: optional ``(N, N, N)`` density from which atom centres are refined.
        config: the :class:`VoxelConfig` the grids were made with.

    Returns:
        An ordered ``Structure`` with an orthogonal lattice, sites sorted by species.

    Raises:
        VoxelDecodeError: wrong shapes or values, or no atom at all (an empty species grid).
    """
    from pymatgen.core import Lattice, Structure

    config = config or VoxelConfig()
    n = config.grid_size
    species, lattice, density = _check_grids(species, lattice, density, n)
    elements = [int(z) for z in np.unique(species) if z > 0]
    if not elements:
        raise VoxelDecodeError("the species grid is empty: no voxel holds an atom")
    spacing = lattice / n
    zs, coords = [], []
    for z in elements:
        mask = species == z
        if density is not None:
            centres = _atoms_of_species(mask, density, config.peak_threshold, True, config.min_region_voxels)
        else:
            edt = _periodic_edt(mask, spacing)
            centres = _atoms_of_species(mask, edt, 0.0, False, config.min_region_voxels)
        zs += [z] * len(centres)
        coords += centres
    if not zs:
        raise VoxelDecodeError("no atom could be decoded from the voxel grids")
    return Structure(Lattice.orthorhombic(*lattice), zs, np.array(coords))
