"""Baseline crystal descriptors, computed and queried like the learned map (matmap issue 5).

Does the CMML map capture materials concepts better than established descriptors? Each
descriptor of :data:`DESCRIPTORS` turns a crystal into one vector; neighbours are exact
nearest neighbours under the metric its authors use (Euclidean for all five, see each spec).

| name | vector | source |
|---|---|---|
| ``ewald`` | Ewald sum matrix eigenspectrum, ``(256,)`` (dscribe: eV) | Faber et al., *Int. J. Quantum Chem.* 115, 1094 (2015); dscribe ``EwaldSumMatrix`` |
| ``sine_coulomb`` | sine Coulomb matrix eigenspectrum, ``(256,)`` (Hartree-like, Z²/bohr) | same paper; matminer ``SineCoulombMatrix`` |
| ``crystalnn`` | CrystalNN site fingerprints, min / max / mean / std over sites, ``(244,)`` | Zimmermann & Jain, *RSC Adv.* 10, 6063 (2020); MP "similar structures"; matminer |
| ``chgnet`` | CHGNet 0.3.0 crystal feature per atom (``crystal_fea`` / n atoms), ``(64,)`` | Deng et al., *Nat. Mach. Intell.* 5, 1031 (2023); pip ``chgnet`` |
| ``cmml`` | our crystal-encoder embedding, read from the built map | Suzuki et al. 2022, the map's model (default ``data/models/cmml-full``) |

**Eigenspectra** (``ewald``, ``sine_coulomb``): the matrix of a cell is built on its primitive
cell (pymatgen ``get_primitive_structure``; a supercell otherwise has a different, longer
spectrum); its eigenvalues (``numpy.linalg.eigvalsh``) sorted by decreasing absolute value
(as dscribe's ``permutation="eigenspectrum"``; matminer's ``flatten=True`` leaves them
unsorted) are zero-padded
to :data:`EIGENSPECTRUM_LENGTH` = 256 values, or cut to the 256 largest for the <0.1 % of
mp2024 cells with more sites (99.9th percentile: 224 sites; largest 688). Compared by the
Euclidean norm of the difference of the padded spectra (Rupp et al., *PRL* 108, 058301, 2012),
not standardised: every entry is an energy in the same unit.

**CrystalNN**: the fingerprint and distance of the Materials Project documentation
("Structure similarity", docs.materialsproject.org): ``SiteStatsFingerprint(CrystalNNFingerprint
.from_preset("ops", distance_cutoffs=None, x_diff_weight=0), stats=(mean, std_dev, minimum,
maximum))`` and the plain Euclidean distance between the raw 244-d vectors (MP: < 0.9 means
the same prototype). matminer's ``from_preset("CrystalNNFingerprint_ops")`` differs only in
keeping the default distance cut-offs and stats (mean, std_dev).

**CHGNet / CMML**: no metric from the authors; Euclidean on the raw vectors, as the map does.

Cache: ``data/cache/descriptors/<dataset>/<name>-<config hash>-<ids digest>/``, one or more
``shard_<s>-<ids hash>.npz`` per shard of :func:`ml.data.featurize.shard_of` (so a run on a sample,
then on ``mp2024-icsd``, then on everything, never recomputes a material), and a
``manifest.json`` recording what the cache covers. Failures are kept with their reason.
For the app, :func:`export_descriptor` writes a torch-free copy to
``data/artifacts/<dataset>/descriptors/<name>/`` read by ``MapArtifacts.descriptor_neighbors``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache, cached_property
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ml.mapping.artifacts import (
    DESCRIPTOR_IDS,
    DESCRIPTOR_MANIFEST,
    DESCRIPTOR_VALUES,
    MapArtifacts,
    UnknownMaterialError,
    descriptor_dir,
)
from ml.data.datasets import Dataset, get_dataset
from ml.mapping.knn import ExactL2Index
from ml.data.featurize import map_chunks, n_shards_for, shard_of
from ml.settings import get_settings

log = logging.getLogger(__name__)

#: Length of the padded eigenspectra of ``ewald`` and ``sine_coulomb``.
EIGENSPECTRUM_LENGTH = 256
#: Materials sent to a worker at a time, and the most results held before a part file is written.
CHUNK_SIZE = 10
PART_SIZE = 200
#: The benchmark queries of issue 5: Hg-1223 cuprate Ba2Ca2Cu3HgO8, LiCoO2, CrGeTe3, Sm2Co17.
BENCHMARK_QUERIES = ("mp-22601", "mp-22526", "mp-541449", "mp-1200096")


# --------------------------------------------------------------------------- featurisers


def _ase_atoms(structure):
    """A plain periodic ``ase.Atoms`` (no velocities: dscribe 2.1 fails on pymatgen's adaptor
    output with ase ≥ 3.25, "Use only one of momenta and velocities")."""
    import ase

    return ase.Atoms(
        numbers=[site.specie.Z for site in structure],
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=True,
    )


def _pad_spectrum(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues sorted by decreasing absolute value, zero-padded (or cut) to
    :data:`EIGENSPECTRUM_LENGTH`, float32."""
    eigenvalues = np.asarray(eigenvalues)
    ordered = np.real(eigenvalues[np.argsort(-np.abs(eigenvalues), kind="stable")])
    out = np.zeros(EIGENSPECTRUM_LENGTH, dtype=np.float32)
    keep = min(len(ordered), EIGENSPECTRUM_LENGTH)
    out[:keep] = ordered[:keep]
    return out


