"""The voxel round trip: how well the representation alone gives a crystal back.

Each crystal is compared with its decoded self by :func:`ml.evaluation.sites.match_sites` (Court
et al.'s site earth-mover distance, the one site matching of matmap). :func:`roundtrip_report` voxelises the VAE's selected
crystals and decodes them back without any network (:func:`ml.generation.voxels.voxelize` →
:func:`ml.generation.devoxelize.structure_from_voxels`): the ceiling any model using this
representation can reach.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ml.generation.voxel_data import VAEDataConfig, conventional_structures, select_vae_materials
from ml.evaluation.sites import SiteMatch, match_sites
from ml.evaluation.validity import min_distance_ok
from ml.generation.devoxelize import structure_from_voxels
from ml.generation.voxels import VoxelConfig, VoxelDecodeError, voxelize


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
        Columns ``material_id, family, split``, the fields of
        :class:`ml.evaluation.sites.SiteMatch` (``n_reference, n_decoded, same_composition,
        n_pairs, n_matched, n_recalled, mean_distance, max_distance`` (Å)), ``delta_sites``, ``exact``, ``valid``,
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
                       n_pairs=0, n_matched=0, n_recalled=0, mean_distance=np.nan, max_distance=np.nan, exact=False,
                       valid=False, error=str(exc))
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
