"""Reading CIF text into pymatgen ``Structure`` objects, with clear errors for bad input, and
the ordered approximation of a disordered structure (:func:`majority_occupant`)."""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass

import numpy as np

from ml.features.atom_features import MAX_Z

#: Crystal system of each space-group number range (International Tables).
_CRYSTAL_SYSTEMS = [
    (2, "triclinic"),
    (15, "monoclinic"),
    (74, "orthorhombic"),
    (142, "tetragonal"),
    (167, "trigonal"),
    (194, "hexagonal"),
    (230, "cubic"),
]

#: CIF files that describe no crystal: a data name they carry → what they are.
_NOT_A_CRYSTAL = {
    "_chem_comp": "a chemical-component (molecule) definition, as in the PDB's component dictionary",
    "_valence_param": "a table of bond-valence parameters",
    "_refln_index_h": "a list of reflections (structure factors)",
    "_pd_meas": "measured powder-diffraction data",
}
#: A CIF block header or data name at the start of a line.
_CIF_SYNTAX = re.compile(r"^\s*(data_\S*|_[A-Za-z]\w*)", re.MULTILINE)
#: pymatgen's CIF reader says "<atom type> parsed as <element>" when it guesses an element.
_GUESSED = re.compile(r"^(?P<type>.+) parsed as (?P<element>[A-Za-z]*)$")

# spglib prints "ssm_get_exact_positions failed" lines to stderr for cells it cannot refine
os.environ.setdefault("SPGLIB_WARNING", "OFF")


class CifError(ValueError):
    """Text that holds no readable crystal structure."""


@dataclass(frozen=True)
class CifReading:
    """The first structure of a CIF and what the reader had to guess to build it.

    Attributes:
        structure: the pymatgen ``Structure`` as the file gives it (partial occupancies kept).
        notes: one sentence per guess, for the user (an atom type such as ``Ow`` or ``NO3``
            read as an element, or skipped).
    """

    structure: object
    notes: tuple[str, ...] = ()


def read_cif(text: str) -> CifReading:
    """The first structure in CIF ``text``, with notes on the atom types pymatgen guessed.

    Raises:
        CifError: the text is empty, is not CIF, is a CIF that describes no crystal (a
            chemical-component file, a bond-valence table …), holds no structure pymatgen can
            build, or has an atom type read as an element beyond Z = 100 (a pseudo-atom such
            as ``NH3`` read as nihonium).
    """
    from pymatgen.io.cif import CifParser

    if not text or not text.strip():
        raise CifError("the file is empty")
    if "_cell_length_a" not in text and "_atom_site" not in text:
        raise CifError(_why_no_structure(text))
    parser = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parser = CifParser.from_str(text)
            structure = parser.parse_structures(primitive=False)[0]
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError … on bad CIFs
        raise CifError(f"no structure could be read from this CIF: {_reason(exc, parser)}") from exc
    if len(structure) == 0:
        raise CifError("the CIF holds no atom sites")
    guesses = [m.group("type", "element") for w in parser.warnings if (m := _GUESSED.match(w))]
    guesses = list(dict.fromkeys(guesses))  # one note per atom type
    _refuse_pseudo_atoms(structure, guesses)
    notes = tuple(
        f"the CIF reader read atom type {kind!r} as {element}" if element
        else f"the CIF reader skipped the sites of atom type {kind!r} (not an element)"
        for kind, element in guesses
    )
    return CifReading(structure, notes)


def parse_cif(text: str):
    """The first structure in CIF ``text`` as a pymatgen ``Structure`` (see :func:`read_cif`).

    Raises:
        CifError: as :func:`read_cif`.
    """
    return read_cif(text).structure


def _why_no_structure(text: str) -> str:
    """Why text without ``_cell_length_a`` or ``_atom_site`` fields holds no crystal."""
    if not _CIF_SYNTAX.search(text):
        return "this is not a CIF file (no data_ block, no _cell_length_a or _atom_site fields)"
    kinds = [kind for name, kind in _NOT_A_CRYSTAL.items() if name in text]
    what = f": it is {kinds[0]}" if kinds else ""
    return f"this CIF describes no crystal structure (no unit cell _cell_length_a, no _atom_site fields){what}"


