"""From the VAE's decoded grids to a crystal: atoms are density peaks, each takes the
element its voxels vote for.

The VAE (:class:`ml.models.vae3d.CondVAE3D`) decodes a latent vector into a density grid ``M'``
(one unit-height Gaussian per atom, :mod:`ml.generation.voxels`), per-voxel element logits, a cubic cell
length ``a`` and a site count ``n``. :func:`decode_crystal` turns them into a pymatgen ``Structure``:

1. **sites**: the periodic local maxima of ``M'`` (3 × 3 × 3 neighbourhood, the grid wrapped;
   :func:`ml.generation.devoxelize.periodic_maxima`, the segmentation the voxel round trip uses
   too); a plateau of equal maxima is one site. Given the decoded site count ``n``, the ``n`` highest
   maxima above :data:`CANDIDATE_THRESHOLD` are the atoms; without it, every maximum above
   ``peak_threshold``. Each atom sits at the centre of its peak voxel (the grid's resolution,
   a/G): 99.4 % of the VAE's crystals have every site on the a/16 grid (1,642 of 1,652, every
   4th crystal of the set; the rest are B20-type cells with a free x), and the sub-voxel
   refinement the decoder used before (a parabola through the log density,
   :func:`ml.generation.devoxelize.peak_offset`) moved the peaks of sampled grids off their symmetric places:
   with the previous (format-3) model, around 5 validation bases (variance 0.5, 100 samples
   each) 49.6 % of samples were strictly valid with it and 71.0 % at voxel centres, and 88.7 % /
   96.0 % of 150 validation reconstructions (most failures: "not cubic" at spglib's 0.1 Å).
   ``refine=True`` restores it;
2. **species**: each site takes the element with the largest sum of log-probabilities over the
   voxels of its 3 × 3 × 3 neighbourhood, weighted by the density there (one decision per
   site, not per voxel: a per-voxel vote split one atom into two of different elements in the
   first generator);
3. **cell**: cubic, ``a`` from the lattice head.

Beyond the grid's own resolution nothing is snapped, merged or symmetrised: two maxima closer
than 0.5 Å stay two atoms, and the validity rules (:mod:`ml.evaluation.validity`) judge the crystal as
decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml.generation.devoxelize import marker_peak, periodic_maxima, subvoxel_offset
from ml.generation.voxels import VoxelDecodeError

#: Smallest decoded density (the true peaks are 1) that marks an atom when no site count is
#: given (the true grids of the decoder's ceiling, grids of other models). Chosen on training
#: crystals only (``bench/peak_threshold.py``; the validation split, which the quality gates use,
#: is not looked at): on the committed vae-cpu's reconstructions of 743 of them, mean |Δ sites|
#: 0.709 / 0.472 / 0.328 / 0.328 / 0.427 at 0.2 / 0.3 / 0.4 / 0.5 / 0.6, exact compositions
#: 83.7 / 87.9 / 90.3 / 89.6 / 85.9 %.
PEAK_THRESHOLD = 0.5

#: Smallest decoded density of a candidate atom when the site count is decoded too (the count
#: then decides which candidates are atoms). Chosen with ``bench/peak_threshold.py --every 8`` on
#: 743 training crystals reconstructed by the committed vae-cpu (2026-12-06; its site-count head
#: right for 99.6 % of them): mean |Δ sites| 0.016 / 0.016 / 0.019 / 0.048 / 0.121 and exact
#: compositions 98.7 / 98.7 / 98.5 / 97.4 / 95.0 % at 0.1 / 0.2 / 0.3 / 0.4 / 0.5 (every maximum
#: above 0.5, without the count: 0.328 and 89.6 %); 0.2 ties the best and leaves a margin above
#: the noise floor of sampled grids.
CANDIDATE_THRESHOLD = 0.2


@dataclass(frozen=True)
class DecodedSites:
    """Atoms found in one decoded grid, before they become a ``Structure``.

    Attributes:
        frac_coords: ``(n, 3)`` fractional coordinates in [0, 1).
        classes: ``(n,)`` class index of each site's element in the model's vocabulary.
        confidence: ``(n,)`` mean probability of that element over the site's voxels.
        heights: ``(n,)`` decoded density at each site's peak voxel.
    """

    frac_coords: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray
    heights: np.ndarray


def certain_log_probs(classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Log-probabilities of a grid whose element classes are known (a true species grid): 0 for
    each voxel's class, −30 for every other class and on voxels outside ``0 … n_classes − 1``
    (empty, unknown element).

    Args:
        classes: ``(G, G, G)`` int class indices (−1 empty).
        n_classes: V.

    Returns:
        ``(V, G, G, G)`` float64, as :func:`find_sites` takes them.
    """
    log_probs = np.full((n_classes, *classes.shape), -30.0)
    known = (classes >= 0) & (classes < n_classes)
    log_probs[classes[known], *np.nonzero(known)] = 0.0
    return log_probs


