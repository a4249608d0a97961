"""Materials-concept classification with few labels (Suzuki et al. 2022, analysis 3).

"Superconductor or not" from a descriptor with a random forest trained on 10 … 400 balanced
examples, scored by ROC-AUC on materials of chemical systems never seen in training:

- positives: materials with a direct, undoped SuperCon match with Tc > 0 K
  (:func:`ml.data.datasets.read_supercon_labels`, label ``superconductor``);
- negatives: as many materials without any SuperCon match, drawn at random;
- groups: the chemical system (sorted element set, ``Ba-Cu-O-Y``). Each repeat holds out a
  random 30 % of the chemical systems (sklearn ``GroupShuffleSplit``: leave-p-groups-out
  style); the training examples are drawn, balanced, from the other systems only;
- every descriptor sees the same splits and the same training draws (paired comparison).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupShuffleSplit

TRAINING_SIZES = (10, 20, 50, 100, 200, 400)
POSITIVE = "superconductor"
NO_MATCH = "no SuperCon entry"


def chemical_system(elements: str | Sequence[str]) -> str:
    """``"O Cu Ba Y"`` or ``["O", "Cu", …]`` → ``"Ba-Cu-O-Y"`` (sorted, ``-``-joined)."""
    parts = elements.split() if isinstance(elements, str) else list(elements)
    return "-".join(sorted(parts))


def concept_pool(materials: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Positives and an equal number of random no-match negatives.

    Args:
        materials: ``material_id``, ``elements`` (space-separated), ``supercon_label``
            (``superconductor``, ``non-superconductor``, ``doped match``, ``no SuperCon entry``).

    Returns:
        ``material_id``, ``label`` (1 superconductor, 0 no match), ``group`` (chemical system).

    Raises:
        ValueError: no positives, or fewer no-match materials than positives.
    """
    positives = materials[materials["supercon_label"] == POSITIVE]
    candidates = materials[materials["supercon_label"] == NO_MATCH]
    if positives.empty or len(candidates) < len(positives):
        raise ValueError(f"{len(positives)} superconductors and {len(candidates)} unmatched materials: cannot balance")
    negatives = candidates.sample(len(positives), random_state=seed)
    pool = pd.concat([positives.assign(label=1), negatives.assign(label=0)])
    return pd.DataFrame({"material_id": pool["material_id"].to_numpy(), "label": pool["label"].to_numpy(),
                         "group": [chemical_system(e) for e in pool["elements"]]})


def balanced_sample(labels: np.ndarray, candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of the ``candidates`` (indices into ``labels``), half positive, half negative.

    Raises:
        ValueError: ``n`` odd, or too few of one class among the candidates.
    """
    if n % 2:
        raise ValueError(f"a balanced sample needs an even size, got {n}")
    picked = []
    for value in (1, 0):
        pool = candidates[labels[candidates] == value]
        if len(pool) < n // 2:
            raise ValueError(f"only {len(pool)} examples of class {value} for a balanced sample of {n}")
        picked.append(rng.choice(pool, n // 2, replace=False))
    return np.concatenate(picked)


def group_splits(groups: np.ndarray, repeats: int, test_size: float = 0.3, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``repeats`` (train, test) index pairs in which no group is on both sides."""
    splitter = GroupShuffleSplit(n_splits=repeats, test_size=test_size, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def few_label_auc(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    groups: np.ndarray,
    sizes: Sequence[int] = TRAINING_SIZES,
    repeats: int = 20,
    seed: int = 0,
    n_estimators: int = 100,
) -> dict[str, dict[int, list[float]]]:
    """ROC-AUC of a random forest per descriptor and training size, one value per repeat.

    Args:
        features: descriptor name → ``(n, d)`` matrix, row-aligned with ``labels``.
        labels: ``(n,)`` 0 / 1. groups: ``(n,)`` chemical systems.
        sizes: balanced training-set sizes. repeats: group splits (each with its own draw).

    Returns:
        ``{descriptor: {size: [auc per repeat]}}``; a size larger than a split's training
        positives or negatives allows is skipped for that repeat.
    """
    labels = np.asarray(labels)
    out: dict[str, dict[int, list[float]]] = {name: {n: [] for n in sizes} for name in features}
    for r, (train, test) in enumerate(group_splits(np.asarray(groups), repeats, seed=seed)):
        if len(np.unique(labels[test])) < 2:
            continue
        for n in sizes:
            rng = np.random.default_rng([seed, r, n])
            try:
                chosen = balanced_sample(labels, train, n, rng)
            except ValueError:
                continue
            for name, matrix in features.items():
                forest = RandomForestClassifier(n_estimators=n_estimators, random_state=r, n_jobs=1)
                forest.fit(matrix[chosen], labels[chosen])
                out[name][n].append(float(roc_auc_score(labels[test], forest.predict_proba(matrix[test])[:, 1])))
    return out


def summarise(aucs: dict[str, dict[int, list[float]]]) -> pd.DataFrame:
    """One row per (descriptor, size): ``mean``, ``std``, ``repeats``."""
    rows = [{"descriptor": name, "size": n, "mean": float(np.mean(v)) if v else np.nan,
             "std": float(np.std(v)) if v else np.nan, "repeats": len(v)}
            for name, by_size in aucs.items() for n, v in by_size.items()]
    return pd.DataFrame(rows)
