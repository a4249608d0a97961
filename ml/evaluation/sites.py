"""How close a decoded crystal's sites are to a reference's: the one site matching of matmap.

The measure is Court et al.'s "mean earth-mover distance of atom sites" (J. Chem. Inf. Model. 60,
4518, 2020; ``../shared/docs/method.md`` part B, their 0.09 Å on the validation set). Their
evaluation script (``eval.py`` of the ICSG3D code) pairs the decoded atom centres with the true
ones by the Hungarian algorithm on Euclidean distances, without looking at the species, and
divides the summed distance by the smaller site count: the mean distance over the pairs. Species
are scored apart (their UNet's recall). We do the same, with two changes that the periodic cell
calls for: distances are minimum-image distances in the reference cell, and the decoded sites
enter at their fractional coordinates (a decoded cell a little too long or short does not move
its sites; the cell-length error is scored on its own).

From that one species-blind assignment come:

- the **site earth-mover distance** (:attr:`SiteMatch.mean_distance`, Å), the paper's figure;
- the **recalled sites** (:attr:`SiteMatch.n_recalled`): pairs within :data:`RECALL_DISTANCE` Å
  whose decoded site has the reference site's element ("species recall on atom sites");
- an **exact** recovery (:meth:`SiteMatch.exact`): same composition, same site count, every pair
  of one element and within a tolerance.

A species swap therefore leaves the distance unchanged and is caught by the recall and by
``exact``, as in the paper, where geometry and species are two separate figures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: A reference site is recalled when its partner lies within this distance, Å, and has its element.
RECALL_DISTANCE = 0.5
#: A decoded crystal is recovered exactly when every site lies within this distance, Å.
EXACT_TOLERANCE = 0.1


@dataclass(frozen=True)
class SiteMatch:
    """The decoded sites paired one-to-one with the reference's (:func:`match_sites`).

    Attributes:
        n_reference, n_decoded: number of sites.
        same_composition: equal cell compositions (element counts, not reduced).
        n_pairs: sites paired, ``min(n_reference, n_decoded)``.
        n_matched: pairs whose two sites hold the same element (any distance).
        n_recalled: pairs of the same element within :data:`RECALL_DISTANCE` Å.
        mean_distance: mean periodic distance of the pairs, Å (the site earth-mover distance;
            NaN when nothing is paired).
        max_distance: largest such distance, Å (NaN when nothing is paired).
    """

    n_reference: int
    n_decoded: int
    same_composition: bool
    n_pairs: int
    n_matched: int
    n_recalled: int
    mean_distance: float
    max_distance: float

    @property
    def delta_sites(self) -> int:
        """``|n_decoded - n_reference|``."""
        return abs(self.n_decoded - self.n_reference)

    def exact(self, tolerance: float = EXACT_TOLERANCE) -> bool:
        """Same composition, same number of sites, every pair of one element and within ``tolerance`` Å."""
        return (
            self.same_composition
            and self.n_matched == self.n_reference == self.n_decoded
            and bool(self.max_distance <= tolerance)
        )


def match_sites(reference, decoded) -> SiteMatch:
    """Pair the sites of ``decoded`` one-to-one with those of ``reference`` (Hungarian assignment,
    ``scipy.optimize.linear_sum_assignment``, on periodic distances; species not used for the
    pairing): Court et al.'s site earth-mover distance (module docstring).

    Fractional coordinates of both are compared in the reference lattice (the decoded cell is taken
    to be the same cell, as in a voxel round trip or a VAE reconstruction).

    Args:
        reference: ordered pymatgen ``Structure``, ``n_reference`` sites.
        decoded: ordered pymatgen ``Structure``, ``n_decoded`` sites (may be empty).

    Returns:
        :class:`SiteMatch`; distances in Å.
    """
    from scipy.optimize import linear_sum_assignment

    ref_z = np.asarray(reference.atomic_numbers, dtype=int)
    dec_z = np.asarray(decoded.atomic_numbers, dtype=int) if len(decoded) else np.zeros(0, dtype=int)
    if len(reference) and len(decoded):
        cost = reference.lattice.get_all_distances(reference.frac_coords, decoded.frac_coords)  # (n_ref, n_dec) Å
        rows, cols = linear_sum_assignment(cost)
    else:
        cost, rows, cols = np.zeros((0, 0)), np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    distances = cost[rows, cols]
    same = ref_z[rows] == dec_z[cols]
    return SiteMatch(
        n_reference=len(reference),
        n_decoded=len(decoded),
        same_composition=reference.composition == decoded.composition,
        n_pairs=len(rows),
        n_matched=int(same.sum()),
        n_recalled=int((same & (distances <= RECALL_DISTANCE)).sum()),
        mean_distance=float(distances.mean()) if len(distances) else float("nan"),
        max_distance=float(distances.max()) if len(distances) else float("nan"),
    )
