r"""A fast powder-XRD simulator that reproduces pymatgen's ``XRDCalculator`` (with ``symprec=0``).

:func:`xrd_patterns` gives, for many structures, the same ``(n_bins,)`` vectors as
:func:`ml.features.xrd.xrd_pattern` (pymatgen's peaks binned by :func:`ml.features.xrd.bin_peaks`, max = 1) at a
fraction of the cost; :func:`xrd_pattern_fast` does one structure. A structure is read by
:mod:`ml.features.xrd_cell` (reciprocal lattice, scatterers, index box), pymatgen's scattering
data and peak list are in :mod:`ml.features.xrd_scattering`; this module sums the reflections.

Physics (pymatgen ``analysis/diffraction/xrd.py``, after De Graef & McHenry, *Structure of
Materials*, ch. 11–12; Cullity & Stock, *Elements of X-Ray Diffraction*, ch. 4; International
Tables for Crystallography Vol. C, §6.1 and §4.3), every symbol in the units pymatgen uses:

1. Reflections. ``A`` (rows = lattice vectors, Å) has the crystallographic reciprocal lattice
   ``B = (A⁻¹)ᵀ`` (no 2π), ``g_hkl = (h, k, l) B`` and ``d_hkl = 1 / |g_hkl|``. Bragg's law
   ``λ = 2 d sin θ`` gives ``sin θ = λ |g| / 2``. Every lattice point with
   ``2 sin(θ_min) / λ ≤ |g| ≤ 2 sin(θ_max) / λ`` reflects (the limiting sphere cut to the 2θ
   range); symmetry-equivalent reflections are all enumerated, so no multiplicity factor.
2. Atomic scattering factor (Mott–Bethe form, Int. Tables C §4.3.1, with the coefficients of
   pymatgen's ``atomic_scattering_params.json``), ``s = sin θ / λ = |g| / 2`` in Å⁻¹:
   ``f(s) = Z − 41.78214 s² Σ_{i=1..4} a_i exp(−b_i s²)`` (41.78214 Å = 8π² a₀).
   Optional isotropic Debye–Waller factors multiply it by ``exp(−B s²)`` (pymatgen: none).
3. Structure factor with site occupancies ``o_j`` and fractional coordinates ``(x, y, z)_j``:
   ``F(hkl) = Σ_j o_j f_j(s) exp(2πi (h x_j + k y_j + l z_j))``.
4. Intensity with the Lorentz–polarisation factor (Cullity & Stock §4-9, unpolarised beam,
   no monochromator): ``I = |F|² (1 + cos² 2θ) / (sin² θ cos θ)``.
5. Friedel's law (real ``f``): ``I(−g) = I(g)``; only the half space ``h > 0``, or ``h = 0, k > 0``,
   or ``h = k = 0, l > 0`` is computed and its intensities doubled, as pymatgen does.
6. Peaks: reflections with the same ``round(2θ / TWO_THETA_TOL)`` (pymatgen's 1e-5°) are one
   peak at the smallest 2θ of the group (pymatgen keeps the first reflection in order of |g|)
   with the summed intensity; peaks with ``I / I_max · 100 ≤ SCALED_INTENSITY_TOL`` (1e-3,
   i.e. 1e-5 of the largest peak, the numerical leftovers of systematic absences) are
   dropped. ``scaled=True`` in pymatgen only rescales all peaks by ``100 / I_max``, which
   :func:`ml.features.xrd.bin_peaks`' max-normalisation cancels, so scaled and unscaled give the same
   vector. Both tolerances are read from pymatgen's ``AbstractDiffractionPatternCalculator``.
7. :func:`ml.features.xrd.bin_peaks` sums the peaks into ``config.n_bins`` bins and divides by the max.

Speed. pymatgen spends most of its time in a Python loop over reflections (hkl families) and
in ``M × N`` complex exponentials. Here the phase factorises,
``exp(2πi (h x + k y + l z)) = X^h Y^k Z^l`` with ``X = exp(2πi x)`` …, so for each element ``e``
the sums over its sites on a whole box of indices are one complex matrix product,
``F_e[(h, k), l] = Σ_{j∈e} (o_j X_j^h Y_j^k) Z_j^l = (P_eᵀ Q_e)[(h, k), l]``, with
``P_e`` of shape ``(n_e, (H + 1)(2K + 1))`` and ``Q_e`` of shape ``(n_e, 2L + 1)``; the reflections
inside the sphere are then gathered from the box. ``H, K, L = ⌊|g|_max · (|a|, |b|, |c|)⌋``
bound the indices; for a skewed cell whose box is much larger than the sphere the lattice is
first LLL-reduced (the reflections and intensities are those of the same crystal). Everything
else (form factors, Lorentz–polarisation, merging, thresholds) is vectorised over the
reflections of a structure; the per-structure Python work is a few dozen NumPy calls.
Structures are deliberately not padded into one array: their index boxes and site counts differ
by orders of magnitude (2 to 600 sites in the mirror), so padding would multiply the work, while
the per-structure call overhead is a few tenths of the ~1 ms a typical structure takes
(``bench/xrd.py``: 20–50× pymatgen's throughput, identical vectors).

Memory. Temporaries (the index box and the products above) are built in chunks of ``h`` planes
holding at most ``chunk_entries`` numbers each (default 2²² ≈ 4.2 M, 64 MB of complex128; a
chunk is never less than one plane), so memory stays bounded by the cell's reflection list
(about 100 bytes per reflection while merging). A structure whose half-sphere would hold more
than ``max_reflections`` reflections (default 4 M, about a 110 Å cubic cell at the default
range) is refused with a :class:`~ml.features.errors.FeaturisationError` before anything is allocated;
below the cap it runs, e.g. a 100 Å cubic cell (2.5 M reflections) in about 2 s and 0.3 GB,
where pymatgen takes minutes.

Threads. The matrix products are small (about 10⁵ complex multiply-adds for a typical cell), so
OpenBLAS's threads cost more than they save, and on a machine busy with other work they made the
simulator 20× slower; NumPy's BLAS therefore runs on one thread inside these functions
(threadpoolctl). Parallelism comes from processes (``bench/xrd.py --processes``).

Device. ``device=None`` computes everything with NumPy; ``device="cpu"`` / ``"cuda"`` / a
``torch.device`` runs the matrix products and gathers (the only super-linear step) in torch on
that device with the same code (``@``, ``reshape`` and indexing mean the same for both), in
complex128. It is tested on torch's CPU only and not tuned for a GPU: each structure costs a
few small transfers and kernel launches, so a GPU can only pay off for large cells.

Not supported (a :class:`~ml.features.errors.FeaturisationError`, never a silent difference): anisotropic
displacement site properties ``U11_cif …`` (pymatgen applies ``exp(−2π² hᵀU*h)`` per site) and
``symprec`` refinement; elements without scattering coefficients (Z > 99, dummy species), as in
pymatgen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from functools import lru_cache
from typing import Literal

import numpy as np

from ml.features.errors import FeaturisationError
from ml.features.xrd import XRDConfig, bin_peaks
from ml.features.xrd_cell import Cell, prepare_cell
from ml.features.xrd_scattering import form_factors, merge_peaks

#: Most numbers (complex or real) in one temporary array; a chunk of ``h`` planes never exceeds it.
DEFAULT_CHUNK_ENTRIES = 1 << 22
#: Most half-space reflections of one structure; larger cells are refused (see module doc).
DEFAULT_MAX_REFLECTIONS = 4_000_000


@lru_cache(maxsize=1)
def _blas_controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - scikit-learn brings it
        return None
    return ThreadpoolController()


def _single_blas_thread():
    """A context running NumPy's BLAS on one thread (see "Threads" in the module doc)."""
    controller = _blas_controller()
    return nullcontext() if controller is None else controller.limit(limits=1, user_api="blas")


