"""Reading CIF text into pymatgen ``Structure`` objects, with clear errors for bad input."""

from __future__ import annotations

import os
import warnings

import numpy as np

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


# spglib prints "ssm_get_exact_positions failed" lines to stderr for cells it cannot refine
os.environ.setdefault("SPGLIB_WARNING", "OFF")


class CifError(ValueError):
    """Text that holds no readable crystal structure."""


def parse_cif(text: str):
    """The first structure in CIF ``text`` as a pymatgen ``Structure``.

    Raises:
        CifError: the text is empty, is not CIF, or holds no structure pymatgen can build.
    """
    from pymatgen.core import Structure

    if not text or not text.strip():
        raise CifError("the file is empty")
    if "_cell_length_a" not in text and "_atom_site" not in text:
        raise CifError("this is not a CIF file (no _cell_length_a or _atom_site fields)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            structure = Structure.from_str(text, fmt="cif")
    except Exception as exc:  # pymatgen raises ValueError, KeyError, IndexError … on bad CIFs
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CifError(f"no structure could be read from this CIF: {reason}") from exc
    if len(structure) == 0:
        raise CifError("the CIF holds no atom sites")
    return structure


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


def structure_summary(structure) -> dict:
    """Formula (reduced, e.g. ``LiCoO2``), ``nsites``, ``nelements``, ``density`` (g/cm³),
    ``spacegroup_number`` and ``elements`` (space-separated symbols) of a structure."""
    composition = structure.composition
    return {
        "formula": composition.reduced_formula,
        "nsites": len(structure),
        "nelements": len(composition.elements),
        "density": float(structure.density),
        "spacegroup_number": spacegroup_number(structure),
        "elements": " ".join(sorted(el.symbol for el in composition.elements)),
    }