def _eigenspectrum(structure, matrix: str) -> np.ndarray:
    """Padded eigenspectrum of a matrix descriptor of the primitive cell of ``structure``.

    ``ewald``: dscribe's ``EwaldSumMatrix`` (matminer 0.10 no longer ships one). ``sine``:
    matminer's ``SineCoulombMatrix(flatten=False)`` (dscribe 2.1's ``SineMatrix`` fails with
    ase ≥ 3.25; matminer's own ``flatten=True`` leaves ``np.linalg.eig``'s order unsorted), so
    both matrices are diagonalised here with ``numpy.linalg.eigvalsh`` (they are symmetric).
    """
    primitive = structure.get_primitive_structure()
    if matrix == "ewald":
        from dscribe.descriptors import EwaldSumMatrix

        n_sites = len(primitive)
        square = EwaldSumMatrix(n_atoms_max=n_sites, permutation="none").create(_ase_atoms(primitive))
        square = np.asarray(square, dtype=np.float64).reshape(n_sites, n_sites)
    else:
        from matminer.featurizers.structure import SineCoulombMatrix

        square = np.asarray(SineCoulombMatrix(flatten=False).featurize(primitive)[0], dtype=np.float64)
    return _pad_spectrum(np.linalg.eigvalsh((square + square.T) / 2))


def ewald_spectrum(structure) -> np.ndarray:
    """Ewald sum matrix eigenspectrum of ``structure`` (pymatgen ``Structure``), ``(256,)``."""
    return _eigenspectrum(structure, "ewald")


def sine_coulomb_spectrum(structure) -> np.ndarray:
    """Sine Coulomb matrix eigenspectrum of ``structure`` (pymatgen ``Structure``), ``(256,)``."""
    return _eigenspectrum(structure, "sine")


@cache
def _crystalnn_featurizer():
    from matminer.featurizers.site import CrystalNNFingerprint
    from matminer.featurizers.structure import SiteStatsFingerprint

    site = CrystalNNFingerprint.from_preset("ops", distance_cutoffs=None, x_diff_weight=0)
    return SiteStatsFingerprint(site, stats=("mean", "std_dev", "minimum", "maximum"))