def _reason(exc: Exception, parser) -> str:
    """One line on why pymatgen built no structure: its reason for the first data block when it
    gave one (e.g. "Occupancy 1.5 exceeded tolerance."), else the exception."""
    for warning in getattr(parser, "warnings", None) or []:
        if warning.startswith("No structure parsed") and "\n" in warning:
            reason = warning.split("\n", 1)[1].strip()
            if reason:
                return _field_reason(reason.splitlines()[0])
    text = str(exc).strip()
    return _field_reason(text.splitlines()[0]) if text else type(exc).__name__


def _field_reason(reason: str) -> str:
    """pymatgen's reason in the user's terms where it is an internal one: a missing field (a
    ``KeyError`` of its quoted name), a loop whose values do not fill its columns."""
    if re.fullmatch(r"'_[\w.]+'", reason):
        return f"the field {reason.strip(chr(39))} is missing"
    if re.match(r"zip\(\) argument \d+ is (longer|shorter)|len\(items\)=\d+ is not a multiple of n=\d+", reason):
        return f"the values of a loop do not fill its columns (one missing or extra in a row?; {reason})"
    return reason


def _refuse_pseudo_atoms(structure, guesses: list[tuple[str, str]]) -> None:
    """Raise :class:`CifError` when a guessed atom type became an element beyond Z = 100."""
    from pymatgen.core.periodic_table import DummySpecies, Element

    elements = [sp if isinstance(sp, Element) else sp.element for sp in structure.composition
                if not isinstance(sp, DummySpecies)]
    heavy = {el.symbol: el for el in elements if el.Z > MAX_Z}
    for kind, symbol in guesses:
        if symbol in heavy:
            el = heavy[symbol]
            raise CifError(
                f"atom type {kind!r} was read as the element {el.long_name.lower()} ({symbol}, Z = {el.Z}): it looks "
                "like a pseudo-atom or molecular group, which the model cannot take; write its atoms out "
                "one by one"
            )


def crystal_system(spacegroup_number: float | int | None) -> str | None:
    """``"cubic"`` … ``"triclinic"`` for an international space-group number 1–230."""
    if spacegroup_number is None or not np.isfinite(spacegroup_number):
        return None
    number = int(spacegroup_number)
    for upper, name in _CRYSTAL_SYSTEMS:
        if 1 <= number <= upper:
            return name
    return None


def spacegroup_number(structure, symprec: float = 0.1) -> int | None:
    """International space-group number from spglib (``symprec`` in Å), ``None`` if it fails."""
    import spglib

    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    try:
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    except Exception:  # spglib raises its own SpglibError on degenerate cells
        return None
    return int(dataset.number) if dataset is not None else None


def structure_summary(structure, symmetry: bool = True) -> dict:
    """Formula (reduced, e.g. ``LiCoO2``), ``nsites``, ``nelements``, ``density`` (g/cm³),
    ``spacegroup_number`` and ``elements`` (space-separated symbols) of a structure.

    ``symmetry=False`` leaves out the two costly values, ``density`` (NaN) and
    ``spacegroup_number`` (``None``): spglib and pymatgen's density take 4.4 of the 15 ms a
    mirror CIF costs to featurise, and the dataset's properties table often has both.
    """
    composition = structure.composition
    return {
        "formula": composition.reduced_formula,
        "nsites": len(structure),
        "nelements": len(composition.elements),
        "density": float(structure.density) if symmetry else float("nan"),
        "spacegroup_number": spacegroup_number(structure) if symmetry else None,
        "elements": " ".join(sorted(el.symbol for el in composition.elements)),
    }


