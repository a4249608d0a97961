"""``python -m ml evaluate``: how good is a map, and is it better than baseline descriptors?

Steps (each cached as JSON under ``<report folder>/results/<step>.json``, recomputed only when
missing or asked for with ``--force``; the report is re-rendered from whatever is cached):

- ``retrieval``: cross-modal retrieval top-1 … top-10 on the whole test split, computed as
  :func:`ml.training.cmml.train` computes its final test numbers (:func:`ml.training.cmml.evaluate_retrieval`);
- ``neighbors``: top-50 neighbour lists of the benchmark queries under every descriptor, and the
  share of cuprates / Li–transition-metal oxides among them (:mod:`ml.evaluation.neighbors`);
- ``concepts``: superconductor classification from 10 … 400 labels (:mod:`ml.evaluation.concepts`);
- ``probes``: random-forest property probes (:mod:`ml.evaluation.probes`).

Descriptors (:mod:`ml.evaluation.descriptors`): ours, the CGCNN formation-energy latent, and the
baselines of :mod:`ml.descriptors` where computed. Comparisons are made on "comparison sets":
all materials (ours vs the CGCNN latent, both cover everything) and, for each set a baseline
covers, every descriptor restricted to the materials they all cover.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ml.evaluation.descriptors import BASELINES, CGCNN_LATENT, OURS, DescriptorStatus

log = logging.getLogger(__name__)

STEPS = ("retrieval", "neighbors", "concepts", "probes")
CONCEPT_REPEATS = 20
PROBE_TRAIN_CAP = 10_000


@dataclass
class Context:
    """What the steps share: the dataset, the map, the descriptors, the materials table."""

    dataset: object
    artifacts: object
    descriptors: dict[str, DescriptorStatus]

    @property
    def materials(self) -> pd.DataFrame:
        return self.artifacts.materials


def covers_all(ctx: Context, name: str) -> bool:
    """Whether descriptor ``name`` has a vector for every material of the map."""
    status = ctx.descriptors[name]
    return status.available and bool(np.isin(ctx.materials["material_id"].to_numpy().astype(str),
                                             status.table.material_ids).all())


def comparison_sets(ctx: Context) -> list[dict]:
    """``[{"name", "descriptors", "material_ids"}]``: all materials for ours + CGCNN latent and
    every baseline that covers them all, then one set per distinct coverage of the other
    baselines (ours, CGCNN and every baseline covering all of it), then the set common to every
    available descriptor."""
    all_ids = ctx.materials["material_id"].to_numpy().astype(str)
    available = {n: s for n, s in ctx.descriptors.items() if s.available}
    core = [n for n in (OURS, CGCNN_LATENT) if n in available]
    everywhere = [n for n in available if n not in core and covers_all(ctx, n)]
    out = [{"name": f"all {ctx.artifacts.dataset}", "descriptors": core + everywhere, "material_ids": all_ids}]
    seen = {_digest(all_ids)}
    baselines = [n for n in available if n not in core]
    for name in [*baselines, "common"]:
        if name == "common":
            ids = all_ids
            for b in baselines:
                ids = ids[np.isin(ids, available[b].table.material_ids)]
            members, label = core + baselines, "common to all descriptors"
        else:
            ids = all_ids[np.isin(all_ids, available[name].table.material_ids)]
            members = core + [b for b in baselines if np.isin(ids, available[b].table.material_ids).all()]
            # its coverage is spelled out once, in the report's descriptor table
            label = f"{name}'s set ({len(ids):,} materials)"
        if _digest(ids) in seen or len(ids) == 0:
            continue
        seen.add(_digest(ids))
        out.append({"name": label, "descriptors": members, "material_ids": ids})
    return out


def _digest(material_ids: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256("\n".join(sorted(material_ids)).encode()).hexdigest()


# --------------------------------------------------------------------------- steps


def step_retrieval(ctx: Context) -> dict:
    """Top-1 … top-10 XRD → crystal retrieval over the whole test split."""
    from ml.models.cmml import load_model
    from ml.models.registry import resolve_model
    from ml.training.cmml import evaluate_retrieval, load_training_data

    _name, path = resolve_model(ctx.artifacts.model)
    model, _payload = load_model(path)
    data = load_training_data(ctx.dataset.split_subset("test"), None, processes=1)
    topk = evaluate_retrieval(model, data, "test", "cpu", ks=tuple(range(1, 11)))
    return {"split": "test", "n_candidates": len(data.rows("test")), "model": ctx.artifacts.model,
            "topk": {str(k): v for k, v in topk.items()}}


def step_neighbors(ctx: Context, k: int = 50) -> dict:
    from ml.evaluation.neighbors import QUERIES, fractions_table, neighbor_lists

    tables = {n: s.table for n, s in ctx.descriptors.items() if s.available}
    # a baseline computed on a subset searches only that subset: ours and the CGCNN latent
    # restricted to the same subset make the like-for-like comparison
    for comparison in comparison_sets(ctx)[1:]:
        for name in (OURS, CGCNN_LATENT):
            if name in tables:
                tables[f"{name} within {comparison['name']}"] = ctx.descriptors[name].table.restrict(comparison["material_ids"])
    lists = neighbor_lists(tables, QUERIES, k)
    elements_of = dict(zip(ctx.materials["material_id"], ctx.materials["elements"]))
    mentioned = set(QUERIES) | {m for by in lists.values() for ids in by.values() if isinstance(ids, list) for m in ids}
    formula_of = {m: f for m, f in zip(ctx.materials["material_id"], ctx.materials["formula"]) if m in mentioned}
    return {"k": k, "lists": lists, "fractions": fractions_table(lists, elements_of).to_dict("records"),
            "formula_of": formula_of}


def step_concepts(ctx: Context, repeats: int = CONCEPT_REPEATS, seed: int = 0) -> dict:
    from ml.evaluation.concepts import TRAINING_SIZES, concept_pool, few_label_auc, summarise
    from ml.evaluation.descriptors import aligned

    out = []
    for comparison in comparison_sets(ctx):
        covered = ctx.materials[ctx.materials["material_id"].isin(comparison["material_ids"])]
        try:
            pool = concept_pool(covered, seed)
        except ValueError as exc:
            out.append({"set": comparison["name"], "skipped": str(exc)})
            continue
        features, mask = aligned({n: ctx.descriptors[n] for n in comparison["descriptors"]}, pool["material_id"])
        pool = pool[mask]
        log.info("concepts on %s: %d materials, descriptors %s", comparison["name"], len(pool), list(features))
        aucs = few_label_auc(features, pool["label"].to_numpy(), pool["group"].to_numpy(), TRAINING_SIZES, repeats, seed)
        out.append({"set": comparison["name"], "n_pool": len(pool), "n_positive": int(pool["label"].sum()),
                    "n_groups": int(pool["group"].nunique()), "summary": summarise(aucs).to_dict("records")})
    return {"repeats": repeats, "test_groups": 0.3, "sizes": list(TRAINING_SIZES), "comparisons": out}


def step_probes(ctx: Context, train_cap: int = PROBE_TRAIN_CAP, seed: int = 0) -> dict:
    from ml.evaluation.descriptors import aligned
    from ml.evaluation.probes import run_probes

    out = []
    for comparison in comparison_sets(ctx):
        in_set = ctx.materials[ctx.materials["material_id"].isin(comparison["material_ids"])]
        features, mask = aligned({n: ctx.descriptors[n] for n in comparison["descriptors"]}, in_set["material_id"])
        log.info("probes on %s: %d materials", comparison["name"], int(mask.sum()))
        table = run_probes(features, in_set[mask].reset_index(drop=True), train_cap, seed)
        out.append({"set": comparison["name"], "rows": table.to_dict("records")})
    return {"train_cap": train_cap, "comparisons": out}


STEP_FUNCTIONS = {"retrieval": step_retrieval, "neighbors": step_neighbors, "concepts": step_concepts,
                  "probes": step_probes}


# --------------------------------------------------------------------------- driver


def evaluate(dataset: str = "mp2024", model: str | None = None, out: Path | None = None,
             steps: list[str] | None = None, force: bool = False) -> Path:
    """Run the missing (or, with ``force``, the given) steps and write ``report.md``.

    Returns:
        The report file.

    Raises:
        ValueError: an unknown step. ArtifactError: no built map. DatasetError: unknown dataset.
    """
    from ml.mapping.artifacts import MapArtifacts
    from ml.data.datasets import get_dataset
    from ml.evaluation.descriptors import collect
    from ml.evaluation.report import write_report
    from ml.settings import get_settings
    from ml.threads import torch_threads

    steps = list(STEPS) if steps is None else steps
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"unknown evaluation step(s) {unknown}; expected some of {', '.join(STEPS)}")
    with torch_threads(1):  # one niced core on a shared machine
        data = get_dataset(dataset)
        artifacts = MapArtifacts.load(dataset, model)
        out = out or get_settings().data_dir / "reports" / data.name
        results_dir = out / "results"
        results_dir.mkdir(parents=True, exist_ok=True)
        ctx = Context(data, artifacts, collect(data, artifacts))
        descriptors = {n: {"label": s.label, "coverage": s.coverage, "available": s.available, "cost": _cost(data, n),
                           "whole_dataset": covers_all(ctx, n)}
                       for n, s in ctx.descriptors.items()}
        _write_json(results_dir / "descriptors.json", descriptors)
        for step in steps:
            path = results_dir / f"{step}.json"
            if path.is_file() and not force:
                log.info("%s: cached in %s", step, path)
                continue
            began = time.time()
            result = STEP_FUNCTIONS[step](ctx)
            result["seconds"] = round(time.time() - began, 1)
            result["descriptors"] = descriptors
            _write_json(path, result)
            log.info("%s: done in %.0f s", step, result["seconds"])
    return write_report(out, dataset=data.name, model=artifacts.model, results=load_results(out))


def _cost(dataset, name: str) -> dict | None:
    """:func:`ml.descriptors.compute.cost_estimate` of a baseline (``None`` for ours and the CGCNN latent,
    which are computed for every material with the map)."""
    if name not in BASELINES:
        return None
    from ml.descriptors.compute import cost_estimate

    return cost_estimate(dataset, name)


def load_results(out: Path) -> dict[str, dict]:
    """The cached step results of a report folder (``{}`` for a step not run yet)."""
    results = {}
    for name in ("descriptors", *STEPS):
        path = out / "results" / f"{name}.json"
        results[name] = json.loads(path.read_text()) if path.is_file() else {}
    return results


def _write_json(path: Path, payload: dict) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(payload, indent=1, default=_jsonable))
    part.replace(path)


def _jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    raise TypeError(f"cannot serialise {type(value).__name__}")