def crystalnn_fingerprint(structure) -> np.ndarray:
    """MP's CrystalNN structure fingerprint of ``structure``, ``(244,)`` (61 site features ×
    mean, std, min, max; dimensionless weights and order parameters in [0, 1])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states
        return np.asarray(_crystalnn_featurizer().featurize(structure), dtype=np.float32)


@cache
def _chgnet_model():
    import torch
    from chgnet.model import CHGNet

    torch.set_num_threads(1)
    return CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False).eval()


def chgnet_feature(structure) -> np.ndarray:
    """CHGNet 0.3.0's crystal feature of ``structure`` per atom, ``(64,)``: the mean over atoms
    of the final, layer-normalised atom features.

    CHGNet's own ``crystal_fea`` (``predict_structure(task="e", return_crystal_feas=True)``)
    is their *sum* (0.3.0 pools with ``GraphPooling(average=False)`` before its per-atom energy
    MLP), so it grows with the cell; dividing by the number of atoms makes a supercell give
    the same vector."""
    import torch

    with torch.inference_mode():
        prediction = _chgnet_model().predict_structure(structure, task="e", return_crystal_feas=True)
    return np.asarray(prediction["crystal_fea"], dtype=np.float32).reshape(-1) / len(structure)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DescriptorSpec:
    """One descriptor: how it is computed, compared and on which materials.

    Attributes:
        name: registry key.
        label: human-readable name with its source library.
        citation: the paper that defines it.
        metric: the distance used for neighbours (``"euclidean"``: exact L2 with faiss).
        coverage: the set ``python -m ml descriptors`` computes by default (``"mp2024"``,
            ``"mp2024-icsd"`` or ``"sample"``, see :func:`ids_for`), chosen from the measured
            cost by issue 5's rule: the whole dataset where that is affordable on 2 cores
            (hours), else ``mp2024-icsd`` plus the benchmark queries (CrystalNN: the whole set
            would take about 16 h); the set a cache really covers is in its manifest
            (:attr:`DescriptorTable.coverage`, ``MapArtifacts.descriptor_info``).
        dim: vector length.
        config: everything that changes the vectors (hashed into the cache folder name).
        featurize: ``Structure -> (dim,) float32``; ``None`` for ``cmml`` (read from the map).
        seconds_per_structure: one core's seconds per structure (CIF parsing included),
            measured on the otherwise idle 2-core machine with 2 worker processes: ewald,
            sine_coulomb and chgnet on mp2024-icsd (43,936 materials), crystalnn on the
            1,004-material concept sample. :func:`cost_estimate` prefers a cache's own runs.
    """

    name: str
    label: str
    citation: str
    metric: str
    coverage: str
    dim: int
    config: str
    featurize: Callable | None = field(default=None, repr=False)
    seconds_per_structure: float | None = None

    def __post_init__(self) -> None:
        if self.metric != "euclidean":
            raise ValueError(f"{self.name}: unsupported metric {self.metric!r}")
        if self.coverage not in ("mp2024", "mp2024-icsd", "sample"):
            raise ValueError(f"{self.name}: unknown coverage {self.coverage!r}")

    def key(self) -> str:
        """``<name>-<10 hex of SHA-256 of config>``: the cache folder prefix."""
        return f"{self.name}-{hashlib.sha256(self.config.encode()).hexdigest()[:10]}"


_EIGEN_CONFIG = f"eigvalsh sorted by |lambda| descending; primitive cell; pad/cut {EIGENSPECTRUM_LENGTH}"
DESCRIPTORS: dict[str, DescriptorSpec] = {
    spec.name: spec
    for spec in (
        DescriptorSpec(
            "ewald", "Ewald sum matrix eigenspectrum (dscribe)",
            "Faber, Lindmaa, von Lilienfeld, Armiento, Int. J. Quantum Chem. 115, 1094 (2015)",
            "euclidean", "mp2024", EIGENSPECTRUM_LENGTH, "ewald; " + _EIGEN_CONFIG, ewald_spectrum, 0.036,
        ),
        DescriptorSpec(
            "sine_coulomb", "Sine Coulomb matrix eigenspectrum (matminer)",
            "Faber, Lindmaa, von Lilienfeld, Armiento, Int. J. Quantum Chem. 115, 1094 (2015)",
            "euclidean", "mp2024", EIGENSPECTRUM_LENGTH, "sine; " + _EIGEN_CONFIG, sine_coulomb_spectrum, 0.020,
        ),
        DescriptorSpec(
            "crystalnn", "CrystalNN site-fingerprint statistics (matminer; MP similar structures)",
            "Zimmermann, Jain, RSC Adv. 10, 6063 (2020); Pan et al., Inorg. Chem. 60, 1590 (2021)",
            "euclidean", "mp2024-icsd", 244,
            "SiteStatsFingerprint(CrystalNNFingerprint ops, distance_cutoffs=None, x_diff_weight=0; "
            "mean,std_dev,minimum,maximum)", crystalnn_fingerprint, 0.80,
        ),
        DescriptorSpec(
            "chgnet", "CHGNet 0.3.0 crystal feature (mean of the final atom features)",
            "Deng et al., Nat. Mach. Intell. 5, 1031 (2023)",
            "euclidean", "mp2024", 64, "chgnet 0.3.0 crystal_fea task=e / n_atoms", chgnet_feature, 0.055,
        ),
        DescriptorSpec(
            "cmml", "CMML crystal embedding (this map)",
            "Suzuki et al., Mach. Learn.: Sci. Technol. 3, 045034 (2022)",
            "euclidean", "mp2024", 128, "the built map's embeddings.npy",
        ),
    )
}


def get_spec(name: str) -> DescriptorSpec:
    """The spec of ``name``. Raises ValueError for an unknown name (listing the known ones)."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise ValueError(f"unknown descriptor {name!r}; expected one of {', '.join(DESCRIPTORS)}") from None


# --------------------------------------------------------------------------- id sets


def icsd_ids() -> list[str]:
    """The ids of ``mp2024-icsd`` (44,349 materials)."""
    return list(get_dataset("mp2024-icsd").material_ids)


def sample_ids(size: int = 1000, seed: int = 0, k_neighbors: int = 50, queries: Iterable[str] = BENCHMARK_QUERIES) -> list[str]:
    """A documented sample for descriptors too slow for a whole dataset.

    ``size`` materials of ``mp2024-icsd`` drawn by ``numpy.random.default_rng(seed)`` (without
    replacement, from the ids in source order), plus ``queries`` and their ``k_neighbors``
    nearest CMML neighbours in the built mp2024 map, so the side-by-side comparison of
    neighbour lists is meaningful. Sorted, without duplicates.
    """
    pool = icsd_ids()
    rng = np.random.default_rng(seed)
    chosen = {pool[i] for i in rng.choice(len(pool), size=min(size, len(pool)), replace=False)}
    return sorted(chosen | set(benchmark_ids(k_neighbors, queries)))


