"""How well a decoded crystal matches a reference: site matching and the voxel round trip.

:func:`match_sites` compares two structures of (about) the same cell the way Court et al. 2020
report reconstruction quality (``../shared/docs/method.md`` part B: mean earth-mover distance of
atom sites, mean |Δ number of sites|): the sites of each element are paired by minimum total
periodic distance (Hungarian assignment, ``scipy.optimize.linear_sum_assignment``), distances
measured in the reference cell between fractional coordinates, minimum image.

:func:`roundtrip_report` voxelises the VAE's selected crystals and decodes them back without any
network (:func:`ml.generation.voxels.voxelize` → :func:`ml.generation.devoxelize.structure_from_voxels`): the ceiling any
model using this representation can reach.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ml.generation.voxel_data import VAEDataConfig, conventional_structures, select_vae_materials
from ml.evaluation.validity import min_distance_ok
from ml.generation.devoxelize import structure_from_voxels
from ml.generation.voxels import VoxelConfig, VoxelDecodeError, voxelize

#: A decoded crystal is recovered exactly when every site lies within this distance, Å.
EXACT_TOLERANCE = 0.1


@dataclass(frozen=True)
class SiteMatch:
    """Site-by-site comparison of a decoded structure with its reference.

    Attributes:
        n_reference, n_decoded: number of sites.
        same_composition: equal cell compositions (element counts, not reduced).
        n_matched: sites paired (same element), ``≤ min(n_reference, n_decoded)``.
        mean_distance: mean periodic distance of the paired sites, Å (NaN when none paired).
        max_distance: largest such distance, Å (NaN when none paired).
    """

    n_reference: int
    n_decoded: int
    same_composition: bool
    n_matched: int
    mean_distance: float
    max_distance: float

    @property
    def delta_sites(self) -> int:
        """``|n_decoded - n_reference|``."""
        return abs(self.n_decoded - self.n_reference)

    def exact(self, tolerance: float = EXACT_TOLERANCE) -> bool:
        """Same composition, same number of sites, and every site within ``tolerance`` Å."""
        return (
            self.same_composition
            and self.n_matched == self.n_reference == self.n_decoded
            and bool(self.max_distance <= tolerance)
        )


def match_sites(reference, decoded) -> SiteMatch:
    """Pair the sites of ``decoded`` with those of ``reference``, element by element.

    Fractional coordinates of both are compared in the reference lattice (the decoded cell is
    assumed to be the same cell, as in a round trip or a VAE reconstruction).

    Args:
        reference, decoded: ordered pymatgen ``Structure`` objects.

    Returns:
        :class:`SiteMatch`.
    """
    from scipy.optimize import linear_sum_assignment

    distances = []
    ref_z = np.asarray(reference.atomic_numbers)
    dec_z = np.asarray(decoded.atomic_numbers) if len(decoded) else np.zeros(0, dtype=int)
    for z in np.intersect1d(ref_z, dec_z):
        a = reference.frac_coords[ref_z == z]
        b = decoded.frac_coords[dec_z == z]
        cost = reference.lattice.get_all_distances(a, b)
        rows, cols = linear_sum_assignment(cost)
        distances.extend(cost[rows, cols])
    distances = np.asarray(distances, dtype=float)
    return SiteMatch(
        n_reference=len(reference),
        n_decoded=len(decoded),
        same_composition=reference.composition == decoded.composition,
        n_matched=len(distances),
        mean_distance=float(distances.mean()) if len(distances) else float("nan"),
        max_distance=float(distances.max()) if len(distances) else float("nan"),
    )


def roundtrip(structure, config: VoxelConfig | None = None, use_density: bool = True) -> tuple[SiteMatch, bool]:
    """Voxelise ``structure`` and decode it again; returns the match and whether the decoded
    structure is valid (:func:`ml.evaluation.validity.min_distance_ok`).

    Raises:
        VoxelizationError: the structure cannot be put on the grid.
        VoxelDecodeError: nothing could be decoded.
    """
    sample = voxelize(structure, config)
    decoded = structure_from_voxels(sample.species, sample.lattice, sample.density if use_density else None, config)
    return match_sites(structure, decoded), min_distance_ok(decoded)


def roundtrip_report(
    dataset,
    data_config: VAEDataConfig | None = None,
    voxel_config: VoxelConfig | None = None,
    use_density: bool = True,
    limit: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """The round trip of every selected crystal (or of ``limit`` of them drawn at random with
    ``numpy.random.default_rng(0)``, so every family is represented as in the set), one row each.

    Returns:
        Columns ``material_id, family, split, n_reference, n_decoded, delta_sites,
        same_composition, n_matched, mean_distance, max_distance`` (Å), ``exact``, ``valid``,
        ``error`` (decode failure message, else empty), ``seconds``.
    """
    table = select_vae_materials(dataset, data_config, progress=progress)
    ids = table["material_id"]
    if limit is not None and limit < len(ids):
        ids = ids.iloc[np.sort(np.random.default_rng(0).choice(len(ids), size=limit, replace=False))]
    info = table.set_index("material_id")
    rows = []
    for material_id, structure in tqdm(
        conventional_structures(dataset, data_config, set(ids)), total=len(ids), desc="round trip",
        unit="crystal", disable=not progress,
    ):
        started = time.perf_counter()
        row = {"material_id": material_id, "family": info.at[material_id, "family"], "split": info.at[material_id, "split"]}
        try:
            match, valid = roundtrip(structure, voxel_config, use_density)
            row.update(asdict(match), delta_sites=match.delta_sites, exact=match.exact(), valid=valid, error="")
        except VoxelDecodeError as exc:
            row.update(n_reference=len(structure), n_decoded=0, delta_sites=len(structure), same_composition=False,
                       n_matched=0, mean_distance=np.nan, max_distance=np.nan, exact=False, valid=False, error=str(exc))
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    return pd.DataFrame(rows)


def summarise_roundtrip(report: pd.DataFrame) -> pd.DataFrame:
    """Per family and overall: ``n``, ``exact`` share, ``same_composition`` share, mean
    ``delta_sites``, mean site error (Å, mean over materials of their mean matched distance),
    ``valid`` share, decode failures."""

    def summary(group: pd.DataFrame) -> pd.Series:
        return pd.Series(
            {
                "n": len(group),
                "exact_share": group["exact"].mean(),
                "same_composition_share": group["same_composition"].mean(),
                "mean_abs_delta_sites": group["delta_sites"].mean(),
                "mean_site_error_A": group["mean_distance"].mean(),
                "max_site_error_A": group["max_distance"].max(),
                "valid_share": group["valid"].mean(),
                "failures": int((group["error"] != "").sum()),
            }
        )

    per_family = report.groupby("family").apply(summary, include_groups=False)
    per_family.loc["all"] = summary(report)
    return per_family
