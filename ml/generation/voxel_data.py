"""The crystals of the 3D voxel VAE (Court et al. 2020) and their cached voxel arrays.

Source: C. J. Court, B. Yildirim, A. Jain, J. M. Cole, J. Chem. Inf. Model. 60, 4518 (2020)
(``../shared/docs/method.md`` part B): cubic binary alloys, ternary perovskites and Heusler
compounds of the Materials Project with at most 40 atoms per cell (7,189 in the paper).

Selection (:func:`select_vae_materials`), from a dataset's properties table and CIFs:

1. cheap pre-filter on the properties table: a formation energy per atom is known (it is the
   VAE's condition), the cell has at most ``max_sites`` sites, 2 or 3 elements in one of the
   families' ratios (AB 1:1; ABX3 1:1:3; X2YZ 2:1:1; XYZ 1:1:1);
2. each candidate's CIF is parsed and its space group found with spglib (the library pymatgen's
   ``SpacegroupAnalyzer`` wraps; ``symprec`` 0.1 Å, the Materials Project's tolerance) — the
   table's ``spacegroup_number`` covers only ~62.5k materials, so it is not used;
3. families (:data:`FAMILIES`): ``binary_AB`` — 2 elements 1:1 in any cubic space group
   195–230; ``perovskite_ABX3`` — 3 elements 1:1:3 in Pm-3m (221; anti-perovskites A3BX have
   the same anonymous formula and structure type and are included); ``heusler_X2YZ`` —
   3 elements 2:1:1 in Fm-3m (225); ``half_heusler_XYZ`` — 3 elements 1:1:1 in F-43m (216);
4. the cell used is the conventional standard cell (spglib's standardised cell, the same
   lattice and sites as pymatgen's ``SpacegroupAnalyzer.get_conventional_standard_structure``
   for cubic groups, tested; one symmetry search instead of two), which is cubic for these
   space groups (needed: the 32³ grid spans a cubic cell, as in the paper); materials with more
   than ``max_sites`` sites in that cell are dropped (e.g. a rock salt's 2-site primitive cell
   becomes the 8-site cube).

Condition: the formation energy per atom cut into ``n_deciles`` bins with edges at the
deciles of the *training* materials (:func:`decile_edges`, :func:`assign_deciles`), one-hot for
the model (:func:`one_hot_deciles`).

Split: the map's hash split of ``material_id`` (:mod:`ml.data.splits`, train / val / test =
90 / 5 / 5), not the paper's random 80 / 20, so a material has the same role in every matmap model.

Caches (``data/cache/vae/<dataset>/<selection key>-<ids digest>/``, the key a hash of
:class:`VAEDataConfig`): resumable part files of the classified candidates, then
``selection.parquet`` (the table), ``structures.parquet`` (conventional cells) and
``deciles.json``; the voxel arrays (:func:`build_voxel_arrays`) go in a sub-folder named by the
:class:`ml.generation.voxels.VoxelConfig` key: ``density.npy`` float16 ``(N,32,32,32)``, ``species.npy``
uint8 ``(N,32,32,32)``, ``lattice.npy`` float32 ``(N,3)`` Å, ``decile.npy`` int64 ``(N,)`` and
``index.parquet`` (material_id, split, family). The coordinate channels are not stored: they
follow from the lattice (:func:`ml.generation.voxels.model_input`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from fractions import Fraction
from functools import partial, reduce
from math import gcd
from pathlib import Path

import numpy as np
import pandas as pd

from ml.data.datasets import Dataset, DatasetError
from ml.data.shard_cache import apply_each, compute_shards, ids_digest, write_atomically
from ml.settings import get_settings
from ml.data.splits import assign_splits
from ml.data.structures import CifError, parse_cif
from ml.generation.deciles import assign_deciles, decile_edges

log = logging.getLogger(__name__)

#: Candidates classified between two part files of the resumable selection.
PART_SIZE = 500

SELECTION_COLUMNS = [
    "material_id",
    "formula",
    "family",
    "spacegroup_number",
    "nsites",
    "formation_energy_per_atom",
    "decile",
    "split",
]


@dataclass(frozen=True)
class FamilyRule:
    """A structure family: number of elements, sorted integer stoichiometry, space groups."""

    ratio: tuple[int, ...]
    spacegroups: tuple[int, ...]


#: The paper's families: name → rule (ratios sorted ascending).
FAMILIES: dict[str, FamilyRule] = {
    "binary_AB": FamilyRule((1, 1), tuple(range(195, 231))),
    "perovskite_ABX3": FamilyRule((1, 1, 3), (221,)),
    "heusler_X2YZ": FamilyRule((1, 1, 2), (225,)),
    "half_heusler_XYZ": FamilyRule((1, 1, 1), (216,)),
}


class VAEDataError(DatasetError):
    """The VAE's data cannot be selected or loaded (no candidates, arrays not built yet)."""