def concept_sample_ids(per_class: int = 400, seed: int = 0, k_neighbors: int = 50,
                       queries: Iterable[str] = BENCHMARK_QUERIES) -> list[str]:
    """The materials a slow descriptor needs for the few-label superconductor analysis.

    ``per_class`` mp2024 materials with a direct, undoped SuperCon match with Tc > 0 K (label
    ``superconductor``, :func:`ml.data.datasets.read_supercon_labels`) and ``per_class`` materials
    without any SuperCon entry, plus :func:`benchmark_ids`. Each class is drawn as
    :data:`CONCEPT_DRAW` materials without replacement by ``numpy.random.default_rng(seed)``
    from the dataset's ids in order, and the first ``per_class`` of that draw are kept: the
    samples of one seed are nested, so a descriptor too slow for 400 per class is compared
    with the others on a subset of their materials. 400 per class leave enough training
    examples for the largest balanced training size (400) after 30 % of the chemical systems
    are held out (:mod:`ml.evaluation.concepts`). Sorted, without duplicates.

    Raises:
        ValueError: ``per_class`` above :data:`CONCEPT_DRAW`, or fewer materials in a class.
    """
    from ml.data.datasets import read_supercon_labels
    from ml.evaluation.concepts import NO_MATCH, POSITIVE

    ids = np.asarray(get_dataset("mp2024").material_ids).astype(str)
    labels = read_supercon_labels()["supercon_label"]
    label_of = labels.reindex(ids).fillna(NO_MATCH).to_numpy()
    if per_class > CONCEPT_DRAW:
        raise ValueError(f"at most {CONCEPT_DRAW} materials per class; asked for {per_class}")
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in (POSITIVE, NO_MATCH):
        members = ids[label_of == label]
        if len(members) < CONCEPT_DRAW:
            raise ValueError(f"only {len(members)} materials labelled {label!r}; the draw needs {CONCEPT_DRAW}")
        chosen.update(rng.choice(members, size=CONCEPT_DRAW, replace=False)[:per_class].tolist())
    return sorted(chosen | set(benchmark_ids(k_neighbors, queries)))


def benchmark_ids(k_neighbors: int = 50, queries: Iterable[str] = BENCHMARK_QUERIES) -> list[str]:
    """``queries`` and their ``k_neighbors`` nearest CMML neighbours in the built mp2024 map."""
    artifacts = MapArtifacts.load("mp2024")
    chosen = set(queries)
    for query in queries:
        chosen.update(artifacts.neighbors(query, k_neighbors)["material_id"])
    return sorted(chosen)


#: Materials drawn per class by :func:`concept_sample_ids` (its samples are prefixes of this draw).
CONCEPT_DRAW = 400
#: The id sets of :func:`ids_for` (``python -m ml descriptors --ids-from``).
ID_SETS = ("all", "icsd", "sample", "concepts", "benchmark")


def ids_for(choice: str, sample_size: int = 1000, seed: int = 0) -> tuple[list[str] | None, str]:
    """``(ids, label)`` of an id set: ``"all"`` (``None``: the whole dataset), ``"icsd"``
    (mp2024-icsd plus :func:`benchmark_ids`), ``"sample"`` (:func:`sample_ids`), ``"concepts"``
    (:func:`concept_sample_ids` with ``sample_size // 2`` per class) or ``"benchmark"``
    (:func:`benchmark_ids` alone, to compute them first).

    Raises:
        ValueError: unknown choice.
    """
    if choice == "all":
        return None, "all"
    if choice == "benchmark":
        return benchmark_ids(), "benchmark queries and their top-50 CMML neighbours"
    if choice == "icsd":
        return sorted(set(icsd_ids()) | set(benchmark_ids())), "mp2024-icsd + benchmark queries and their top-50 CMML neighbours"
    if choice == "sample":
        return sample_ids(sample_size, seed), (
            f"sample: {sample_size} of mp2024-icsd (numpy default_rng({seed})) + benchmark queries and their "
            "top-50 CMML neighbours"
        )
    if choice == "concepts":
        per_class = sample_size // 2
        return concept_sample_ids(per_class, seed), (
            f"concept sample: {per_class} SuperCon superconductors + {per_class} materials without a SuperCon "
            f"entry (seed {seed}) + benchmark queries and their top-50 CMML neighbours"
        )
    raise ValueError(f"unknown id set {choice!r}; expected {', '.join(ID_SETS)}")


# --------------------------------------------------------------------------- cache


def cache_folder(dataset: Dataset, spec: DescriptorSpec) -> Path:
    """Cache folder of one descriptor of ``dataset``."""
    ids_digest = hashlib.sha256("\n".join(dataset.material_ids).encode()).hexdigest()[:12]
    return get_settings().cache_dir / "descriptors" / dataset.name / f"{spec.key()}-{ids_digest}"


def _part_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("shard_*.npz") if not p.name.endswith(".part.npz"))


