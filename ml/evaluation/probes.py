"""Property probes (Suzuki et al. 2022, analysis 4): how much of a property a descriptor holds,
measured by a random forest trained from the descriptor to the property.

Regression targets are scored by MAE in their unit, classification targets (space group,
crystal system) by accuracy. Training materials come from the ``train`` split (capped, drawn
at random), test materials are the ``test`` split; both only where the property is known.
A "no descriptor" row (the training mean / most frequent class) gives the floor.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

#: target column → (kind, unit or None)
PROBE_TARGETS: dict[str, tuple[str, str | None]] = {
    "density": ("regression", "g/cm³"),
    "formation_energy_per_atom": ("regression", "eV/atom"),
    "band_gap": ("regression", "eV"),
    "total_magnetization": ("regression", "μB/cell"),
    "spacegroup_number": ("classification", None),
    "crystal_system": ("classification", None),
}
FLOOR = "no descriptor (mean / majority)"


def probe_score(kind: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                seed: int = 0, n_estimators: int = 100) -> float:
    """MAE (regression, in the target's unit) or accuracy (classification) of a random forest.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind == "regression":
        forest = RandomForestRegressor(n_estimators=n_estimators, max_features="sqrt", random_state=seed, n_jobs=1)
        forest.fit(x_train, y_train)
        return float(np.mean(np.abs(forest.predict(x_test) - y_test)))
    if kind == "classification":
        forest = RandomForestClassifier(n_estimators=n_estimators, max_features="sqrt", random_state=seed, n_jobs=1)
        forest.fit(x_train, y_train)
        return float(np.mean(forest.predict(x_test) == y_test))
    raise ValueError(f"unknown probe kind {kind!r}; expected 'regression' or 'classification'")


def floor_score(kind: str, y_train: np.ndarray, y_test: np.ndarray) -> float:
    """The score of predicting the training mean (regression) or most frequent class."""
    if kind == "regression":
        return float(np.mean(np.abs(y_test - np.mean(y_train))))
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(y_test == values[np.argmax(counts)]))


def run_probes(features: dict[str, np.ndarray], table: pd.DataFrame, train_cap: int = 10_000,
               seed: int = 0, targets: dict[str, tuple[str, str | None]] | None = None) -> pd.DataFrame:
    """Probe every descriptor for every target.

    Args:
        features: name → ``(n, d)`` matrix, row-aligned with ``table``.
        table: ``split`` and the target columns.
        train_cap: at most this many training materials per target (random).

    Returns:
        One row per (target, descriptor): ``kind``, ``unit``, ``metric`` (``MAE`` / ``accuracy``),
        ``score``, ``n_train``, ``n_test``; the floor comes as descriptor :data:`FLOOR`.
    """
    targets = targets or PROBE_TARGETS
    rows = []
    for column, (kind, unit) in targets.items():
        values = table[column]
        known = values.notna().to_numpy()
        train = np.flatnonzero(known & (table["split"] == "train").to_numpy())
        test = np.flatnonzero(known & (table["split"] == "test").to_numpy())
        if len(train) == 0 or len(test) == 0:
            continue
        if len(train) > train_cap:
            train = np.sort(np.random.default_rng(seed).choice(train, train_cap, replace=False))
        y = values.to_numpy()
        y = y.astype(float) if kind == "regression" else y.astype(str)
        metric = "MAE" if kind == "regression" else "accuracy"
        base = {"target": column, "kind": kind, "unit": unit, "metric": metric,
                "n_train": len(train), "n_test": len(test)}
        rows.append(base | {"descriptor": FLOOR, "score": floor_score(kind, y[train], y[test])})
        for name, matrix in features.items():
            score = probe_score(kind, matrix[train], y[train], matrix[test], y[test], seed)
            rows.append(base | {"descriptor": name, "score": score})
    return pd.DataFrame(rows)
