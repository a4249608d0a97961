"""Crystals as voxel grids (16³ on the CPU, the paper's 32³) and back: the representation of the 3D voxel VAE.

Source: C. J. Court, B. Yildirim, A. Jain, J. M. Cole, "3-D Inorganic Crystal Structure Generation
and Property Prediction via Representation Learning", J. Chem. Inf. Model. 60, 4518 (2020)
(``../shared/docs/method.md`` part B). One unit cell (orthogonal; the VAE's crystals are cubic
conventional cells) is sampled on an ``N × N × N`` grid (``N = grid_size``, 16 by default):

- voxel ``(i, j, k)`` sits at fractional coordinates ``(i/N, j/N, k/N)``, so the cell origin and
  the high-symmetry positions 1/2, 1/4, 1/8 fall on voxels exactly;
- **density** ``M`` (float32, dimensionless): ``M(r) = Σ_atoms Σ_images exp(-|r - r_atom|² / 2σ²)``,
  one Gaussian of height 1 per atom, summed over periodic images, with
  ``σ = sigma_over_radius × radius`` (default ``σ = radius / 2``: the Gaussian's 2σ width is the
  ionic radius, so it falls to e⁻² ≈ 0.14 of its peak there and neighbouring atoms keep
  separate maxima, which the decoder needs; ``σ = radius`` merges the peaks of touching ions
  such as Na and Cl in rock salt);
- **species** ``S`` (uint8): at each voxel the atomic number of the nearest atom whose radius
  covers the voxel, 0 where no atom does; ``S > 0`` is the binary occupied mask;
- **lattice** ``(a, b, c)`` in Å;
- **coordinate channels** ``(3, N, N, N)``: the Cartesian position of every voxel
  ``(i a/N, j b/N, k c/N)`` in Å divided by ``coordinate_scale`` (10 Å by default, so the
  channels lie in [0, ~1.5) like the density), computed from the lattice on the fly
  (:func:`coordinate_channels`) and read back with :func:`lattice_from_coordinates`. The model
  input is ``[M, x, y, z]`` (:func:`model_input`).

The radius of an element (:func:`element_radius`) is pymatgen's ``Element.average_ionic_radius``
(the mean of its Shannon ionic radii over all oxidation states), else its ``atomic_radius`` when
the element has no ionic radius (H, noble gases), else ``default_radius`` (1 Å); it is then raised
to at least ``min_radius`` (0.5 Å) and to half a voxel diagonal, so every atom covers at least one
voxel whatever the cell size.

Decoding (:mod:`ml.generation.devoxelize`, the one segmentation of grids into atoms): atoms are
the periodic local maxima of the density; :func:`ml.generation.devoxelize.structure_from_voxels`
splits each species of ``S`` into atoms by a marker watershed seeded at them (or, without a
density, at the maxima of the distance to the region's border), the grid wrap-padded so atoms on
faces, edges and corners (split across the cell boundary) become one atom each, and refines each
peak to sub-voxel precision (a parabola through the log density, exact for one Gaussian; the
region's centroid without a density). The VAE's decoded grids go through the same maxima in
:func:`ml.generation.decode.decode_crystal`.

Data augmentation: :func:`ml.generation.rotations.rotate90` applies one of the 24 proper
rotations of the cube about the cell origin to density and species grids alike (numpy arrays or torch tensors).

numpy and scipy only at import time; pymatgen and scikit-image are imported where needed (a
model may import :func:`model_input` without pulling in pymatgen).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cache

import numpy as np

#: Largest atomic number a species grid may hold.
MAX_ATOMIC_NUMBER = 118


class VoxelizationError(ValueError):
    """A structure cannot be put on the grid (non-orthogonal cell, disordered sites, empty)."""


class VoxelDecodeError(ValueError):
    """Voxel grids that hold no decodable structure (wrong shapes or values, no atoms)."""


@dataclass(frozen=True)
class VoxelConfig:
    """How a crystal becomes voxels (saved with every cache and checkpoint built from it).

    Attributes:
        grid_size: voxels per cell edge ``N`` (the CPU recipe: 16; the paper: 32).
        radius_kind: ``"average_ionic"`` (pymatgen ``Element.average_ionic_radius``, fallback
            ``atomic_radius``) or ``"atomic"`` (``Element.atomic_radius``).
        min_radius: smallest radius an atom is given, Å (Shannon radii of small cations such as
            C⁴⁺ 0.3 Å would cover no voxel of a 10 Å cell).
        default_radius: radius of an element pymatgen has no radius for, Å.
        sigma_over_radius: Gaussian ``σ`` as a fraction of the radius.
        coordinate_scale: length, Å, the coordinate channels are divided by.
        peak_threshold: smallest density at a voxel that marks an atom when decoding.
        min_region_voxels: fewest voxels a decoded atom's watershed region must have (raise it
            to ignore specks in a network's species grid; 1 keeps every atom of a true grid).
        orthogonal_tolerance: largest deviation of a cell angle from 90°, degrees.
    """

    grid_size: int = 16
    radius_kind: str = "average_ionic"
    min_radius: float = 0.5
    default_radius: float = 1.0
    sigma_over_radius: float = 0.5
    coordinate_scale: float = 10.0
    peak_threshold: float = 0.1
    min_region_voxels: int = 1
    orthogonal_tolerance: float = 0.01

    def __post_init__(self):
        if not isinstance(self.grid_size, int) or self.grid_size < 4:
            raise ValueError(f"grid_size must be an integer ≥ 4, got {self.grid_size!r}")
        if self.radius_kind not in ("average_ionic", "atomic"):
            raise ValueError(f"radius_kind must be 'average_ionic' or 'atomic', got {self.radius_kind!r}")
        for name in ("min_radius", "default_radius", "sigma_over_radius", "coordinate_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.peak_threshold < 1:
            raise ValueError(f"peak_threshold must be in [0, 1), got {self.peak_threshold!r}")
        if not isinstance(self.min_region_voxels, int) or self.min_region_voxels < 1:
            raise ValueError(f"min_region_voxels must be an integer ≥ 1, got {self.min_region_voxels!r}")
        if not 0 <= self.orthogonal_tolerance < 5:
            raise ValueError(f"orthogonal_tolerance must be in [0, 5) degrees, got {self.orthogonal_tolerance!r}")

    def key(self) -> str:
        """A short, stable text naming the voxel grids this configuration makes (for cache
        folders); the decoding-only fields (``peak_threshold``, ``min_region_voxels``) and
        ``coordinate_scale`` (not stored) are left out, so they can change without re-voxelising."""
        import hashlib
        import json

        fields = {k: v for k, v in asdict(self).items() if k not in _NOT_IN_KEY}
        return "vox-" + hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:10]


#: :class:`VoxelConfig` fields that do not change the stored density and species grids.
_NOT_IN_KEY = ("peak_threshold", "min_region_voxels", "coordinate_scale")


@dataclass(frozen=True)
class VoxelSample:
    """One crystal on the grid.

    Attributes:
        density: ``(N, N, N)`` float32, sum of unit-height Gaussians (dimensionless).
        species: ``(N, N, N)`` uint8, atomic number of the covering atom, 0 for empty voxels.
        lattice: ``(3,)`` float32, cell lengths ``(a, b, c)`` in Å.
    """

    density: np.ndarray
    species: np.ndarray
    lattice: np.ndarray

    @property
    def occupied(self) -> np.ndarray:
        """``(N, N, N)`` bool: voxels covered by an atom (``species > 0``)."""
        return self.species > 0


# --------------------------------------------------------------------------- radii


@cache
def _raw_radius(atomic_number: int, radius_kind: str) -> float | None:
    import warnings

    from pymatgen.core import Element

    element = Element.from_Z(atomic_number)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen warns for elements without data
        candidates = ([element.average_ionic_radius] if radius_kind == "average_ionic" else []) + [
            element.atomic_radius
        ]
    for value in candidates:
        if value is not None and float(value) > 0:
            return float(value)
    return None


def element_radius(atomic_number: int, config: VoxelConfig | None = None) -> float:
    """The radius, Å, that sets an element's Gaussian width and species coverage.

    ``average_ionic_radius`` (fallback ``atomic_radius``, then ``config.default_radius``), raised
    to at least ``config.min_radius``. :func:`voxelize` further raises it to half the voxel
    diagonal of the cell at hand, so that every atom covers a voxel.

    Raises:
        ValueError: ``atomic_number`` outside 1–118.
    """
    config = config or VoxelConfig()
    if not 1 <= int(atomic_number) <= MAX_ATOMIC_NUMBER:
        raise ValueError(f"atomic number must be in 1–{MAX_ATOMIC_NUMBER}, got {atomic_number!r}")
    raw = _raw_radius(int(atomic_number), config.radius_kind)
    return max(raw if raw is not None else config.default_radius, config.min_radius)


# --------------------------------------------------------------------------- structure -> voxels


def _periodic_axis_offsets(frac: float, n: int) -> np.ndarray:
    """Minimum-image fractional offsets of the ``n`` voxels of one axis from ``frac``, shape ``(n,)``."""
    delta = np.arange(n) / n - frac
    return delta - np.round(delta)


def voxelize(structure, config: VoxelConfig | None = None) -> VoxelSample:
    """Density and species grids of an orthogonal (cubic, tetragonal, orthorhombic) cell.

    The cell is used as given (pass a conventional cubic cell; see
    :mod:`ml.generation.voxel_data`); atoms are wrapped into it. Periodic images enter exactly: the Gaussian of
    an orthogonal cell factorises into one periodic sum per axis.

    Args:
        structure: an ordered pymatgen ``Structure`` with cell angles of 90°.
        config: grid and width rules (default :class:`VoxelConfig`).

    Returns:
        :class:`VoxelSample` with ``density (N,N,N)`` float32, ``species (N,N,N)`` uint8 and
        ``lattice (3,)`` float32 in Å.

    Raises:
        VoxelizationError: no sites, partial occupancies, or a cell angle away from 90°.
    """
    config = config or VoxelConfig()
    n = config.grid_size
    if len(structure) == 0:
        raise VoxelizationError("the structure has no sites")
    if not structure.is_ordered:
        raise VoxelizationError("disordered structure (partial occupancies) cannot be voxelised")
    angles = np.asarray(structure.lattice.angles, dtype=float)
    if np.any(np.abs(angles - 90.0) > config.orthogonal_tolerance):
        raise VoxelizationError(
            f"the cell must be orthogonal (angles 90°), got {np.round(angles, 3).tolist()}; "
            "use the conventional cubic cell"
        )
    lattice = np.asarray(structure.lattice.abc, dtype=float)
    half_diagonal = float(np.linalg.norm(lattice / n)) / 2
    density = np.zeros((n, n, n), dtype=np.float64)
    best = np.full((n, n, n), np.inf)
    species = np.zeros((n, n, n), dtype=np.uint8)
    frac_coords = np.mod(structure.frac_coords, 1.0)
    for z, frac in zip(structure.atomic_numbers, frac_coords):
        radius = max(element_radius(z, config), half_diagonal)
        sigma = config.sigma_over_radius * radius
        gauss = []
        d2 = []
        for axis in range(3):
            offsets = _periodic_axis_offsets(frac[axis], n) * lattice[axis]  # Å, minimum image
            n_images = int(np.ceil(6 * sigma / lattice[axis])) + 1  # every image within 6σ
            shifts = np.arange(-n_images, n_images + 1)[:, None] * lattice[axis]
            gauss.append(np.exp(-((offsets[None, :] + shifts) ** 2) / (2 * sigma**2)).sum(axis=0))
            d2.append(offsets**2)
        density += gauss[0][:, None, None] * gauss[1][None, :, None] * gauss[2][None, None, :]
        dist2 = d2[0][:, None, None] + d2[1][None, :, None] + d2[2][None, None, :]
        closer = (dist2 <= radius**2) & (dist2 < best)
        best[closer] = dist2[closer]
        species[closer] = z
    return VoxelSample(density.astype(np.float32), species, lattice.astype(np.float32))


# --------------------------------------------------------------------------- model input


def _check_lattice(lattice, batched: bool) -> np.ndarray:
    lattice = np.asarray(lattice, dtype=np.float64)
    want = "(B, 3)" if batched else "(3,)"
    if lattice.shape[-1:] != (3,) or lattice.ndim != (2 if batched else 1):
        raise ValueError(f"lattice must have shape {want} (a, b, c in Å), got {lattice.shape}")
    if not np.all(np.isfinite(lattice)) or np.any(lattice <= 0):
        raise ValueError("lattice lengths must be finite and > 0 Å")
    return lattice


def coordinate_channels(lattice, config: VoxelConfig | None = None) -> np.ndarray:
    """Cartesian coordinates of every voxel, Å / ``coordinate_scale``.

    Args:
        lattice: ``(3,)`` or ``(B, 3)`` cell lengths in Å.

    Returns:
        float32 ``(3, N, N, N)`` or ``(B, 3, N, N, N)``; channel ``x[i, j, k] = i a / N / scale``
        (likewise ``y`` along ``j`` with ``b``, ``z`` along ``k`` with ``c``).

    Raises:
        ValueError: wrong shape, or lengths not finite and positive.
    """
    config = config or VoxelConfig()
    batched = np.ndim(lattice) == 2
    lattice = _check_lattice(lattice, batched)
    n = config.grid_size
    ramp = (np.arange(n, dtype=np.float64) / n).astype(np.float32)
    lengths = (np.atleast_2d(lattice) / config.coordinate_scale).astype(np.float32)  # (B, 3)
    out = np.empty((len(lengths), 3, n, n, n), dtype=np.float32)
    out[:, 0] = lengths[:, 0, None, None, None] * ramp[None, :, None, None]
    out[:, 1] = lengths[:, 1, None, None, None] * ramp[None, None, :, None]
    out[:, 2] = lengths[:, 2, None, None, None] * ramp[None, None, None, :]
    return out if batched else out[0]


def lattice_from_coordinates(channels, config: VoxelConfig | None = None) -> np.ndarray:
    """Cell lengths, Å, read back from (predicted) coordinate channels by least squares.

    Inverse of :func:`coordinate_channels`: ``a = scale · N · Σ x_i i / Σ i²`` over the voxels.

    Args:
        channels: ``(3, N, N, N)`` or ``(B, 3, N, N, N)``.

    Returns:
        ``(3,)`` or ``(B, 3)`` float32 lengths in Å.

    Raises:
        ValueError: the shape is not that of coordinate channels of this grid.
    """
    config = config or VoxelConfig()
    n = config.grid_size
    channels = np.asarray(channels, dtype=np.float64)
    if channels.shape[-4:] != (3, n, n, n) or channels.ndim not in (4, 5):
        raise ValueError(f"coordinate channels must have shape (3, {n}, {n}, {n}) or (B, 3, …), got {channels.shape}")
    batch = channels.reshape((-1, 3, n, n, n))
    ramp = np.arange(n, dtype=np.float64)
    weights = [ramp[:, None, None], ramp[None, :, None], ramp[None, None, :]]
    denom = float((ramp**2).sum()) * n * n
    lengths = np.stack(
        [(batch[:, axis] * weights[axis]).sum(axis=(1, 2, 3)) / denom for axis in range(3)], axis=1
    ) * (config.coordinate_scale * n)
    lengths = lengths.astype(np.float32)
    return lengths if channels.ndim == 5 else lengths[0]


def model_input(density, lattice, config: VoxelConfig | None = None) -> np.ndarray:
    """The VAE's input ``[M, x, y, z]``: the density with the coordinate channels of its cell.

    Args:
        density: ``(N, N, N)`` or batched ``(B, N, N, N)`` (any float dtype; float16 from the store).
        lattice: ``(3,)`` or ``(B, 3)`` cell lengths in Å.

    Returns:
        float32 ``(4, N, N, N)`` or ``(B, 4, N, N, N)``.

    Raises:
        ValueError: shapes that do not fit the grid or each other.
    """
    config = config or VoxelConfig()
    n = config.grid_size
    density = np.asarray(density)
    batched = density.ndim == 4
    if density.shape[-3:] != (n, n, n) or density.ndim not in (3, 4):
        raise ValueError(f"density must have shape ({n}, {n}, {n}) or (B, {n}, {n}, {n}), got {density.shape}")
    coords = coordinate_channels(lattice, config)
    if batched and (coords.ndim != 5 or len(coords) != len(density)):
        raise ValueError(f"a batch of {len(density)} densities needs lattice of shape ({len(density)}, 3)")
    if not batched and coords.ndim != 4:
        raise ValueError("one density needs one lattice of shape (3,)")
    return np.concatenate([density.astype(np.float32)[..., None, :, :, :], coords], axis=-4)