def _write_part(folder: Path, shard: int, dim: int, results: list[tuple[str, np.ndarray | None, str | None]]) -> None:
    """Write one part file of a shard atomically (name: shard and hash of its ids)."""
    ok = [(mid, value) for mid, value, error in results if error is None]
    failures = [{"material_id": mid, "reason": error} for mid, _, error in results if error is not None]
    digest = hashlib.sha256("\n".join(sorted(mid for mid, _, _ in results)).encode()).hexdigest()[:12]
    path = folder / f"shard_{shard:05d}-{digest}.npz"
    values = np.stack([v for _, v in ok]).astype(np.float32) if ok else np.zeros((0, dim), np.float32)
    tmp = path.with_name(path.name + ".part.npz")
    np.savez(tmp, material_ids=np.array([m for m, _ in ok], dtype=str), values=values,
             failures_json=np.array(json.dumps(failures)))
    os.replace(tmp, path)


def _read_parts(folder: Path) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    ids, values, failures = [], [], []
    for path in _part_files(folder):
        with np.load(path) as data:
            ids.append(data["material_ids"])
            values.append(data["values"])
            failures.extend(json.loads(str(data["failures_json"])))
    if not ids:
        return np.zeros(0, dtype=str), np.zeros((0, 0), np.float32), []
    # two runs sharing a cache (e.g. two processes on parts of a sample) may both have done a material
    ids_all, first = np.unique(np.concatenate(ids), return_index=True)
    done = set(ids_all.tolist())
    failures = [f for f in {f["material_id"]: f for f in failures}.values() if f["material_id"] not in done]
    return ids_all, np.concatenate(values).astype(np.float32)[first], failures


def _done_ids(folder: Path) -> set[str]:
    done: set[str] = set()
    for path in _part_files(folder):
        with np.load(path) as data:
            done.update(data["material_ids"].tolist())
            done.update(f["material_id"] for f in json.loads(str(data["failures_json"])))
    return done


def _describe_chunk(job: tuple[str, list[tuple[str, str]]]) -> list[tuple[str, np.ndarray | None, str | None]]:
    """Worker: ``(material_id, vector, None)`` or ``(material_id, None, reason)`` per record."""
    from ml.data.structures import parse_cif

    name, records = job
    spec = DESCRIPTORS[name]
    out = []
    for material_id, cif in records:
        try:
            value = np.asarray(spec.featurize(parse_cif(cif)), dtype=np.float32)
            if value.shape != (spec.dim,) or not np.isfinite(value).all():
                raise ValueError(f"bad {name} vector: shape {value.shape}, finite {np.isfinite(value).all()}")
            out.append((material_id, value, None))
        except Exception as exc:  # noqa: BLE001 — never abort a run on one structure; keep the reason
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            out.append((material_id, None, f"{type(exc).__name__}: {reason}"))
    return out


def _coverage_label(dataset: Dataset, done: set[str], runs: list[dict]) -> str:
    """Which set a cache covers: the dataset, ``mp2024-icsd``, or the id sets of its runs
    (``partial`` for a run that was interrupted)."""
    if len(done) == len(dataset):
        return dataset.name
    if dataset.name == "mp2024":
        icsd = set(icsd_ids())
        if icsd <= done:
            return "mp2024-icsd" if len(done) == len(icsd) else "mp2024-icsd plus others"
    labels: dict[str, bool] = {}
    for run in runs:
        labels[run["ids"]] = labels.get(run["ids"], False) or "finished" in run
    # concept samples of one seed are nested (concept_sample_ids): a finished larger one says it all
    largest: dict[int, int] = {}
    for run in runs:
        concepts = run.get("concept_sample")
        if concepts and "finished" in run:
            largest[concepts["seed"]] = max(largest.get(concepts["seed"], 0), concepts["per_class"])
    hidden = {run["ids"] for run in runs
              if (concepts := run.get("concept_sample")) and concepts["per_class"] < largest.get(concepts["seed"], 0)}
    return "; ".join(label if finished else f"partial: {label}"
                     for label, finished in labels.items() if label not in hidden) or "none"


def _cache_manifest(dataset: Dataset, spec: DescriptorSpec) -> dict:
    path = cache_folder(dataset, spec) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _now() -> str:
    """Local time to the microsecond: a run's start also identifies it in the manifest."""
    return datetime.now().isoformat(timespec="microseconds")