def _to_device(device):
    """``None`` (NumPy) or a function moving a NumPy array to the torch ``device``."""
    if device is None:
        return None
    import torch

    target = torch.device(device)
    return lambda array: torch.as_tensor(array, device=target)


def _structure_factors(cell: Cell, P, Z, f: np.ndarray, flat) -> np.ndarray:
    """``F`` ``(M,)`` complex128 of the ``M`` reflections at the flat box positions ``flat``:
    ``Σ_e f_e · (P_eᵀ Z_e)`` gathered there (see "Speed" in the module doc). ``P`` ``(n, n_h n_k)``,
    ``Z`` ``(n, n_l)`` and ``flat`` are NumPy arrays or torch tensors on one device; ``f`` ``(M, E)``."""
    F = np.zeros(len(flat), dtype=np.complex128)
    for e in range(len(cell.elements)):
        sites = slice(int(cell.bounds[e]), int(cell.bounds[e + 1]))
        box_e = (P[sites].T @ Z[sites]).reshape(-1)[flat]  # (M,): Σ_j o_j X^h Y^k Z^l
        F += f[:, e] * (box_e if isinstance(box_e, np.ndarray) else box_e.cpu().numpy())
    return F


def _reflections(
    cell: Cell, config: XRDConfig, debye_waller, chunk_entries: int, move
) -> tuple[np.ndarray, np.ndarray]:
    """2θ (degrees) and intensity ``2 |F|² LP`` of every half-space reflection in range."""
    lam = config.wavelength
    g_min = 2 * math.sin(math.radians(config.two_theta_min / 2)) / lam
    g_max = 2 * math.sin(math.radians(config.two_theta_max / 2)) / lam
    H, K, L = cell.hkl_max
    n_k, n_l = 2 * K + 1, 2 * L + 1
    k = np.arange(-K, K + 1)
    l = np.arange(-L, L + 1)
    kl_cart = k[:, None, None] * cell.recip[1] + l[None, :, None] * cell.recip[2]  # (n_k, n_l, 3)

    two_pi_i = 2j * np.pi
    frac, occu = cell.frac, cell.occu
    Y = np.exp(two_pi_i * np.outer(frac[:, 1], k))  # (n, n_k)
    Z = np.exp(two_pi_i * np.outer(frac[:, 2], l))  # (n, n_l)
    if move is not None:
        Z = move(Z)
    # per h plane: Cartesian g (n_k n_l × 3), X ⊗ Y (n × n_k), one element's box (n_k × n_l)
    rows_per_chunk = max(1, chunk_entries // (n_k * max(3 * n_l, len(frac))))

    out_tt, out_i = [], []
    for h0 in range(0, H + 1, rows_per_chunk):
        h = np.arange(h0, min(H, h0 + rows_per_chunk - 1) + 1)
        cart = h[:, None, None, None] * cell.recip[0] + kl_cart[None]  # (n_h, n_k, n_l, 3)
        g2 = np.einsum("hkli,hkli->hkl", cart, cart)
        g = np.sqrt(g2)
        keep = (g <= g_max) & (g >= g_min)
        if h0 == 0:  # Friedel half space: h > 0, or h = 0 and (k > 0, or k = 0 and l > 0)
            keep[0, :K] = False
            keep[0, K, : L + 1] = False
        flat = np.flatnonzero(keep)
        if flat.size == 0:
            continue
        g = g.reshape(-1)[flat]
        s2 = (g / 2) ** 2
        f = form_factors(s2, cell.elements, debye_waller)  # (M, E)

        X = np.exp(two_pi_i * np.outer(frac[:, 0], h)) * occu[:, None]  # (n, n_h)
        P = (X[:, :, None] * Y[:, None, :]).reshape(len(frac), -1)  # (n, n_h n_k)
        if move is not None:
            P = move(P)
            flat_t = move(flat)
        F = _structure_factors(cell, P, Z, f, flat if move is None else flat_t)

        theta = np.arcsin(np.clip(lam * g / 2, -1, 1))
        lorentz = (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
        out_tt.append(np.degrees(2 * theta))
        out_i.append(2 * (F.real**2 + F.imag**2) * lorentz)
    if not out_tt:
        return np.zeros(0), np.zeros(0)
    return np.concatenate(out_tt), np.concatenate(out_i)


def _pattern(structure, config, chunk_entries, max_reflections, debye_waller_factors, move) -> np.ndarray:
    cell, debye_waller = prepare_cell(structure, config, max_reflections, debye_waller_factors)
    two_theta, intensity = _reflections(cell, config, debye_waller, chunk_entries, move)
    peak_tt, peak_i = merge_peaks(two_theta, intensity)
    pattern = bin_peaks(peak_tt, peak_i, config)
    if not pattern.any():
        if two_theta.size and not intensity.any():
            raise FeaturisationError("every XRD reflection has zero intensity")
        raise FeaturisationError(
            f"no XRD reflection in the 2θ range {config.two_theta_min}–{config.two_theta_max}°"
        )
    return pattern


def xrd_patterns(
    structures: Sequence,
    config: XRDConfig = XRDConfig(),
    *,
    on_error: Literal["raise", "zeros"] = "raise",
    device=None,
    debye_waller_factors: dict[str, float] | None = None,
    chunk_entries: int = DEFAULT_CHUNK_ENTRIES,
    max_reflections: int = DEFAULT_MAX_REFLECTIONS,
) -> np.ndarray:
    """Binned, max-normalised XRD patterns of ``structures``, equal to :func:`ml.features.xrd.xrd_pattern`'s.

    Args:
        structures: pymatgen ``Structure`` objects (not modified).
        config: the 2θ grid and wavelength.
        on_error: ``"raise"`` re-raises the first :class:`FeaturisationError` with the structure's
            position; ``"zeros"`` leaves that row all zero (a valid pattern has max 1).
        device: ``None`` for NumPy, else the torch device of the matrix products (see module doc).
        debye_waller_factors: isotropic B factors per element symbol, Å² (pymatgen's
            ``debye_waller_factors``; default none, as in :mod:`ml.features.xrd`).
        chunk_entries: most numbers in one temporary array.
        max_reflections: most half-space reflections of one structure.

    Returns:
        ``(len(structures), config.n_bins)`` float32, each row max 1 (or zeros, see ``on_error``).

    Raises:
        FeaturisationError: with ``on_error="raise"``: no reflection in range, a cell above
            ``max_reflections``, an element without scattering coefficients, a degenerate cell.
    """
    if on_error not in ("raise", "zeros"):
        raise ValueError(f"on_error must be 'raise' or 'zeros', not {on_error!r}")
    if chunk_entries < 1 or max_reflections < 1:
        raise ValueError("chunk_entries and max_reflections must be positive")
    move = _to_device(device)
    out = np.zeros((len(structures), config.n_bins), dtype=np.float32)
    with _single_blas_thread():
        for i, structure in enumerate(structures):
            try:
                out[i] = _pattern(structure, config, chunk_entries, max_reflections, debye_waller_factors, move)
            except FeaturisationError as exc:
                if on_error == "raise":
                    raise FeaturisationError(f"structure {i} ({structure.composition.reduced_formula}): {exc}") from exc
    return out


def xrd_pattern_fast(
    structure,
    config: XRDConfig = XRDConfig(),
    *,
    device=None,
    debye_waller_factors: dict[str, float] | None = None,
    chunk_entries: int = DEFAULT_CHUNK_ENTRIES,
    max_reflections: int = DEFAULT_MAX_REFLECTIONS,
) -> np.ndarray:
    """The pattern of one structure; a drop-in for :func:`ml.features.xrd.xrd_pattern`.

    Keyword arguments are those of :func:`xrd_patterns`.

    Returns:
        ``(config.n_bins,)`` float32, max 1.

    Raises:
        FeaturisationError: as :func:`ml.features.xrd.xrd_pattern` (same message when no reflection
            falls in range), plus the cases listed in :func:`xrd_patterns`.
    """
    if chunk_entries < 1 or max_reflections < 1:
        raise ValueError("chunk_entries and max_reflections must be positive")
    with _single_blas_thread():
        return _pattern(structure, config, chunk_entries, max_reflections, debye_waller_factors, _to_device(device))