def find_sites(density: np.ndarray, log_probs: np.ndarray, peak_threshold: float = PEAK_THRESHOLD,
               n_sites: int | None = None, refine: bool = False) -> DecodedSites:
    """Sites (density maxima) of one decoded grid and the element class each votes for.

    Args:
        density: ``(G, G, G)`` decoded density.
        log_probs: ``(V, G, G, G)`` per-voxel log-probabilities of the V elements.
        peak_threshold: smallest density at a site's peak.
        n_sites: keep only the ``n_sites`` highest maxima (all when fewer); ``None``: keep all.
        refine: sub-voxel positions (log parabola) instead of voxel centres.

    Returns:
        :class:`DecodedSites` (possibly empty), highest peak first.

    Raises:
        VoxelDecodeError: shapes that do not fit, or non-finite values.
    """
    density = np.asarray(density, dtype=np.float64)
    log_probs = np.asarray(log_probs, dtype=np.float64)
    g = density.shape[0]
    if density.shape != (g, g, g) or log_probs.shape[1:] != density.shape or log_probs.ndim != 4:
        raise VoxelDecodeError(f"density (G, G, G) and log-probabilities (V, G, G, G) expected, "
                               f"got {density.shape} and {log_probs.shape}")
    if not (np.all(np.isfinite(density)) and np.all(np.isfinite(log_probs))):
        raise VoxelDecodeError("the decoded grids hold NaN or infinite values")
    if n_sites is not None and n_sites < 0:
        raise VoxelDecodeError(f"a site count cannot be negative, got {n_sites}")
    markers = periodic_maxima(density, peak_threshold)
    peak_voxels = [marker_peak(density, markers, label) for label in range(1, int(markers.max()) + 1)]
    peak_voxels.sort(key=lambda v: -density[tuple(v)])  # highest first (stable: raster order on ties)
    peak_voxels = peak_voxels[:n_sites] if n_sites is not None else peak_voxels
    count = len(peak_voxels)
    coords = np.zeros((count, 3))
    classes = np.zeros(count, dtype=np.int64)
    confidence = np.zeros(count)
    heights = np.zeros(count)
    axis_steps = np.array([-1, 0, 1])
    window = np.stack(np.meshgrid(axis_steps, axis_steps, axis_steps, indexing="ij"), -1).reshape(-1, 3)
    for site, peak in enumerate(peak_voxels):
        offset = subvoxel_offset(density, peak) if refine else np.zeros(3)
        coords[site] = np.mod((peak + offset) / g, 1.0)
        around = (peak + window) % g
        weights = np.clip(density[tuple(around.T)], 0.0, None)
        scores = log_probs[:, around[:, 0], around[:, 1], around[:, 2]] @ weights
        classes[site] = int(np.argmax(scores))
        probs = np.exp(log_probs[classes[site], around[:, 0], around[:, 1], around[:, 2]])
        confidence[site] = float((probs * weights).sum() / max(weights.sum(), 1e-12))
        heights[site] = density[tuple(peak)]
    return DecodedSites(coords, classes, confidence, heights)


def decode_crystal(density: np.ndarray, log_probs: np.ndarray, lattice_a: float, vocabulary: list[int],
                   peak_threshold: float | None = None, n_sites: int | None = None, refine: bool = False):
    """A pymatgen ``Structure`` (cubic cell of length ``lattice_a`` Å) from one decoded grid.

    Args:
        density, log_probs: as in :func:`find_sites`.
        lattice_a: cubic cell length, Å.
        vocabulary: the atomic number of each element class (the checkpoint's ``vocabulary``).
        peak_threshold: smallest density of an atom's peak; default :data:`CANDIDATE_THRESHOLD`
            with a site count, else :data:`PEAK_THRESHOLD`.
        n_sites: the decoded site count (the ``n_sites`` highest peaks are the atoms), or ``None``.
        refine: sub-voxel positions (see :func:`find_sites`).

    Returns:
        An ordered ``Structure``, sites sorted by atomic number.

    Raises:
        VoxelDecodeError: bad grids, a cell length that is not finite and positive, or no
        density maximum above the threshold (no atom).
    """
    from pymatgen.core import Lattice, Structure

    if not (np.isfinite(lattice_a) and lattice_a > 0):
        raise VoxelDecodeError(f"decoded cell length {lattice_a!r} Å is not a positive number")
    if peak_threshold is None:
        peak_threshold = PEAK_THRESHOLD if n_sites is None else CANDIDATE_THRESHOLD
    sites = find_sites(density, log_probs, peak_threshold, n_sites, refine)
    if len(sites.classes) == 0:
        raise VoxelDecodeError(f"no atom: the decoded density has no maximum above {peak_threshold}")
    numbers = np.asarray(vocabulary, dtype=np.int64)[sites.classes]
    order = np.argsort(numbers, kind="stable")
    return Structure(Lattice.cubic(float(lattice_a)), numbers[order].tolist(), sites.frac_coords[order])
