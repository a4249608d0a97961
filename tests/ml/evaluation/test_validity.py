"""The validity rules generated crystals are judged by (``ml/evaluation/validity.py``): the strict rule on
hand-made members of the four families and on hand-made failures, each with the exact reason it
gives; the family shape of formulas; the paper's distance rule across periodic images."""

from __future__ import annotations

import pytest
from pymatgen.core import Composition, Lattice, Structure

from ml.evaluation.validity import MAX_SITES, family_shape, min_distance_ok, strict_validity


def rock_salt(a: float = 5.64) -> Structure:
    """NaCl, conventional cell (8 sites), Fm-3m (225)."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def perovskite(lattice: Lattice, ti_z: float = 0.5) -> Structure:
    """SrTiO3 with Sr at the corner, Ti at (½, ½, ti_z), O at the face centres."""
    return Structure(lattice, ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, ti_z], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


GOOD = {
    # name: (structure, space group, family shape)
    "rock-salt NaCl": (rock_salt(), 225, "AB"),
    "CsCl": (Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), 221, "AB"),
    "cubic perovskite SrTiO3": (perovskite(Lattice.cubic(3.905)), 221, "ABX3"),
    "full Heusler Cu2MnAl": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.95), ["Cu", "Mn", "Al"],
                                                       [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5]]), 225, "X2YZ"),
    "half Heusler TiNiSn": (Structure.from_spacegroup("F-43m", Lattice.cubic(5.94), ["Ti", "Ni", "Sn"],
                                                      [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0.5]]), 216, "XYZ"),
}


@pytest.mark.parametrize("name", list(GOOD))
def test_members_of_the_four_families_are_strictly_valid(name):
    structure, spacegroup, shape = GOOD[name]
    verdict = strict_validity(structure)
    assert verdict.strict and verdict.paper and verdict.reason is None
    assert verdict.spacegroup_number == spacegroup and verdict.shape == shape


def test_full_heusler_cell_has_sixteen_sites_and_half_heusler_twelve():
    # the fixtures above are the conventional cells the selection holds (not primitive ones)
    assert len(GOOD["full Heusler Cu2MnAl"][0]) == 16 and len(GOOD["half Heusler TiNiSn"][0]) == 12


BAD = {
    # name: (structure, reason, paper's rule passed)
    "two atoms 0.3 Å apart": (Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.075, 0, 0]]),
                              "atoms closer than 0.5 Å", False),
    "tetragonal perovskite": (perovskite(Lattice.tetragonal(3.9, 4.2)), "not cubic", True),
    "cubic cell, Ti 0.31 Å off centre": (perovskite(Lattice.cubic(3.9), 0.58), "not cubic", True),
    "cubic A2B3": (Structure(Lattice.cubic(4.0), ["Al", "Al", "O", "O", "O"],
                             [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]),
                   "formula Al2O3 is not AB, ABX3, X2YZ or XYZ", True),
    "one site": (Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]]), "1 sites (allowed 2–40)", True),
    "64 sites": (rock_salt() * (2, 2, 2), "64 sites (allowed 2–40)", True),
    "an empty cell": (Structure(Lattice.cubic(3.0), [], []), "no structure decoded", False),
}


@pytest.mark.parametrize("name", list(BAD))
def test_failures_name_the_first_rule_broken(name):
    structure, reason, paper = BAD[name]
    verdict = strict_validity(structure)
    assert not verdict.strict
    assert verdict.reason == reason
    assert verdict.paper is paper


def test_no_structure_is_invalid_by_both_rules():
    verdict = strict_validity(None)
    assert (verdict.paper, verdict.strict, verdict.reason) == (False, False, "no structure decoded")


def test_symmetry_is_judged_at_a_tenth_of_an_angstrom():
    # The Ti atom moved along c: 0.04 Å stays within spglib's 0.1 Å tolerance (Pm-3m),
    # 0.31 Å is a real polar distortion (P4mm, 99), as in tetragonal BaTiO3.
    slight = strict_validity(perovskite(Lattice.cubic(3.9), 0.51))
    assert slight.strict and slight.spacegroup_number == 221
    polar = strict_validity(perovskite(Lattice.cubic(3.9), 0.58))
    assert polar.spacegroup_number == 99 and polar.shape == "ABX3"
    assert strict_validity(perovskite(Lattice.tetragonal(3.9, 4.2))).spacegroup_number == 123  # P4/mmm


def test_the_site_limit_is_inclusive():
    # a 2x2x2 perovskite supercell: 40 sites, still cubic Pm-3m, allowed; one atom more is not
    forty = perovskite(Lattice.cubic(3.905)) * (2, 2, 2)
    assert len(forty) == MAX_SITES
    assert strict_validity(forty).strict
    forty_one = forty.copy()
    forty_one.append("Sr", [0.125, 0.125, 0.125])  # 1.7 Å from its neighbours
    assert strict_validity(forty_one).reason == "41 sites (allowed 2–40)"


@pytest.mark.filterwarnings("ignore::UserWarning")  # pymatgen explains why it refuses the CIF
def test_two_atoms_on_one_site_do_not_read_back_from_cif():
    # a decoder that puts two atoms on one spot writes a CIF site of occupancy 2, which pymatgen
    # refuses to read: that is the first rule broken (before the distance rule)
    doubled = GOOD["CsCl"][0].copy()
    doubled.append("Cs", [0, 0, 0], validate_proximity=False)
    verdict = strict_validity(doubled)
    assert verdict.reason == "CIF does not parse back (ValueError)"
    assert not verdict.strict and not verdict.paper


@pytest.mark.parametrize("formula, shape", [
    ("NaCl", "AB"), ("Cs8Cl8", "AB"), ("SrTiO3", "ABX3"), ("Ba4Zr4O12", "ABX3"), ("Cu2MnAl", "X2YZ"),
    ("Cu8Mn4Al4", "X2YZ"), ("TiNiSn", "XYZ"),
    ("Al2O3", None), ("Fe", None), ("NaCl2", None), ("LiNaKRb", None), ("Li0.5CoO2", None), ("SrO3", None),
])
def test_family_shape_of_formulas(formula, shape):
    assert family_shape(formula) == shape
    assert family_shape(Composition(formula)) == shape


def test_min_distance_counts_periodic_images():
    cscl = GOOD["CsCl"][0]
    assert min_distance_ok(cscl)
    across = Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0.01, 0, 0], [0.97, 0, 0]])  # 0.2 Å through the face
    assert not min_distance_ok(across)
    assert min_distance_ok(across, min_distance=0.15)
    # one atom alone in a 0.4 Å cell is 0.4 Å from its own image
    assert not min_distance_ok(Structure(Lattice.cubic(0.4), ["H"], [[0, 0, 0]]))
    assert min_distance_ok(Structure(Lattice.cubic(0.6), ["H"], [[0, 0, 0]]))
    assert not min_distance_ok(Structure(Lattice.cubic(3.0), [], []))
    with pytest.raises(ValueError):
        min_distance_ok(cscl, min_distance=0.0)


def test_cells_far_denser_than_any_crystal_are_refused_without_a_neighbour_search():
    from pymatgen.core import Lattice, Structure

    from ml.evaluation.validity import MAX_ATOM_DENSITY, min_distance_ok, strict_validity

    dense = Structure(Lattice.cubic(0.8), ["Fe", "P"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 0.69 Å apart, 3.9 atoms/Å³
    verdict = strict_validity(dense)
    assert verdict.paper and not verdict.strict and verdict.reason == f"3.91 atoms per Å³ (at most {MAX_ATOM_DENSITY})"
    tiny = Structure(Lattice.cubic(0.01), ["Fe", "P"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # would be ~10⁸ images
    assert not min_distance_ok(tiny)
    verdict = strict_validity(tiny)
    assert not verdict.paper and verdict.reason.startswith("atoms closer than 0.5 Å (a cell edge of 0.01 Å")
