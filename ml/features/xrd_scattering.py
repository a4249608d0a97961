"""pymatgen's X-ray scattering data for :mod:`ml.features.xrd_sim`: the Mott–Bethe coefficients of
its ``atomic_scattering_params.json`` (:func:`scattering_table`), the atomic scattering factors
computed from them (:func:`form_factors`, step 2 of the physics in :mod:`ml.features.xrd_sim`), and
its peak list: reflections merged within its 2θ tolerance, numerical leftovers dropped
(:func:`merge_peaks`, step 6). Both tolerances are read from pymatgen's
``AbstractDiffractionPatternCalculator``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np


@dataclass(frozen=True)
class ScatteringTable:
    """pymatgen's X-ray scattering coefficients, one row per element.

    Attributes:
        index: element symbol → row.
        z: atomic numbers, shape ``(n_elements,)``.
        a, b: coefficients ``a_i`` (Å) and ``b_i`` (Å²), shape ``(n_elements, 4)``.
        two_theta_tol: pymatgen's merge tolerance, degrees.
        scaled_intensity_tol: pymatgen's drop threshold on the 0–100 scale.
    """

    index: dict[str, int]
    z: np.ndarray
    a: np.ndarray
    b: np.ndarray
    two_theta_tol: float
    scaled_intensity_tol: float


@lru_cache(maxsize=1)
def scattering_table() -> ScatteringTable:
    """Read the coefficient file shipped with the installed pymatgen (the one it uses)."""
    from pymatgen.analysis.diffraction.core import AbstractDiffractionPatternCalculator
    from pymatgen.core.periodic_table import Element

    text = (resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json").read_text()
    params = json.loads(text)
    symbols = sorted(params, key=lambda s: Element(s).Z)
    coeff = np.zeros((len(symbols), 4, 2))
    for row, symbol in enumerate(symbols):
        values = np.asarray(params[symbol], dtype=float)
        coeff[row, : len(values)] = values
    return ScatteringTable(
        index={s: i for i, s in enumerate(symbols)},
        z=np.array([Element(s).Z for s in symbols], dtype=float),
        a=coeff[:, :, 0].copy(),
        b=coeff[:, :, 1].copy(),
        two_theta_tol=float(AbstractDiffractionPatternCalculator.TWO_THETA_TOL),
        scaled_intensity_tol=float(AbstractDiffractionPatternCalculator.SCALED_INTENSITY_TOL),
    )


def form_factors(s2: np.ndarray, rows: np.ndarray, debye_waller: np.ndarray | None = None) -> np.ndarray:
    """Atomic scattering factors ``f(s)`` of elements ``rows`` at ``s² = (sin θ / λ)²``.

    Args:
        s2: ``(M,)`` in Å⁻².
        rows: ``(E,)`` rows of :func:`scattering_table`.
        debye_waller: ``(E,)`` isotropic B factors in Å² (``None``: none).

    Returns:
        ``(M, E)`` float64, electrons.
    """
    table = scattering_table()
    a, b = table.a[rows], table.b[rows]  # (E, 4)
    sums = np.einsum("mei,ei->me", np.exp(-s2[:, None, None] * b[None]), a)
    f = table.z[rows][None, :] - 41.78214 * s2[:, None] * sums
    if debye_waller is not None:
        f = f * np.exp(-np.outer(s2, debye_waller))
    return f


def merge_peaks(two_theta: np.ndarray, intensity: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pymatgen's peak list from reflections: merge equal ``round(2θ / tol)``, drop leftovers.

    Returns:
        ``(two_theta, intensity)`` of the kept peaks, sorted by 2θ.
    """
    table = scattering_table()
    if two_theta.size == 0:
        return two_theta, intensity
    keys = np.round(two_theta / table.two_theta_tol).astype(np.int64)
    order = np.argsort(keys, kind="stable")
    keys = keys[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    peak_tt = np.minimum.reduceat(two_theta[order], starts)  # the smallest |g| of the group comes first
    peak_i = np.add.reduceat(intensity[order], starts)
    top = peak_i.max()
    if not top > 0:
        return peak_tt[:0], peak_i[:0]
    kept = peak_i / top * 100 > table.scaled_intensity_tol
    return peak_tt[kept], peak_i[kept]
