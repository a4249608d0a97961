"""The one site matching (``ml/evaluation/sites.py``): Court et al.'s species-blind earth-mover
distance on periodic distances, the species recall and the exact recovery drawn from it. Hand-built
cubic crystals only."""

from __future__ import annotations

import pytest
from pymatgen.core import Lattice, Structure

from ml.evaluation.sites import EXACT_TOLERANCE, RECALL_DISTANCE, match_sites
from voxel_store import b2, perovskite, shifted


def cscl(a: float = 4.0) -> Structure:
    return b2(a, "Cs", "Cl")


def srtio3(a: float = 3.9) -> Structure:
    return perovskite(a, "Sr", "Ti")


def emd_and_recall(true, decoded) -> tuple[float, int]:
    match = match_sites(true, decoded)
    return match.mean_distance, match.n_recalled


@pytest.mark.parametrize("structure", [cscl(), srtio3()])
def test_a_crystal_matched_against_itself_is_exact_at_zero_distance(structure):
    match = match_sites(structure, structure.copy())
    assert match.mean_distance == pytest.approx(0.0, abs=1e-9) and match.max_distance == pytest.approx(0.0, abs=1e-9)
    assert match.n_pairs == match.n_matched == match.n_recalled == len(structure)
    assert match.delta_sites == 0 and match.exact(1e-9)


def test_site_match_of_a_shifted_copy_is_the_shift():
    true = cscl(4.0)
    # every atom moved 0.02 · 4 Å = 0.08 Å along −a, so Cs wraps to x = 0.98; listed in reverse order
    decoded = shifted(true, [-0.02, 0, 0], order=[1, 0])
    distance, recalled = emd_and_recall(true, decoded)
    assert distance == pytest.approx(0.08, abs=1e-9)
    assert recalled == 2


def test_site_match_ignores_species_for_matching_but_not_for_recall():
    true = srtio3()
    decoded = true.copy()
    decoded.replace(1, "Zr")  # Ti → Zr on the body centre
    distance, recalled = emd_and_recall(true, decoded)
    assert distance == pytest.approx(0.0, abs=1e-9)  # still matched to its own site
    assert recalled == len(true) - 1


def test_a_species_swap_keeps_the_distance_but_is_not_recalled_nor_exact():
    # Cs and Cl trade places: the same geometry (the paper's EMD is 0) with every element wrong
    true = cscl(4.0)
    swapped = Structure(true.lattice, ["Cl", "Cs"], true.frac_coords)
    match = match_sites(true, swapped)
    assert match.same_composition and match.mean_distance == pytest.approx(0.0, abs=1e-9)
    assert match.n_pairs == 2 and match.n_matched == 0 and match.n_recalled == 0
    assert not match.exact()


def test_site_match_recalls_only_within_half_an_angstrom():
    true = cscl(4.0)
    near = Structure(true.lattice, ["Cs", "Cl"], [[0.1, 0, 0], [0.5, 0.5, 0.5]])  # Cs 0.4 Å away
    far = Structure(true.lattice, ["Cs", "Cl"], [[0.15, 0, 0], [0.5, 0.5, 0.5]])  # Cs 0.6 Å away
    assert 0.4 < RECALL_DISTANCE < 0.6
    assert emd_and_recall(true, near) == (pytest.approx(0.2), 2)
    assert emd_and_recall(true, far) == (pytest.approx(0.3), 1)
    assert not match_sites(true, near).exact() and match_sites(true, near).exact(0.4 + 1e-9)


def test_site_match_reads_decoded_sites_in_the_true_cell():
    # a decoded cell 10 % too large with the right fractional positions matches exactly: the
    # cell-length error is scored apart (cell_length_mae)
    true = srtio3(3.9)
    decoded = Structure(Lattice.cubic(4.29), true.species, true.frac_coords)
    assert emd_and_recall(true, decoded) == (pytest.approx(0.0, abs=1e-9), len(true))


def test_site_match_with_a_missing_site_matches_the_smaller_set():
    true = srtio3()
    decoded = true.copy()
    decoded.remove_sites([4])
    distance, recalled = emd_and_recall(true, decoded)
    assert distance == pytest.approx(0.0, abs=1e-9) and recalled == 4
    match = match_sites(true, decoded)
    assert match.n_pairs == 4 and match.delta_sites == 1 and not match.same_composition and not match.exact()


def test_nothing_decoded_pairs_nothing():
    true = cscl()
    empty = Structure(true.lattice, [], [])
    match = match_sites(true, empty)
    assert match.n_pairs == match.n_matched == match.n_recalled == 0 and match.delta_sites == 2
    assert match.mean_distance != match.mean_distance and not match.exact(EXACT_TOLERANCE)  # NaN