@dataclass(frozen=True)
class VAEDataConfig:
    """Which crystals the VAE learns from (saved with every cache and checkpoint built on it).

    Attributes:
        families: names in :data:`FAMILIES`.
        max_sites: most sites of the conventional cell (paper: 40).
        symprec: spglib distance tolerance, Å.
        angle_tolerance: spglib angle tolerance, degrees.
        n_deciles: bins of the formation-energy condition (paper: 10).
    """

    families: tuple[str, ...] = tuple(FAMILIES)
    max_sites: int = 40
    symprec: float = 0.1
    angle_tolerance: float = 5.0
    n_deciles: int = 10

    def __post_init__(self):
        unknown = [f for f in self.families if f not in FAMILIES]
        if not self.families or unknown:
            raise ValueError(f"families must be a non-empty subset of {list(FAMILIES)}, got {self.families!r}")
        if not isinstance(self.max_sites, int) or self.max_sites < 1:
            raise ValueError(f"max_sites must be a positive integer, got {self.max_sites!r}")
        if not self.symprec > 0 or not self.angle_tolerance > 0:
            raise ValueError("symprec and angle_tolerance must be > 0")
        if not isinstance(self.n_deciles, int) or self.n_deciles < 2:
            raise ValueError(f"n_deciles must be an integer ≥ 2, got {self.n_deciles!r}")

    def key(self) -> str:
        """A short, stable text naming this configuration (for cache folders)."""
        text = json.dumps(asdict(self), sort_keys=True)
        return "vae-" + hashlib.sha256(text.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------- families


def stoichiometry(formula_or_composition) -> tuple[int, ...]:
    """Smallest integer ratio of a composition's element amounts, sorted ascending.

    ``"Cu8Mn4Al4"`` → ``(1, 1, 2)``; ``"SrTiO3"`` → ``(1, 1, 3)``.

    Raises:
        ValueError: a formula pymatgen cannot read, or one without elements.
    """
    from pymatgen.core import Composition

    composition = Composition(formula_or_composition)
    amounts = [Fraction(float(v)).limit_denominator(1000) for v in composition.values()]
    if not amounts:
        raise ValueError(f"no elements in {formula_or_composition!r}")
    denominator = reduce(lambda a, b: a * b // gcd(a, b), (a.denominator for a in amounts))
    integers = [int(a * denominator) for a in amounts]
    divisor = reduce(gcd, integers)
    return tuple(sorted(i // divisor for i in integers))


def family_of(formula_or_composition, spacegroup_number: int | None) -> str | None:
    """The VAE family of a composition in a space group, ``None`` when it is in none.

    Args:
        formula_or_composition: e.g. ``"Cu2MnAl"`` or a pymatgen ``Composition``.
        spacegroup_number: international number 1–230.
    """
    ratio = stoichiometry(formula_or_composition)
    for name, rule in FAMILIES.items():
        if ratio == rule.ratio and spacegroup_number in rule.spacegroups:
            return name
    return None


def candidate_ids(dataset: Dataset, config: VAEDataConfig) -> list[str]:
    """Materials worth parsing: formation energy known, ≤ ``max_sites`` sites in the stored
    cell (the conventional cell is never smaller), a family's element count and ratio."""
    table = dataset.properties
    needed = {"formula", "nsites", "formation_energy_per_atom"}
    if not needed <= set(table.columns):
        raise VAEDataError(f"dataset {dataset.name} has no properties table with {sorted(needed)}")
    table = table[table["formation_energy_per_atom"].notna() & (table["nsites"] <= config.max_sites)]
    ratios = {FAMILIES[f].ratio for f in config.families}

    def fits(formula: str) -> bool:
        try:
            return stoichiometry(formula) in ratios
        except ValueError:
            return False

    return [m for m, formula in zip(table.index, table["formula"]) if fits(formula)]


# --------------------------------------------------------------------------- selection


def cache_dir(dataset: Dataset, config: VAEDataConfig | None = None) -> Path:
    """Folder of a dataset's VAE selection for one configuration."""
    config = config or VAEDataConfig()
    return get_settings().cache_dir / "vae" / dataset.name / f"{config.key()}-{ids_digest(dataset.material_ids)}"


def classify_structure(structure, config: VAEDataConfig) -> dict:
    """Space group, family and conventional cell of one structure.

    Returns:
        ``{"spacegroup_number", "family", "reason"}`` and, when selected, the conventional
        cell as ``formula`` (reduced), ``nsites``, ``lattice_a`` (Å), ``numbers`` (atomic
        numbers) and ``frac_coords`` (flattened, ``3 × nsites``). ``reason`` says why a
        structure was not selected (``None`` when it was).
    """
    import spglib
    from pymatgen.core import Lattice, Structure

    cell = (structure.lattice.matrix, structure.frac_coords, structure.atomic_numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=config.symprec, angle_tolerance=config.angle_tolerance)
    if dataset is None:
        return {"spacegroup_number": None, "family": None, "reason": "spglib found no symmetry"}
    number = int(dataset.number)
    row = {"spacegroup_number": number, "family": None, "reason": None}
    family = family_of(structure.composition, number)
    if family is None or family not in config.families:
        row["reason"] = "not in a family"
        return row
    # spglib's standardised conventional cell: for cubic groups, the cell pymatgen's
    # SpacegroupAnalyzer.get_conventional_standard_structure returns (same lattice and sites),
    # from the one symmetry search instead of two (the selection's bottleneck)
    conventional = Structure(Lattice(dataset.std_lattice), dataset.std_types, dataset.std_positions)
    a, b, c = conventional.lattice.abc
    if not (np.allclose([a, b], c, rtol=1e-4) and np.allclose(conventional.lattice.angles, 90.0, atol=1e-3)):
        row["reason"] = "conventional cell not cubic"
        return row
    if len(conventional) > config.max_sites:
        row["reason"] = f"conventional cell has {len(conventional)} > {config.max_sites} sites"
        return row
    row.update(
        family=family,
        formula=conventional.composition.reduced_formula,
        nsites=len(conventional),
        lattice_a=float(a),
        numbers=[int(z) for z in conventional.atomic_numbers],
        frac_coords=np.mod(conventional.frac_coords, 1.0).ravel().tolist(),
    )
    return row


def _part_path(folder: Path, index: int) -> Path:
    return folder / "parts" / f"part-{index:05d}.parquet"


def _write_part(path: Path, results: list[tuple[str, dict | None, str | None]]) -> None:
    """One part file of classified candidates: a row per material, failures with their reason."""
    rows = [{"material_id": mid, **(row if error is None else {"spacegroup_number": None, "family": None, "reason": error})}
            for mid, row, error in results]
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_parquet(pd.DataFrame(rows), path)


def _classify_cif(config: VAEDataConfig, cif: str) -> dict:
    return classify_structure(parse_cif(cif), config)


def _classify_chunk(job: tuple[VAEDataConfig, list[tuple[str, str]]]) -> list[tuple[str, dict | None, str | None]]:
    config, records = job
    # spglib / pymatgen on an odd cell: keep the reason, go on
    return apply_each(partial(_classify_cif, config), records, plain=(CifError,))


def _classify_candidates(dataset: Dataset, config: VAEDataConfig, ids: list[str], folder: Path, progress: bool) -> None:
    """Classify candidates in parts of :data:`PART_SIZE` consecutive ids; parts already written are kept."""
    parts = [ids[i : i + PART_SIZE] for i in range(0, len(ids), PART_SIZE)]
    part_of = {m: i for i in range(len(parts)) if not _part_path(folder, i).is_file() for m in parts[i]}
    if not part_of:
        return
    compute_shards(dataset.records(set(part_of)), part_of, _classify_chunk, (config,),
                   lambda i, results: _write_part(_part_path(folder, i), results), processes=1,
                   missing_reason="no CIF in the dataset", desc="classifying VAE candidates", unit="cif",
                   progress=progress)


def select_vae_materials(dataset: Dataset, config: VAEDataConfig | None = None, progress: bool = True) -> pd.DataFrame:
    """The VAE's crystals of a dataset (cached; an interrupted run resumes).

    Args:
        dataset: e.g. ``ml.data.datasets.get_dataset("mp2024")``.
        config: selection rules (default :class:`VAEDataConfig`).
        progress: tqdm bar while classifying.

    Returns:
        One row per selected material, in dataset order, columns :data:`SELECTION_COLUMNS`
        (``formula`` reduced, ``nsites`` of the conventional cell, ``formation_energy_per_atom``
        in eV/atom, ``decile`` 0–9 with train-split edges, ``split`` train / val / test) plus
        ``lattice_a`` (Å, conventional cubic cell).

    Raises:
        VAEDataError: the dataset has no properties table, no candidates, or no training material.
    """
    config = config or VAEDataConfig()
    folder = cache_dir(dataset, config)
    selection_path = folder / "selection.parquet"
    if selection_path.is_file():
        return pd.read_parquet(selection_path)
    started = time.perf_counter()
    ids = candidate_ids(dataset, config)
    if not ids:
        raise VAEDataError(f"dataset {dataset.name} has no candidate for the VAE families")
    log.info("VAE selection: %d candidates of %d materials", len(ids), len(dataset))
    _classify_candidates(dataset, config, ids, folder, progress)
    n_parts = (len(ids) + PART_SIZE - 1) // PART_SIZE
    rows = pd.concat([pd.read_parquet(_part_path(folder, i)) for i in range(n_parts)], ignore_index=True)
    chosen = rows[rows["family"].notna()].copy()
    chosen["spacegroup_number"] = chosen["spacegroup_number"].astype(int)
    chosen["nsites"] = chosen["nsites"].astype(int)
    chosen["formation_energy_per_atom"] = dataset.properties.loc[chosen["material_id"], "formation_energy_per_atom"].to_numpy()
    chosen["split"] = assign_splits(chosen["material_id"])
    train = chosen.loc[chosen["split"] == "train", "formation_energy_per_atom"]
    if train.empty:
        raise VAEDataError("no selected material is in the training split; cannot set decile edges")
    edges = decile_edges(train, config.n_deciles)
    chosen["decile"] = assign_deciles(chosen["formation_energy_per_atom"], edges)
    order = {m: i for i, m in enumerate(dataset.material_ids)}
    chosen = chosen.sort_values("material_id", key=lambda s: s.map(order)).reset_index(drop=True)
    structures = chosen[["material_id", "lattice_a", "numbers", "frac_coords"]]
    table = chosen[SELECTION_COLUMNS + ["lattice_a"]]
    _atomic_parquet(structures, folder / "structures.parquet")
    _write_report(folder, config, edges, rows, table, n_candidates=len(ids), seconds=time.perf_counter() - started)
    _atomic_parquet(table, selection_path)
    return table


def _write_report(folder: Path, config: VAEDataConfig, edges: np.ndarray, rows: pd.DataFrame, table: pd.DataFrame,
                  n_candidates: int, seconds: float) -> None:
    """``deciles.json``: the decile edges (eV/atom), the configuration and what was selected or rejected why."""
    reasons = rows.loc[rows["family"].isna(), "reason"].fillna("unknown").str.split(":").str[0].value_counts()
    (folder / "deciles.json").write_text(
        json.dumps(
            {
                "edges_eV_per_atom": edges.tolist(),
                "config": asdict(config),
                "n_candidates": n_candidates,
                "n_selected": len(table),
                "family_counts": table["family"].value_counts().to_dict(),
                "rejected": reasons.head(20).to_dict(),
                "seconds": round(seconds, 1),
            },
            indent=2,
        )
    )


def _atomic_parquet(table: pd.DataFrame, path: Path) -> None:
    write_atomically(path, lambda tmp: table.to_parquet(tmp, index=False), ".tmp")


def load_decile_edges(dataset: Dataset, config: VAEDataConfig | None = None) -> np.ndarray:
    """The decile edges (eV/atom, shape ``(n_deciles - 1,)``) of a built selection.

    Raises:
        VAEDataError: the selection has not been built.
    """
    path = cache_dir(dataset, config) / "deciles.json"
    if not path.is_file():
        raise VAEDataError(f"no VAE selection for {dataset.name} yet: run `python -m ml vae-data --dataset {dataset.name}`")
    return np.asarray(json.loads(path.read_text())["edges_eV_per_atom"])


def conventional_structures(
    dataset: Dataset, config: VAEDataConfig | None = None, material_ids=None
) -> Iterator[tuple[str, object]]:
    """``(material_id, Structure)`` of the selected materials' conventional cubic cells
    (selection order; only ``material_ids`` when given). Builds the selection if needed."""
    from pymatgen.core import Lattice, Structure

    select_vae_materials(dataset, config, progress=False)
    table = pd.read_parquet(cache_dir(dataset, config) / "structures.parquet")
    if material_ids is not None:
        wanted = set(material_ids)
        table = table[table["material_id"].isin(wanted)]
    for material_id, a, numbers, frac in zip(table["material_id"], table["lattice_a"], table["numbers"], table["frac_coords"]):
        yield material_id, Structure(Lattice.cubic(a), list(numbers), np.asarray(frac).reshape(-1, 3))
