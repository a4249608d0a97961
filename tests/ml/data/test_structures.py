"""Reading CIFs: clear errors for bad input; structure summaries; the ordered approximation of
disordered structures."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from ml.features.errors import FeaturisationError

from ml.features.graph import crystal_graph
from ml.data.structures import (
    SPLIT_SITE_DISTANCE,
    CifError,
    crystal_system,
    majority_occupant,
    parse_cif,
    read_cif,
    spacegroup_number,
    structure_summary,
)


def test_parse_good_cif(crystals):
    structure = parse_cif(crystals.nacl().to(fmt="cif"))
    assert len(structure) == 8 and structure.composition.reduced_formula == "NaCl"


@pytest.mark.parametrize("text", ["", "   \n\t\n"])
def test_empty_text(text):
    with pytest.raises(CifError, match="empty"):
        parse_cif(text)


def test_text_that_is_not_cif():
    with pytest.raises(CifError, match="not a CIF"):
        parse_cif("Na 0 0 0\nCl 0.5 0.5 0.5\n")
    with pytest.raises(CifError, match="not a CIF"):
        parse_cif('{"material_id": "mp-1"}')


def test_cif_with_a_broken_loop(crystals):
    with pytest.raises(CifError, match="no structure could be read"):
        parse_cif(crystals.broken_loop_cif())


def test_cif_without_atoms(crystals):
    header = crystals.nacl().to(fmt="cif").split("loop_")[0]
    with pytest.raises(CifError):
        parse_cif(header)


def test_disordered_cif_parses_but_does_not_featurise():
    text = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]]).to(fmt="cif")
    structure = parse_cif(text)
    assert not structure.is_ordered
    with pytest.raises(FeaturisationError, match=r"disordered structure \(partial occupancies\) is not supported"):
        crystal_graph(structure)


def test_errors_are_value_errors():
    # the CLI and the app catch ValueError for "the user's file is bad"
    assert issubclass(CifError, ValueError) and issubclass(FeaturisationError, ValueError)


def test_structure_summary(crystals):
    summary = structure_summary(crystals.nacl())
    assert summary["formula"] == "NaCl" and summary["nsites"] == 8 and summary["nelements"] == 2
    assert summary["spacegroup_number"] == 225 and summary["elements"] == "Cl Na"
    # rock salt with a = 5.64 Å: 4 NaCl (58.44 g/mol) per 179.4 Å³ → 2.164 g/cm³
    assert summary["density"] == pytest.approx(4 * 58.44 / 6.02214e23 / (5.64e-8) ** 3, rel=1e-3)
    assert spacegroup_number(crystals.silicon()) == 227
    assert spacegroup_number(crystals.cscl()) == 221


@pytest.mark.parametrize(
    "number, name",
    [(1, "triclinic"), (2, "triclinic"), (15, "monoclinic"), (16, "orthorhombic"), (142, "tetragonal"),
     (166, "trigonal"), (194, "hexagonal"), (225, "cubic"), (230, "cubic"), (0, None), (231, None),
     (None, None), (float("nan"), None)],
)
def test_crystal_system(number, name):
    assert crystal_system(number) == name


# --------------------------------------------------------------------------- what is wrong or unusual


def cif_with_sites(rows: str, a: float = 5.0) -> str:
    """A P1 cubic CIF with the given ``_atom_site`` rows (label, type, x, y, z, occupancy)."""
    return (
        f"data_test\n_cell_length_a {a}\n_cell_length_b {a}\n_cell_length_c {a}\n"
        "_cell_angle_alpha 90\n_cell_angle_beta 90\n_cell_angle_gamma 90\n"
        "_symmetry_space_group_name_H-M 'P 1'\n_symmetry_Int_Tables_number 1\n"
        "loop_\n_symmetry_equiv_pos_as_xyz\n  'x, y, z'\n"
        "loop_\n_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n"
        "_atom_site_fract_z\n_atom_site_occupancy\n" + rows
    )


CHEMICAL_COMPONENT = """data_HOH
#
_chem_comp.id                HOH
_chem_comp.name              WATER
_chem_comp.type              NON-POLYMER
_chem_comp.formula           "H2 O"
#
loop_
_chem_comp_atom.comp_id
_chem_comp_atom.atom_id
_chem_comp_atom.type_symbol
_chem_comp_atom.model_Cartn_x
_chem_comp_atom.model_Cartn_y
_chem_comp_atom.model_Cartn_z
HOH O  O 0.000 0.000 0.000
HOH H1 H 0.957 0.000 0.000
HOH H2 H -0.240 0.927 0.000
"""

BOND_VALENCE_TABLE = """data_bvparm
_audit_creation_date 2020-05-11
loop_
_valence_param_atom_1
_valence_param_atom_1_valence
_valence_param_atom_2
_valence_param_atom_2_valence
_valence_param_Ro
_valence_param_B
_valence_param_ref_id
Ag 1 O -2 1.842 0.37 a
Al 3 O -2 1.651 0.37 a
"""


@pytest.mark.parametrize(("text", "kind"), [(CHEMICAL_COMPONENT, "chemical-component"),
                                            (BOND_VALENCE_TABLE, "bond-valence")])
def test_a_cif_without_a_crystal_says_what_it_is(text, kind):
    with pytest.raises(CifError, match="describes no crystal structure") as error:
        parse_cif(text)
    assert kind in str(error.value) and "not a CIF" not in str(error.value)


def test_a_pseudo_atom_read_as_a_superheavy_element_is_named():
    # pymatgen reads the atom type NH3 as nihonium (Nh, Z = 113) with only a warning
    text = cif_with_sites("N1 NH3 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1\n")
    with pytest.raises(CifError, match=r"atom type 'NH3' was read as the element nihonium \(Nh, Z = 113\)"):
        parse_cif(text)


def test_guessed_atom_types_are_noted():
    reading = read_cif(cif_with_sites("O1 Ow 0 0 0 1\nNa1 Na 0.5 0.5 0.5 1\n"))
    assert sorted(el.symbol for el in reading.structure.composition.elements) == ["Na", "O"]
    assert reading.notes == ("the CIF reader read atom type 'Ow' as O",)
    assert read_cif(cif_with_sites("Na1 Na 0 0 0 1\nCl1 Cl 0.5 0.5 0.5 1\n")).notes == ()


def test_why_pymatgen_built_no_structure_is_said():
    with pytest.raises(CifError, match="Occupancy 1.5 exceeded tolerance"):
        parse_cif(cif_with_sites("Na1 Na 0 0 0 1.5\n"))
    with pytest.raises(CifError, match="could not convert string to float: '0.5a'"):
        parse_cif(cif_with_sites("Na1 Na 0 0 0 1\nCl1 Cl 0.5a 0.5 0.5 1\n"))


# --------------------------------------------------------------------------- disorder


def test_mixed_site_becomes_its_majority_species():
    structure = parse_cif(cif_with_sites("Fe1 Fe 0 0 0 0.7\nCo1 Co 0 0 0 0.3\nO1 O 0.5 0.5 0.5 1\n", a=4.2))
    assert not structure.is_ordered and len(structure) == 2
    ordered, description = majority_occupant(structure)
    assert ordered.is_ordered and ordered.composition.reduced_formula == "FeO"
    np.testing.assert_allclose(ordered.frac_coords, structure.frac_coords)
    assert ordered.lattice == structure.lattice
    assert description.startswith("disordered structure (Fe0.7Co0.3O: 1 of 2 sites partially occupied) "
                                  "placed as FeO, the majority occupant of each site")
    # a tie goes to the species listed first
    tie = parse_cif(cif_with_sites("Co1 Co 0 0 0 0.5\nFe1 Fe 0 0 0 0.5\nO1 O 0.5 0.5 0.5 1\n", a=4.2))
    assert majority_occupant(tie)[0].composition.reduced_formula == "CoO"


def test_a_partly_vacant_site_keeps_its_atom():
    structure = Structure(Lattice.cubic(4.0), [{"Li": 0.3}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ordered, description = majority_occupant(structure)
    assert ordered.composition.reduced_formula == "Li2O2" and len(ordered) == 2  # LiO, named as a peroxide
    assert "vacancies ignored" in description and "split" not in description


def test_split_site_alternatives_of_one_atom_collapse_to_one():
    # Li split over four positions 0.4 Å apart around (0, 0, 0), occupancies 0.25 each: one atom
    lattice = Lattice.cubic(5.0)
    offsets = [[0.04, 0, 0], [-0.04, 0, 0], [0, 0.04, 0], [0, -0.04, 0]]
    structure = Structure(lattice, [{"Li": 0.25}] * 4 + ["F"], offsets + [[0.5, 0.5, 0.5]])
    ordered, description = majority_occupant(structure)
    assert ordered.composition.reduced_formula == "LiF" and len(ordered) == 2
    np.testing.assert_allclose(ordered.frac_coords[0], offsets[0])  # the first listed alternative
    assert description.endswith("3 split-site alternatives dropped")
    crystal_graph(ordered)  # no atoms 0.3 Å apart any more
    # the most occupied alternative wins
    uneven = Structure(lattice, [{"Li": 0.3}, {"Li": 0.7}, "F"], [[0.04, 0, 0], [-0.04, 0, 0], [0.5, 0.5, 0.5]])
    np.testing.assert_allclose(majority_occupant(uneven)[0].frac_coords[0], [-0.04, 0, 0])


def test_close_partial_sites_that_can_both_be_occupied_are_kept():
    lattice = Lattice.cubic(5.0)
    # occupancies adding up to more than 1: not alternatives of one atom
    both = Structure(lattice, [{"Li": 0.6}, {"Li": 0.6}, "F"], [[0.1, 0, 0], [-0.1, 0, 0], [0.5, 0.5, 0.5]])
    assert len(majority_occupant(both)[0]) == 3
    # different elements, or farther apart than SPLIT_SITE_DISTANCE: kept too
    mixed = Structure(lattice, [{"Li": 0.5}, {"Na": 0.5}, "F"], [[0.1, 0, 0], [-0.1, 0, 0], [0.5, 0.5, 0.5]])
    assert len(majority_occupant(mixed)[0]) == 3
    far = 0.6 * SPLIT_SITE_DISTANCE / 5.0
    apart = Structure(lattice, [{"Li": 0.5}, {"Li": 0.5}, "F"], [[far, 0, 0], [-far, 0, 0], [0.5, 0.5, 0.5]])
    assert len(majority_occupant(apart)[0]) == 3


def test_an_ordered_structure_is_left_alone(crystals):
    structure = crystals.nacl()
    ordered, description = majority_occupant(structure)
    assert ordered is structure and description is None
