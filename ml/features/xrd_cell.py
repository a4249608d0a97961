"""One structure read for :mod:`ml.features.xrd_sim`: its reciprocal lattice, its scatterers grouped
by element, and the box of Miller indices that holds the limiting sphere (step 1 of the physics in
:mod:`ml.features.xrd_sim`); a skewed cell whose box is much larger than the sphere is first
LLL-reduced (same crystal, same reflections). Everything the simulator cannot do faithfully is
refused here with a :class:`~ml.features.errors.FeaturisationError`, before anything large is
allocated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ml.features.errors import FeaturisationError
from ml.features.xrd import XRDConfig
from ml.features.xrd_scattering import scattering_table

#: LLL-reduce the lattice when the index box holds this many times the sphere's reflections.
_LLL_BOX_RATIO = 4.0


@dataclass(frozen=True)
class Cell:
    """What the simulator needs of one structure.

    Attributes:
        recip: crystallographic reciprocal lattice ``B = (A⁻¹)ᵀ`` of the (possibly LLL-reduced)
            cell, rows ``b1, b2, b3`` in Å⁻¹, shape ``(3, 3)``.
        frac: fractional coordinates of the scatterers in that cell, ``(n, 3)``, sorted by element.
        occu: occupancy of each scatterer, ``(n,)``.
        elements: rows of :func:`ml.features.xrd_scattering.scattering_table`, one per distinct
            element, ``(E,)``.
        bounds: ``(E + 1,)`` offsets: scatterers of element ``e`` are ``bounds[e]:bounds[e + 1]``.
        hkl_max: ``(H, K, L)``, the index box that holds the limiting sphere.
    """

    recip: np.ndarray
    frac: np.ndarray
    occu: np.ndarray
    elements: np.ndarray
    bounds: np.ndarray
    hkl_max: tuple[int, int, int]


def _index_box(lattice: np.ndarray, g_max: float) -> tuple[int, int, int]:
    # |h| = |g · a| ≤ |g| |a|: the box of indices that contains the sphere |g| ≤ g_max
    lengths = np.linalg.norm(lattice, axis=1)
    return tuple(int(math.floor(g_max * length + 1e-9)) for length in lengths)


def _scatterers(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The scatterers of ``structure`` sorted by element: ``(site index (n,), occupancy (n,),
    elements (E,) rows of the scattering table, bounds (E + 1,))``.

    Raises:
        FeaturisationError: an element without scattering coefficients.
    """
    table = scattering_table()
    rows, sites, occus = [], [], []
    for j, site in enumerate(structure):
        for species, occu in site.species.items():
            symbol = getattr(species, "symbol", str(species))
            row = table.index.get(symbol)
            if row is None:
                raise FeaturisationError(f"no X-ray scattering coefficients for {symbol} (pymatgen's table)")
            rows.append(row)
            sites.append(j)
            occus.append(occu)
    rows_arr = np.asarray(rows)
    order = np.argsort(rows_arr, kind="stable")
    rows_sorted = rows_arr[order]
    elements, starts = np.unique(rows_sorted, return_index=True)
    return np.asarray(sites)[order], np.asarray(occus, dtype=float)[order], elements, np.append(starts, len(rows_sorted))


def _reduced_if_skewed(lattice: np.ndarray, frac: np.ndarray, g_max: float,
                       expected: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """``(lattice (3, 3) Å, frac (n, 3), index box)``, LLL-reduced when the box would hold more than
    :data:`_LLL_BOX_RATIO` times the ``expected`` reflections (the same crystal either way)."""
    box = _index_box(lattice, g_max)
    n_box = (box[0] + 1) * (2 * box[1] + 1) * (2 * box[2] + 1)
    if n_box > _LLL_BOX_RATIO * max(expected, 1.0) and n_box > 4096:
        from pymatgen.core import Lattice

        reduced = Lattice(lattice).get_lll_reduced_lattice().matrix
        transform = np.rint(reduced @ np.linalg.inv(lattice))  # reduced = T A, T unimodular
        if np.allclose(transform @ lattice, reduced, atol=1e-6) and abs(round(np.linalg.det(transform))) == 1:
            frac = frac @ np.linalg.inv(transform)  # r = f A = f' T A
            lattice = transform @ lattice
            box = _index_box(lattice, g_max)
    return lattice, frac, box


def prepare_cell(
    structure, config: XRDConfig, max_reflections: int, debye_waller_factors: dict[str, float] | None
) -> tuple[Cell, np.ndarray | None]:
    """Read ``structure`` into a :class:`Cell` and its per-element isotropic B factors (Å², ``(E,)``;
    ``None`` without ``debye_waller_factors``).

    Raises:
        FeaturisationError: no sites, anisotropic displacements (``U11_cif``), a degenerate
            lattice, non-finite coordinates, more than ``max_reflections`` half-space reflections
            up to ``config.two_theta_max``, an element without scattering coefficients.
    """
    if len(structure) == 0:
        raise FeaturisationError("the structure has no sites")
    if "U11_cif" in structure.site_properties:
        raise FeaturisationError(
            "anisotropic displacement parameters (U11_cif …) are not supported by ml.features.xrd_sim; "
            "use ml.features.xrd.xrd_pattern"
        )
    lattice = np.array(structure.lattice.matrix, dtype=float)
    volume = abs(float(np.linalg.det(lattice))) if np.isfinite(lattice).all() else 0.0
    if not volume > 1e-6 * max(np.linalg.norm(lattice, axis=1).prod(), 1e-300):
        raise FeaturisationError("the lattice is degenerate (zero or non-finite cell volume)")
    frac = np.array(structure.frac_coords, dtype=float)
    if not np.isfinite(frac).all():
        raise FeaturisationError("the structure has non-finite coordinates")

    g_max = 2 * math.sin(math.radians(config.two_theta_max / 2)) / config.wavelength
    expected = 2 * math.pi / 3 * g_max**3 * volume  # half-sphere volume × lattice-point density
    if expected > max_reflections:
        raise FeaturisationError(
            f"the cell is too large to simulate: about {expected:,.0f} reflections up to "
            f"2θ = {config.two_theta_max}° (cap {max_reflections:,}; volume {volume:,.0f} Å³)"
        )
    sites, occu, elements, bounds = _scatterers(structure)
    lattice, frac, box = _reduced_if_skewed(lattice, frac, g_max, expected)

    debye_waller = None
    if debye_waller_factors:
        symbols = {v: k for k, v in scattering_table().index.items()}
        debye_waller = np.array([float(debye_waller_factors.get(symbols[int(r)], 0.0)) for r in elements])
    cell = Cell(recip=np.linalg.inv(lattice).T, frac=frac[sites], occu=occu, elements=elements, bounds=bounds,
                hkl_max=box)
    return cell, debye_waller
