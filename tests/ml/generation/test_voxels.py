"""The VAE's voxel representation (ml.generation.voxels): physics of the grids, rotations, decoding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Element, Lattice, Structure

from ml.evaluation.sites import match_sites
from ml.evaluation.validity import min_distance_ok
from ml.generation.devoxelize import structure_from_voxels
from ml.generation.rotations import CUBE_ROTATIONS, rotate90, rotate_lattice
from ml.generation.voxels import (
    VoxelConfig,
    VoxelDecodeError,
    VoxelizationError,
    coordinate_channels,
    element_radius,
    lattice_from_coordinates,
    model_input,
    voxelize,
)

CONFIG = VoxelConfig()
N = CONFIG.grid_size


def nacl(a: float = 5.64) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cscl(a: float = 4.12) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3(a: float = 3.905) -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(a), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def cu2mnal(a: float = 5.95) -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(a), ["Cu", "Mn", "Al"], [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5]]
    )


def fesi(a: float = 4.49) -> Structure:
    """B20 FeSi (P2_13): a chiral cubic crystal with atoms off the grid's voxels."""
    return Structure.from_spacegroup("P2_13", Lattice.cubic(a), ["Fe", "Si"], [[0.137, 0.137, 0.137], [0.842, 0.842, 0.842]])


def asymmetric(a: float = 7.0) -> Structure:
    """A cubic cell with no symmetry but translations, atoms off the voxels and on the boundary."""
    return Structure(
        Lattice.cubic(a),
        ["Li", "O", "O", "Fe", "P"],
        [[0.0, 0.0, 0.0], [0.21, 0.07, 0.63], [0.49, 0.81, 0.12], [0.73, 0.36, 0.5], [0.995, 0.5, 0.27]],
    )


CRYSTALS = {"NaCl": nacl, "CsCl": cscl, "SrTiO3": srtio3, "Cu2MnAl": cu2mnal, "FeSi": fesi, "asymmetric": asymmetric}


def decode(sample, density=True):
    return structure_from_voxels(sample.species, sample.lattice, sample.density if density else None, CONFIG)


# --------------------------------------------------------------------------- the grids


def test_radius_rule_ionic_then_atomic_then_default():
    assert element_radius(11) == pytest.approx(Element("Na").average_ionic_radius)
    assert element_radius(1) == CONFIG.min_radius  # H: no ionic radius, atomic 0.25 Å, raised to the floor
    assert element_radius(2) == CONFIG.default_radius  # He: neither radius in pymatgen
    with pytest.raises(ValueError):
        element_radius(0)


