"""Is a generated crystal a crystal? The two validity rules the generator is judged by.

- **Paper's rule** (Court et al., J. Chem. Inf. Model. 60, 4518, 2020): the structure has sites
  and no two atoms (periodic images included) lie closer than 0.5 Å. A grid of random atoms far
  enough apart passes it; an untrained model scored 42 % by it.
- **Strict rule** (matmap, :func:`strict_validity`): what a materials scientist would call a
  plausible member of the generator's families —

  1. the structure written as CIF parses back (pymatgen);
  2. 2 to 40 sites (the selection's largest conventional cell has 40);
  3. no two atoms closer than 0.5 Å;
  4. spglib (``symprec`` 0.1 Å, the Materials Project's tolerance) finds a cubic space group (195–230);
  5. the reduced formula has the shape of one of the four families: AB, ABX3, X2YZ or XYZ
     (sorted integer ratios 1:1, 1:1:3, 1:1:2, 1:1:1, with as many elements);
  6. (added by matmap to the issue's five) at most :data:`MAX_ATOM_DENSITY` atoms per Å³: a
     decoded cell of 0.8 Å holding two atoms 0.66 Å apart passes rules 1–5 but is no crystal
     (the densest of the 6,608 training crystals holds 0.17 atoms per Å³, the densest of mp2024 0.23).

:func:`strict_validity` returns the first rule broken, so a report can count the reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Shortest allowed interatomic distance, Å (Court et al. 2020).
MIN_DISTANCE = 0.5
#: spglib distance tolerance, Å.
SYMPREC = 0.1
MIN_SITES, MAX_SITES = 2, 40
#: Most atoms per Å³ a strictly valid crystal may hold (rule 6).
MAX_ATOM_DENSITY = 0.3
#: Family name → sorted integer ratio of its reduced formula.
FAMILY_SHAPES = {"AB": (1, 1), "ABX3": (1, 1, 3), "X2YZ": (1, 1, 2), "XYZ": (1, 1, 1)}


@dataclass(frozen=True)
class Validity:
    """The verdict on one structure.

    Attributes:
        paper: passes the paper's rule (sites, all distances > 0.5 Å).
        strict: passes every strict rule.
        reason: the first strict rule broken (``None`` when strict).
        spacegroup_number: found by spglib at ``symprec`` 0.1 Å (``None`` when not reached or none found).
        shape: the family shape of the reduced formula (``"ABX3"`` …), ``None`` when it has none.
    """

    paper: bool
    strict: bool
    reason: str | None
    spacegroup_number: int | None = None
    shape: str | None = None


def min_distance_ok(structure, min_distance: float = MIN_DISTANCE) -> bool:
    """True when the structure has sites and no two atoms (periodic images included) lie
    closer than ``min_distance`` Å.

    Raises:
        ValueError: ``min_distance`` is not positive.
    """
    if not min_distance > 0:
        raise ValueError(f"min_distance must be > 0 Å, got {min_distance!r}")
    if len(structure) == 0:
        return False
    if min(structure.lattice.abc) < min_distance:  # every atom meets its own image: no neighbour search
        return False
    centres, _, _, _ = structure.get_neighbor_list(r=min_distance)
    return len(centres) == 0


def family_shape(composition) -> str | None:
    """``"AB"``, ``"ABX3"``, ``"X2YZ"`` or ``"XYZ"`` when the reduced formula has that shape, else ``None``.

    Args:
        composition: a pymatgen ``Composition`` or a formula string.
    """
    from ml.generation.voxel_data import stoichiometry

    try:
        ratio = stoichiometry(composition)
    except ValueError:
        return None
    for name, shape in FAMILY_SHAPES.items():
        if ratio == shape:
            return name
    return None


def strict_validity(structure) -> Validity:
    """Judge one generated structure by both rules (module docstring).

    Args:
        structure: a pymatgen ``Structure`` (or ``None`` for a crystal that did not decode).

    Returns:
        :class:`Validity`; ``reason`` names the first strict rule broken.
    """
    import spglib
    from pymatgen.core import Structure

    if structure is None or len(structure) == 0:
        return Validity(False, False, "no structure decoded")
    paper = min_distance_ok(structure)
    if min(structure.lattice.abc) < MIN_DISTANCE:  # before the CIF reader meets a cell it cannot handle
        return Validity(paper, False, f"atoms closer than {MIN_DISTANCE} Å (a cell edge of "
                                      f"{min(structure.lattice.abc):.2f} Å brings every atom that close to its image)")
    try:
        parsed = Structure.from_str(structure.to(fmt="cif"), fmt="cif")
    except Exception as exc:  # noqa: BLE001 (any failure to read it back breaks rule 1)
        return Validity(paper, False, f"CIF does not parse back ({type(exc).__name__})")
    if not MIN_SITES <= len(parsed) <= MAX_SITES:
        return Validity(paper, False, f"{len(parsed)} sites (allowed {MIN_SITES}–{MAX_SITES})")
    if not paper:
        return Validity(paper, False, f"atoms closer than {MIN_DISTANCE} Å")
    density = len(parsed) / parsed.volume
    if density > MAX_ATOM_DENSITY:
        return Validity(paper, False, f"{density:.2f} atoms per Å³ (at most {MAX_ATOM_DENSITY})")
    cell = (parsed.lattice.matrix, parsed.frac_coords, parsed.atomic_numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=SYMPREC)
    number = None if dataset is None else int(dataset.number)
    shape = family_shape(parsed.composition)
    if number is None or not 195 <= number <= 230:
        return Validity(paper, False, "not cubic" if number else "no space group found", number, shape)
    if shape is None:
        return Validity(paper, False, f"formula {parsed.composition.reduced_formula} is not AB, ABX3, X2YZ or XYZ",
                        number, shape)
    return Validity(paper, True, None, number, shape)
