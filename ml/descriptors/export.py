"""Export a computed descriptor for the app (a torch-free copy read by ``MapArtifacts.descriptor_neighbors``)
and the ``python -m ml descriptors`` verb."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ml.data.datasets import Dataset, get_dataset
from ml.descriptors.compute import _cache_manifest, cache_folder, compute_descriptor, load_descriptor
from ml.descriptors.ids import ids_for
from ml.descriptors.registry import DESCRIPTORS, get_spec
from ml.mapping.format import DESCRIPTOR_IDS, DESCRIPTOR_MANIFEST, DESCRIPTOR_VALUES, descriptor_dir


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
