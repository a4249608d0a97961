"""Reading CIFs: clear errors for bad input; structure summaries."""

from __future__ import annotations

import pytest

from ml.graph import FeaturisationError, crystal_graph
from ml.structures import CifError, crystal_system, parse_cif, spacegroup_number, structure_summary


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
    from pymatgen.core import Lattice, Structure

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