@dataclass(frozen=True)
class CellArrays:
    """An ordered structure as the arrays that rebuild it exactly: what the graph cache keeps of
    each material, so that a later pass (its XRD pattern) builds the same ``Structure`` in 0.5 ms
    instead of parsing the CIF again (8 ms on a mirror CIF).

    Attributes:
        lattice: ``(3, 3)`` float64, Å, rows are the lattice vectors (``Lattice.matrix``).
        atomic_numbers: ``(n,)`` int, one element per site.
        frac_coords: ``(n, 3)`` float64 fractional coordinates, as the structure holds them.
    """

    lattice: np.ndarray
    atomic_numbers: np.ndarray
    frac_coords: np.ndarray

    @classmethod
    def of(cls, structure) -> "CellArrays":
        """The arrays of an ordered ``structure`` (oxidation states and site properties are not kept:
        the XRD simulation reads elements, occupancies 1, coordinates and the lattice only).

        Raises:
            ValueError: the structure is disordered.
        """
        if not structure.is_ordered:
            raise ValueError("only an ordered structure is kept as arrays")
        return cls(np.array(structure.lattice.matrix, dtype=np.float64),
                   np.array(structure.atomic_numbers, dtype=np.int64),
                   np.array(structure.frac_coords, dtype=np.float64))

    def structure(self):
        """The pymatgen ``Structure``: same lattice matrix, elements and fractional coordinates."""
        from pymatgen.core import Element, Lattice, Structure

        return Structure(Lattice(self.lattice), [Element.from_Z(int(z)) for z in self.atomic_numbers],
                         self.frac_coords)


# --------------------------------------------------------------------------- disorder

#: Two partially occupied sites of one element closer than this (Å), whose occupancies add up
#: to at most 1, are taken as alternative positions of one atom (a "split site").
SPLIT_SITE_DISTANCE = 1.0
_OCCUPANCY_TOLERANCE = 0.02


def majority_occupant(structure, split_distance: float = SPLIT_SITE_DISTANCE):
    """An ordered approximation of a structure with partial occupancies, and what was done.

    The approximation (for placing experimental CIFs on a map of ordered crystals):

    1. every site holds one atom of its majority species: the species of largest occupancy
       (ties: the first listed in the file). Vacancy is not an occupant: a site of
       occupancy 0.3 Li becomes a full Li site;
    2. split sites: partially occupied sites of the same majority element closer than
       ``split_distance`` Å whose occupancies add up to at most 1 (+0.02) are alternative
       positions of one atom; only the most occupied one (first in the file on ties) is kept.

    An ordered structure is returned as it is (the same object) with ``None``.

    Returns:
        ``(ordered structure, description)``: the description, for the user, names the
        approximation and counts the sites it changed and dropped.
    """
    from pymatgen.core import Structure

    if structure.is_ordered:
        return structure, None
    occupancy = np.array([site.species.num_atoms for site in structure])
    majority = [max(site.species.items(), key=lambda item: item[1])[0] for site in structure]
    mixed = sum(1 for site in structure if not site.is_ordered)
    partial = occupancy < 1 - 1e-6
    centre, neighbour, _images, _distance = structure.get_neighbor_list(split_distance)
    close: dict[int, set[int]] = {}
    for i, j in zip(centre.tolist(), neighbour.tolist()):
        if i != j and partial[i] and partial[j] and occupancy[i] + occupancy[j] <= 1 + _OCCUPANCY_TOLERANCE \
                and _symbol(majority[i]) == _symbol(majority[j]):
            close.setdefault(i, set()).add(j)
    kept = np.zeros(len(structure), dtype=bool)
    dropped = np.zeros(len(structure), dtype=bool)
    for i in sorted(close, key=lambda i: (-occupancy[i], i)):  # the most occupied alternative first
        if any(kept[j] for j in close[i]):
            dropped[i] = True
        else:
            kept[i] = True
    keep = np.flatnonzero(~dropped)
    ordered = Structure(
        structure.lattice,
        [majority[i] for i in keep],
        structure.frac_coords[keep],
        labels=[structure[i].label for i in keep],
    )
    description = (
        f"disordered structure ({_plain_formula(structure.composition)}: {mixed} of {len(structure)} sites "
        f"partially occupied) placed as {ordered.composition.reduced_formula}, the majority occupant of each "
        "site (vacancies ignored)"
        + (f", {int(dropped.sum())} split-site alternative{'s' if dropped.sum() != 1 else ''} dropped"
           if dropped.any() else "")
    )
    return ordered, description


def _plain_formula(composition) -> str:
    """``Fe0.5Co0.5O`` (pymatgen writes ``Fe0.5Co0.5O1`` for a fractional composition)."""
    return re.sub(r"(?<=[A-Za-z])1(?![\d.])", "", composition.reduced_formula)


def _symbol(species) -> str:
    """The element symbol of a pymatgen species (``Fe`` for ``Fe3+``)."""
    return getattr(species, "symbol", str(species))