def _write_manifest(folder: Path, dataset: Dataset, spec: DescriptorSpec, request: dict | None = None) -> dict:
    """(Re)write ``manifest.json`` of a cache from its part files; ``request`` (a run: id-set
    label, counts, start and — once done — finish time) is added or updated by its start time."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {"runs": []}
    if request is not None:
        runs = [run for run in manifest["runs"] if run.get("started") != request["started"]]
        manifest["runs"] = [*runs, request]
    ids, _values, failures = _read_parts(folder)
    done = set(ids.tolist()) | {f["material_id"] for f in failures}
    manifest.update(
        name=spec.name, label=spec.label, citation=spec.citation, metric=spec.metric, dim=spec.dim,
        config=spec.config, dataset=dataset.name, n_dataset=len(dataset), n_materials=len(ids),
        n_failures=len(failures), coverage=_coverage_label(dataset, done, manifest["runs"]),
    )
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, path)
    return manifest


def refresh_manifest(dataset: str | Dataset, name: str) -> dict:
    """Rewrite the cache manifest of ``name`` from its part files (after runs were interrupted)."""
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    spec = get_spec(name)
    return _write_manifest(cache_folder(dataset, spec), dataset, spec)


#: Cores the "whole dataset" estimate of :func:`cost_estimate` assumes (the project's machine).
ESTIMATE_CORES = 2


def cost_estimate(dataset: str | Dataset, name: str, cores: int = ESTIMATE_CORES, min_run: int = 50) -> dict:
    """What ``name`` costs per structure and what computing it for all of ``dataset`` would take.

    The rate comes from the largest finished run of at least ``min_run`` materials in the cache
    manifest (wall seconds × worker processes / materials computed: seconds of one core per
    structure, parsing included), else from the spec's :attr:`DescriptorSpec.seconds_per_structure`.

    Returns:
        ``{"seconds_per_structure", "source", "whole_dataset_hours", "cores"}``; the first and
        third are ``None`` when nothing is known (``cmml``: read from the map).

    Raises:
        ValueError: unknown descriptor.
    """
    spec = get_spec(name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    runs = [run for run in _cache_manifest(dataset, spec).get("runs", [])
            if run.get("seconds") and run.get("processes") and run.get("n_todo", 0) >= min_run]
    if runs:
        run = max(runs, key=lambda r: r["n_todo"])
        rate = run["seconds"] * run["processes"] / run["n_todo"]
        source = f"measured: {run['n_todo']:,} materials, {run['processes']} processes, {run['seconds']:.0f} s"
    elif spec.seconds_per_structure is not None:
        rate, source = spec.seconds_per_structure, "registry (measured on the 2-core machine, see DescriptorSpec)"
    else:
        return {"seconds_per_structure": None, "source": "read from the built map", "whole_dataset_hours": None,
                "cores": cores}
    return {"seconds_per_structure": round(rate, 4), "source": source,
            "whole_dataset_hours": round(len(dataset) * rate / cores / 3600, 2), "cores": cores}


def compute_descriptor(
    dataset: str | Dataset,
    name: str,
    processes: int = 1,
    ids: Collection[str] | None = None,
    progress: bool = True,
    ids_label: str | None = None,
    concept_sample: dict | None = None,
) -> Path:
    """Compute the missing vectors of descriptor ``name`` for ``dataset``; return the cache folder.

    Resumable: materials already in the cache (computed or failed) are skipped; results are
    written per shard in part files of at most :data:`PART_SIZE` materials.

    Args:
        dataset: registry name (``"mp2024"``) or a :class:`~ml.data.datasets.Dataset`.
        name: a key of :data:`DESCRIPTORS`. For ``cmml`` nothing is computed: the built map is
            the source; its folder is returned.
        processes: worker processes (spawn, one BLAS thread each); 1 runs here.
        ids: materials to compute (all of the dataset when ``None``).
        progress: tqdm bar of materials.
        ids_label: how ``ids`` were chosen, recorded in the cache manifest.
        concept_sample: ``{"per_class", "seed"}`` when ``ids`` are :func:`concept_sample_ids`
            (recorded too: a cache then names only the largest of one seed's nested samples).

    Raises:
        ValueError: unknown descriptor, or ``ids`` not in the dataset.
        ml.mapping.artifacts.ArtifactError: ``cmml`` without a built map.
    """
    spec = get_spec(name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if spec.featurize is None:
        return MapArtifacts.load(dataset.name).folder
    known = set(dataset.material_ids)
    wanted = known if ids is None else set(ids)
    unknown = wanted - known
    if unknown:
        raise ValueError(f"{len(unknown)} ids are not in {dataset.name}, e.g. {sorted(unknown)[:3]}")
    folder = cache_folder(dataset, spec)
    folder.mkdir(parents=True, exist_ok=True)
    todo = wanted - _done_ids(folder)
    request = {"ids": ids_label or ("all" if ids is None else f"{len(wanted)} given ids"),
               "n_requested": len(wanted), "n_todo": len(todo), "processes": processes,
               "started": _now()}
    if concept_sample is not None:
        request["concept_sample"] = {"per_class": int(concept_sample["per_class"]), "seed": int(concept_sample["seed"])}
    began = time.perf_counter()
    log.info("%s on %s: %d requested, %d to compute", name, dataset.name, len(wanted), len(todo))
    _write_manifest(folder, dataset, spec, request)  # an interrupted run stays listed, unfinished
    if todo:
        n_shards = n_shards_for(len(dataset))
        by_shard: dict[int, list[tuple[str, str]]] = defaultdict(list)
        for material_id, cif in dataset.records(todo):
            by_shard[shard_of(material_id, n_shards)].append((material_id, cif))
        remaining = {s: len(records) for s, records in by_shard.items()}
        shard_by_id = {mid: s for s, records in by_shard.items() for mid, _ in records}
        seen: set[str] = set()

        def jobs():
            for s in sorted(by_shard):
                records = by_shard.pop(s)
                for start in range(0, len(records), CHUNK_SIZE):
                    yield (name, records[start : start + CHUNK_SIZE])

        pending: dict[int, list] = defaultdict(list)
        bar = tqdm(total=len(todo), desc=f"{name} ({dataset.name})", unit="mat", disable=not progress)
        failed = 0
        for chunk in map_chunks(_describe_chunk, jobs(), processes):
            for mid, value, error in chunk:
                s = shard_by_id[mid]
                pending[s].append((mid, value, error))
                seen.add(mid)
                failed += error is not None
                remaining[s] -= 1
                if remaining[s] == 0 or len(pending[s]) >= PART_SIZE:
                    _write_part(folder, s, spec.dim, pending.pop(s))
            bar.update(len(chunk))
            bar.set_postfix(failed=failed)
        bar.close()
        missing = todo - seen  # listed in the dataset but absent from its source
        if missing:
            _write_part(folder, 0, spec.dim, [(mid, None, "not found in the dataset's source") for mid in sorted(missing)])
    request["finished"] = _now()
    request["seconds"] = round(time.perf_counter() - began, 1)
    _write_manifest(folder, dataset, spec, request)
    return folder


# --------------------------------------------------------------------------- loading and queries


@dataclass
class DescriptorTable:
    """The computed vectors of one descriptor.

    Attributes:
        name: descriptor name.
        material_ids: ``(n,)`` ids, sorted.
        values: ``(n, d)`` float32.
        metric: ``"euclidean"``.
        coverage: which set the vectors cover (``mp2024``, ``mp2024-icsd``, ``sample`` …).
        failures: ``[{"material_id", "reason"}]``.
    """

    name: str
    material_ids: np.ndarray
    values: np.ndarray
    metric: str = "euclidean"
    coverage: str = ""
    failures: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.values.ndim != 2 or len(self.values) != len(self.material_ids):
            raise ValueError(f"values {self.values.shape} do not match {len(self.material_ids)} ids")

    def __len__(self) -> int:
        return len(self.material_ids)

    def __contains__(self, material_id: str) -> bool:
        return material_id in self._row_of

    @cached_property
    def _row_of(self) -> dict[str, int]:
        return {mid: i for i, mid in enumerate(self.material_ids.tolist())}

    @cached_property
    def _index(self) -> ExactL2Index:
        return ExactL2Index.build(self.values)

    def restrict(self, material_ids: Collection[str]) -> DescriptorTable:
        """The rows of the materials in ``material_ids`` (those not covered are ignored)."""
        keep = np.isin(self.material_ids, np.asarray(list(material_ids), dtype=str))
        return DescriptorTable(self.name, self.material_ids[keep], self.values[keep], self.metric,
                               f"{self.coverage} ∩ {len(material_ids)} given ids")

    def search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact Euclidean ``k`` nearest rows of ``vectors`` ``(m, d)``: ``(distances, rows)``, each ``(m, k)``."""
        return self._index.search(vectors, k)

    def neighbors(self, material_id: str, k: int = 50) -> pd.DataFrame:
        """The ``k`` nearest other materials: columns ``rank`` (from 1), ``material_id``, ``distance``.

        Raises:
            UnknownMaterialError: the material is not covered by this table.
        """
        if material_id not in self:
            raise UnknownMaterialError(
                f"{material_id!r} is not covered by descriptor {self.name!r} ({self.coverage}, {len(self)} materials)"
            )
        distance, rows = self._index.neighbors_of_row(self._row_of[material_id], self.values, k)
        return pd.DataFrame({"rank": np.arange(1, len(rows) + 1), "material_id": self.material_ids[rows],
                             "distance": distance.astype(np.float64)})


def load_descriptor(dataset: str | Dataset, name: str) -> DescriptorTable:
    """The computed vectors of ``name`` for ``dataset`` (``cmml``: the built map's embeddings).

    Raises:
        ValueError: unknown descriptor. FileNotFoundError: nothing computed yet (the message
        gives the command). ml.mapping.artifacts.ArtifactError: ``cmml`` without a built map.
    """
    spec = get_spec(name)
    dataset_name = dataset if isinstance(dataset, str) else dataset.name
    if spec.featurize is None:
        artifacts = MapArtifacts.load(dataset_name)
        return DescriptorTable(name, artifacts.materials["material_id"].to_numpy().astype(str),
                               np.asarray(artifacts.embeddings, dtype=np.float32), spec.metric, dataset_name)
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    folder = cache_folder(dataset, spec)
    ids, values, failures = _read_parts(folder) if folder.is_dir() else (np.zeros(0, str), None, [])
    if len(ids) == 0:
        raise FileNotFoundError(
            f"descriptor {name!r} of {dataset.name} is not computed yet ({folder}); run: "
            f"python -m ml descriptors --dataset {dataset.name} --name {name}"
        )
    order = np.argsort(ids)
    coverage = _cache_manifest(dataset, spec).get("coverage", "")
    return DescriptorTable(name, ids[order], values[order], spec.metric, coverage, failures)


def descriptor_neighbors(
    dataset: str | Dataset, name: str, material_id: str, k: int = 50, within: Collection[str] | None = None
) -> pd.DataFrame:
    """The ``k`` nearest materials to ``material_id`` under descriptor ``name``.

    Candidates are the materials the descriptor covers (its manifest says which set), or
    only those also in ``within``. Loads the table on each call; for many queries use
    ``load_descriptor(...).neighbors(...)``.

    Returns:
        Columns ``rank`` (from 1), ``material_id``, ``distance`` (descriptor units); the query
        itself is left out.

    Raises:
        UnknownMaterialError: the material is not covered. ValueError / FileNotFoundError: see
        :func:`load_descriptor`.
    """
    table = load_descriptor(dataset, name)
    if within is not None:
        table = table.restrict(set(within) | {material_id})
    return table.neighbors(material_id, k)


# --------------------------------------------------------------------------- export for the app


def export_descriptor(dataset: str | Dataset, name: str, root: Path | None = None) -> Path:
    """Write the torch-free copy the app reads: ``<artifacts>/<dataset>/descriptors/<name>/``
    with ``values.npy`` ``(n, d)`` float32, ``material_ids.npy`` ``(n,)`` str and
    ``manifest.json`` (label, citation, metric, coverage, the id sets of its runs, counts,
    SHA-256 of the files).
    Written under ``<name>.partial`` and renamed when complete. ``cmml`` is not exported:
    the map itself serves it (``MapArtifacts.neighbors``).

    Raises:
        ValueError: ``cmml`` or an unknown name. FileNotFoundError: nothing computed.
    """
    import shutil

    from ml.models.registry import file_sha256

    spec = get_spec(name)
    if spec.featurize is None:
        raise ValueError("cmml is the map itself; it needs no export")
    dataset = get_dataset(dataset) if isinstance(dataset, str) else dataset
    table = load_descriptor(dataset, name)
    folder = descriptor_dir(dataset.name, name, root)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    np.save(partial / DESCRIPTOR_VALUES, np.ascontiguousarray(table.values, dtype=np.float32))
    np.save(partial / DESCRIPTOR_IDS, table.material_ids.astype(str))
    manifest = {
        "name": name, "label": spec.label, "citation": spec.citation, "metric": spec.metric,
        "coverage": table.coverage, "dataset": dataset.name, "n_materials": len(table), "dim": int(table.values.shape[1]),
        "n_failures": len(table.failures), "config": spec.config,
        "runs": [run.get("ids") for run in _cache_manifest(dataset, spec).get("runs", [])],
        "files": {f: file_sha256(partial / f) for f in (DESCRIPTOR_VALUES, DESCRIPTOR_IDS)},
    }
    (partial / DESCRIPTOR_MANIFEST).write_text(json.dumps(manifest, indent=2))
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder


def run_descriptors(
    dataset: str, name: str | None, ids_from: str | None, sample_size: int, seed: int, processes: int, export: bool
) -> list[str]:
    """The ``python -m ml descriptors`` verb: compute ``name`` on ``ids_from`` (default: its
    spec's coverage) and export it; with ``export`` and no ``name``, export every computed
    descriptor. Returns the lines to print.

    Raises:
        ValueError: no name and no ``--export``, or an unknown name / id set.
    """
    if name is None:
        if not export:
            raise ValueError("give --name (one of " + ", ".join(DESCRIPTORS) + ") or --export")
        lines = []
        for other, other_spec in DESCRIPTORS.items():
            if other_spec.featurize is None:
                continue
            try:
                lines.append(f"{other}: exported to {export_descriptor(dataset, other)}")
            except FileNotFoundError:
                lines.append(f"{other}: not computed, skipped")
        return lines
    spec = get_spec(name)
    lines = []
    if not (export and spec.featurize is not None and ids_from is None and cache_folder(get_dataset(dataset), spec).is_dir()):
        choice = ids_from or {"mp2024": "all", "mp2024-icsd": "icsd", "sample": "sample"}[spec.coverage]
        ids, label = ids_for(choice, sample_size, seed)
        started = time.perf_counter()
        concepts = {"per_class": sample_size // 2, "seed": seed} if choice == "concepts" else None
        folder = compute_descriptor(dataset, name, processes, ids, progress=True, ids_label=label, concept_sample=concepts)
        lines.append(f"{name}: {folder} ({time.perf_counter() - started:.0f} s)")
    if spec.featurize is not None:
        table = load_descriptor(dataset, name)
        lines.append(f"{name}: {len(table)} materials ({table.coverage}), {len(table.failures)} failed")
        lines.append(f"{name}: exported to {export_descriptor(dataset, name)}")
    return lines