def test_density_is_a_periodic_sum_of_gaussians_with_the_ionic_width():
    a = 3.0
    sample = voxelize(Structure(Lattice.cubic(a), ["Po"], [[0, 0, 0]]), CONFIG)
    sigma = CONFIG.sigma_over_radius * element_radius(84, CONFIG)
    # voxel (i, 0, 0) sees the atom and its images along x at i a / N + n a (y, z sums factorise)
    images = np.arange(-5, 6) * a
    along = lambda x: np.exp(-((x + images) ** 2) / (2 * sigma**2)).sum()
    for i in (0, 3, N // 2, N - 3):
        expected = along(i * a / N) * along(0.0) ** 2
        assert sample.density[i, 0, 0] == pytest.approx(expected, rel=1e-5)
    assert np.allclose(sample.density[3], sample.density[N - 3])  # mirror image across the origin


@pytest.mark.parametrize("name", ["NaCl", "SrTiO3", "Cu2MnAl"])
def test_density_peaks_at_the_atoms_and_species_label_them(name):
    structure = CRYSTALS[name]()
    sample = voxelize(structure, CONFIG)
    from scipy import ndimage

    peaks = np.argwhere(sample.density == ndimage.maximum_filter(sample.density, size=3, mode="wrap"))
    sites = {tuple(np.round(np.mod(f, 1) * N).astype(int) % N) for f in structure.frac_coords}
    assert {tuple(p) for p in peaks} == sites
    for site in structure:
        voxel = tuple(np.round(np.mod(site.frac_coords, 1) * N).astype(int) % N)
        assert sample.species[voxel] == site.specie.Z
    assert sample.occupied.any() and not sample.occupied.all()
    assert sample.species.dtype == np.uint8 and sample.density.dtype == np.float32
    assert np.allclose(sample.lattice, structure.lattice.abc)


def test_species_voxels_lie_within_the_radius_of_their_atom():
    structure = cscl()
    sample = voxelize(structure, CONFIG)
    for z in (55, 17):
        site = next(s for s in structure if s.specie.Z == z)
        voxels = np.argwhere(sample.species == z) / N
        d = structure.lattice.get_all_distances(voxels, site.frac_coords[None])[:, 0]
        assert d.max() <= element_radius(z, CONFIG) + 1e-6


def test_translation_by_whole_voxels_rolls_the_grids():
    structure = fesi()
    shifted = structure.copy()
    shifted.translate_sites(range(len(shifted)), [3 / N, 0, -5 / N], frac_coords=True, to_unit_cell=True)
    a, b = voxelize(structure, CONFIG), voxelize(shifted, CONFIG)
    assert np.allclose(np.roll(a.density, (3, 0, -5), axis=(0, 1, 2)), b.density, atol=1e-5)


def test_non_orthogonal_or_empty_cells_are_refused():
    hexagonal = Structure(Lattice.hexagonal(3.0, 5.0), ["Mg"], [[0, 0, 0]])
    with pytest.raises(VoxelizationError, match="orthogonal"):
        voxelize(hexagonal, CONFIG)
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(VoxelizationError, match="disordered"):
        voxelize(disordered, CONFIG)


def test_config_is_validated():
    with pytest.raises(ValueError):
        VoxelConfig(grid_size=2)
    with pytest.raises(ValueError):
        VoxelConfig(radius_kind="covalent")
    assert VoxelConfig().key() == VoxelConfig().key() != VoxelConfig(sigma_over_radius=1.0).key()
    # decoding settings do not change the stored grids, nor their cache key
    assert VoxelConfig(peak_threshold=0.3, min_region_voxels=4).key() == VoxelConfig().key()


# --------------------------------------------------------------------------- model input


def test_coordinate_channels_hold_voxel_positions_and_give_the_lattice_back():
    lattice = np.array([5.0, 6.0, 7.0])
    coords = coordinate_channels(lattice, CONFIG)
    assert coords.shape == (3, N, N, N)
    assert coords[0, 5, 9, 2] == pytest.approx(5 * 5.0 / N / CONFIG.coordinate_scale)
    assert coords[2, 5, 9, 2] == pytest.approx(2 * 7.0 / N / CONFIG.coordinate_scale)
    assert np.allclose(lattice_from_coordinates(coords, CONFIG), lattice, rtol=1e-5)


def test_model_input_batched_equals_stacked_single():
    samples = [voxelize(f(), CONFIG) for f in (nacl, srtio3)]
    single = [model_input(s.density, s.lattice, CONFIG) for s in samples]
    batch = model_input(np.stack([s.density.astype(np.float16) for s in samples]), np.stack([s.lattice for s in samples]))
    assert batch.shape == (2, 4, N, N, N) and batch.dtype == np.float32
    assert np.allclose(batch, np.stack(single), atol=1e-3)  # float16 density in the batch
    assert np.allclose(lattice_from_coordinates(batch[:, 1:], CONFIG), [s.lattice for s in samples], rtol=1e-5)
    with pytest.raises(ValueError):
        model_input(samples[0].density, np.ones((2, 3)), CONFIG)
    with pytest.raises(ValueError):
        model_input(np.zeros((N // 2,) * 3), samples[0].lattice, CONFIG)  # a grid of another size


# --------------------------------------------------------------------------- rotations


def rotated(structure: Structure, matrix: np.ndarray) -> Structure:
    """The crystal turned by a signed permutation about the origin (fractional coordinates)."""
    return Structure(structure.lattice, structure.species, np.mod(structure.frac_coords @ matrix.T, 1.0))


def test_there_are_24_distinct_proper_cube_rotations():
    assert CUBE_ROTATIONS.shape == (24, 3, 3)
    assert len({m.tobytes() for m in CUBE_ROTATIONS}) == 24
    assert all(round(np.linalg.det(m)) == 1 for m in CUBE_ROTATIONS)
    assert np.array_equal(CUBE_ROTATIONS[0], np.eye(3))


@pytest.mark.parametrize("index", range(24))
def test_rotating_the_grids_equals_voxelising_the_rotated_crystal(index):
    structure = asymmetric()
    sample = voxelize(structure, CONFIG)
    expected = voxelize(rotated(structure, CUBE_ROTATIONS[index]), CONFIG)
    assert np.allclose(rotate90(sample.density, index), expected.density, atol=1e-5)
    assert np.array_equal(rotate90(sample.species, index), expected.species)
    assert np.allclose(rotate_lattice(sample.lattice, index), expected.lattice)
    stacked = np.stack([sample.density, sample.species.astype(np.float32)])[None]  # (B, C, N, N, N)
    turned = rotate90(torch.from_numpy(stacked), index)
    assert isinstance(turned, torch.Tensor)
    assert np.allclose(turned[0, 0].numpy(), expected.density, atol=1e-5)


@pytest.mark.parametrize("index", [1, 7, 13, 23])
def test_decoded_structure_rotates_with_the_grids(index):
    structure = asymmetric()
    sample = voxelize(structure, CONFIG)
    decoded = structure_from_voxels(rotate90(sample.species, index), sample.lattice, rotate90(sample.density, index), CONFIG)
    match = match_sites(rotated(structure, CUBE_ROTATIONS[index]), decoded)
    assert match.exact(0.02), match


def test_bad_rotations_and_grids_are_refused():
    with pytest.raises(ValueError):
        rotate90(np.zeros((N, N, N)), 24)
    with pytest.raises(ValueError):
        rotate90(np.zeros((N, N, N)), np.diag([1, 1, -1]))  # a reflection, not a rotation
    with pytest.raises(ValueError):
        rotate90(np.zeros((N, N, 8)), 1)


# --------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("name", list(CRYSTALS))
@pytest.mark.parametrize("with_density", [True, False])
def test_round_trip_recovers_the_crystal(name, with_density):
    structure = CRYSTALS[name]()
    decoded = decode(voxelize(structure, CONFIG), with_density)
    match = match_sites(structure, decoded)
    assert match.same_composition and match.delta_sites == 0
    assert match.max_distance < (0.02 if with_density else 0.1), match
    assert np.allclose(decoded.lattice.abc, structure.lattice.abc, rtol=1e-6)
    assert min_distance_ok(decoded)


@pytest.mark.parametrize("grid, tolerance", [(16, 0.03), (32, 0.02)])  # Å: the CPU grid and the paper's
def test_atoms_on_faces_edges_and_corners_are_counted_once(grid, tolerance):
    # one atom at a corner, one on an edge, one on a face, one just inside the far face:
    # their voxels are split across the periodic boundary
    structure = Structure(
        Lattice.cubic(6.0), ["K", "K", "Br", "Br"],
        [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0.5], [0.999, 0.25, 0.75]],
    )
    config = VoxelConfig(grid_size=grid)
    sample = voxelize(structure, config)
    decoded = structure_from_voxels(sample.species, sample.lattice, sample.density, config)
    match = match_sites(structure, decoded)
    assert len(decoded) == 4 and match.exact(tolerance), match
    assert np.all((decoded.frac_coords >= 0) & (decoded.frac_coords < 1))


def test_touching_atoms_of_one_species_are_split_by_the_watershed():
    # bcc Fe: every Fe touches 8 others; the species grid is one connected region
    structure = Structure(Lattice.cubic(2.87), ["Fe", "Fe"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    sample = voxelize(structure, CONFIG)
    decoded = decode(sample)
    assert len(decoded) == 2 and match_sites(structure, decoded).exact(0.02)


def test_specks_in_a_species_grid_are_dropped_when_asked():
    structure = nacl()
    sample = voxelize(structure, CONFIG)
    species = sample.species.copy()
    empty = np.argwhere(species == 0)[0]
    species[tuple(empty)] = 17  # one stray Cl voxel, as a network might predict
    assert len(structure_from_voxels(species, sample.lattice, None, CONFIG)) == len(structure) + 1
    strict = VoxelConfig(min_region_voxels=2)
    decoded = structure_from_voxels(species, sample.lattice, None, strict)
    assert match_sites(structure, decoded).exact(0.1)


def test_decoding_bad_input_raises_a_clear_error():
    sample = voxelize(nacl(), CONFIG)
    with pytest.raises(VoxelDecodeError, match="empty"):
        structure_from_voxels(np.zeros((N, N, N), dtype=int), sample.lattice, None, CONFIG)
    with pytest.raises(VoxelDecodeError, match="shape"):
        structure_from_voxels(sample.species[: N // 2], sample.lattice, None, CONFIG)
    with pytest.raises(VoxelDecodeError, match="atomic numbers"):
        structure_from_voxels(np.full((N, N, N), 200), sample.lattice, None, CONFIG)
    with pytest.raises(VoxelDecodeError, match="integer"):
        structure_from_voxels(sample.species + 0.5, sample.lattice, None, CONFIG)
    with pytest.raises(VoxelDecodeError, match="lattice"):
        structure_from_voxels(sample.species, [5.0, -1.0, 5.0], None, CONFIG)
    with pytest.raises(VoxelDecodeError, match="NaN"):
        structure_from_voxels(sample.species, sample.lattice, np.full((N, N, N), np.nan), CONFIG)


def test_validity_uses_periodic_distances():
    assert min_distance_ok(nacl())
    close = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])  # 0.25 Å apart
    assert not min_distance_ok(close)
    across = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0, 0], [0.97, 0, 0]])  # 0.2 Å through the face
    assert not min_distance_ok(across)
    assert min_distance_ok(close, min_distance=0.2)
    with pytest.raises(ValueError):
        min_distance_ok(nacl(), min_distance=0)
