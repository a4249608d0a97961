"""The material-id sets a descriptor is computed on (``--ids-from``): all, icsd, sample, concepts,
benchmark (:func:`ids_for`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ml.data.datasets import get_dataset
from ml.evaluation.neighbors import QUERIES
from ml.mapping.artifacts import MapArtifacts

#: The benchmark queries (Hg-1223 cuprate, LiCoO2, Cr2Ge2Te6, Sm2Co17): those of the
#: evaluation's neighbour step (:data:`ml.evaluation.neighbors.QUERIES`), defined there once.
BENCHMARK_QUERIES = tuple(QUERIES)


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


