"""Materials concepts from a few labels, for the app's ``/concept`` page: a random forest on the
crystal embeddings scores every material (scikit-learn, imported when a forest is fitted).

The user marks materials as *positives* of a concept (superconductor, battery cathode …) and
optionally as *negatives*; without negatives, randomly drawn unlabelled materials stand in
for them (positive–unlabelled learning: most materials are not in any given concept). A
random forest on the crystal embeddings then gives every material the probability of the
positive class. This is the concept classification of Suzuki et al., *Mach. Learn.: Sci.
Technol.* 3, 045034 (2022), section "materials concepts" (random forest on the embeddings,
balanced classes), run interactively; :mod:`ml.evaluation.concepts` is its offline evaluation.

Training materials are scored by their *out-of-bag* probability (only the trees that did not
see them vote), so a random negative is not pushed to 0 because it was trained as one, and
the out-of-bag ROC AUC says how well the forest separates the labels.

Plain data in and out: material ids or rows in, :class:`ConceptScores` (numpy arrays, numbers) out.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: Fewest positives (and, when the user gives negatives, fewest negatives) a forest is fitted on.
MIN_LABELS = 3


class ConceptError(ValueError):
    """Labels a concept cannot be learnt from (no positives, too few, contradictory); the
    message is meant for the user."""


@dataclass(frozen=True)
class ConceptConfig:
    """Settings of the concept forest.

    Attributes:
        n_estimators: trees of the forest (fitted in ``chunks`` steps, for progress).
        min_samples_leaf: smallest leaf of a tree.
        negatives_per_positive: random negatives drawn per positive when the user gives none.
        min_random_negatives, max_random_negatives: bounds on that number (and never more
            than the unlabelled materials).
        seed: seed of the random negatives and of the forest (same labels, same scores).
        chunks: the forest is grown in this many steps, the scoring done in as many.
    """

    n_estimators: int = 150
    min_samples_leaf: int = 1
    negatives_per_positive: float = 5.0
    min_random_negatives: int = 500
    max_random_negatives: int = 20_000
    seed: int = 0
    chunks: int = 10

    def __post_init__(self) -> None:
        if self.n_estimators < 10:
            raise ValueError(f"n_estimators must be at least 10, got {self.n_estimators}")
        if self.min_samples_leaf < 1:
            raise ValueError(f"min_samples_leaf must be at least 1, got {self.min_samples_leaf}")
        if self.negatives_per_positive <= 0:
            raise ValueError(f"negatives_per_positive must be positive, got {self.negatives_per_positive}")
        if not 1 <= self.min_random_negatives <= self.max_random_negatives:
            raise ValueError("need 1 <= min_random_negatives <= max_random_negatives")
        if not 1 <= self.chunks <= self.n_estimators:
            raise ValueError(f"chunks must be between 1 and n_estimators, got {self.chunks}")


@dataclass
class ConceptScores:
    """What :func:`fit_concept` returns.

    Attributes:
        scores: ``(n_materials,)`` float32 probability of the positive class, in [0, 1]
            (out-of-bag for the training materials).
        positive_rows, negative_rows: ``(p,)``, ``(q,)`` int64 rows the forest was trained on.
        random_negatives: the negatives were drawn at random from the unlabelled materials.
        oob_auc: out-of-bag ROC AUC on the training rows (``nan`` when undefined).
    """

    scores: np.ndarray
    positive_rows: np.ndarray
    negative_rows: np.ndarray
    random_negatives: bool
    oob_auc: float


Progress = Callable[[int, int, str], None]


def random_negative_count(n_positives: int, n_materials: int, config: ConceptConfig | None = None) -> int:
    """How many random negatives :func:`fit_concept` draws for ``n_positives`` positives on a map of
    ``n_materials``: ``negatives_per_positive`` per positive within the config's bounds, never more
    than the unlabelled materials."""
    config = config or ConceptConfig()
    wanted = int(np.clip(round(config.negatives_per_positive * n_positives),
                         config.min_random_negatives, config.max_random_negatives))
    return min(wanted, n_materials - n_positives)


def _unique_rows(rows, n: int, name: str) -> np.ndarray:
    rows = np.unique(np.asarray(rows if rows is not None else [], dtype=np.int64).ravel())
    if rows.size and (rows[0] < 0 or rows[-1] >= n):
        raise ValueError(f"{name} rows must lie in 0 … {n - 1}")
    return rows


def fit_concept(
    embeddings: np.ndarray,
    positive_rows,
    negative_rows=None,
    config: ConceptConfig | None = None,
    progress: Progress | None = None,
) -> ConceptScores:
    """Fit a random forest to the labelled rows of ``embeddings`` and score every row.

    Args:
        embeddings: ``(n_materials, embedding_dim)`` crystal embeddings (a memory map is fine).
        positive_rows: rows of the positives (at least :data:`MIN_LABELS`).
        negative_rows: rows of the negatives; empty or ``None``: random unlabelled rows,
            ``negatives_per_positive`` per positive within the config's bounds.
        config: forest settings (default :class:`ConceptConfig`).
        progress: called as ``progress(done, total, what)`` while fitting and scoring.

    Returns:
        :class:`ConceptScores`.

    Raises:
        ConceptError: no positives, fewer than :data:`MIN_LABELS` positives (or given
            negatives), a row both positive and negative, or no unlabelled material left to
            serve as a negative.
        ValueError: a row outside the table.
    """
    from sklearn.metrics import roc_auc_score

    config = config or ConceptConfig()
    n = len(embeddings)
    positives, negatives, random_negatives = _training_rows(n, positive_rows, negative_rows, config)
    rows = np.concatenate([positives, negatives])
    order = np.argsort(rows)  # read the (possibly memory-mapped) embeddings in row order
    x = np.asarray(embeddings[rows[order]], dtype=np.float32)
    y = np.concatenate([np.ones(positives.size, dtype=np.int8), np.zeros(negatives.size, dtype=np.int8)])[order]
    train_rows = rows[order]

    forest = _grow_forest(x, y, config, progress)
    scores = _score_rows(forest, embeddings, config, progress)
    oob = forest.oob_decision_function_[:, 1]
    seen_oob = np.isfinite(oob)  # a row every tree trained on has no out-of-bag vote
    scores[train_rows[seen_oob]] = oob[seen_oob]
    try:
        auc = float(roc_auc_score(y[seen_oob], oob[seen_oob]))
    except ValueError:  # one class only among the out-of-bag rows
        auc = float("nan")
    return ConceptScores(scores=scores, positive_rows=positives, negative_rows=negatives,
                         random_negatives=random_negatives, oob_auc=auc)


def _training_rows(n: int, positive_rows, negative_rows, config: ConceptConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(positives, negatives, random_negatives)``: the checked label rows, the negatives drawn
    at random from the unlabelled rows when none are given (raises as :func:`fit_concept`)."""
    positives = _unique_rows(positive_rows, n, "positive")
    negatives = _unique_rows(negative_rows, n, "negative")
    if positives.size == 0:
        raise ConceptError("No positives: mark at least a few materials as examples of the concept.")
    if positives.size < MIN_LABELS:
        raise ConceptError(f"Too few positives: {positives.size}; mark at least {MIN_LABELS}.")
    both = np.intersect1d(positives, negatives)
    if both.size:
        raise ConceptError(f"{both.size} material(s) are marked both positive and negative; unmark them in one list.")
    random_negatives = negatives.size == 0
    if random_negatives:
        unlabelled = np.setdiff1d(np.arange(n), positives)
        wanted = random_negative_count(positives.size, n, config)
        if wanted < MIN_LABELS:
            raise ConceptError("Too few unlabelled materials left to serve as negatives; mark some negatives.")
        negatives = np.sort(np.random.default_rng(config.seed).choice(unlabelled, size=wanted, replace=False))
    elif negatives.size < MIN_LABELS:
        raise ConceptError(f"Too few negatives: {negatives.size}; mark at least {MIN_LABELS}, "
                           "or none to use random unlabelled materials.")
    return positives, negatives, random_negatives


def _grow_forest(x: np.ndarray, y: np.ndarray, config: ConceptConfig, progress: Progress | None):
    """The balanced random forest on ``x`` ``(m, d)`` / ``y`` ``(m,)``, grown in ``config.chunks``
    steps (progress steps 1 … chunks of 2 · chunks), out-of-bag scores computed at the last."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.utils.class_weight import compute_class_weight

    # "balanced" weights, computed once (the preset warns under warm_start; same data here)
    weights = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    forest = RandomForestClassifier(
        n_estimators=0, warm_start=True, class_weight={0: weights[0], 1: weights[1]}, min_samples_leaf=config.min_samples_leaf,
        max_features="sqrt", n_jobs=1, random_state=config.seed,
    )
    steps = np.linspace(0, config.n_estimators, config.chunks + 1).round().astype(int)[1:]
    for i, n_trees in enumerate(steps):
        forest.set_params(n_estimators=int(n_trees), oob_score=bool(i == len(steps) - 1))
        with warnings.catch_warnings():  # rows without out-of-bag votes are handled below
            warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
            forest.fit(x, y)
        if progress:
            progress(i + 1, 2 * config.chunks, f"growing trees: {n_trees} of {config.n_estimators}")
    return forest


def _score_rows(forest, embeddings: np.ndarray, config: ConceptConfig, progress: Progress | None) -> np.ndarray:
    """``(n,)`` float32 probability of the positive class of every row, in ``config.chunks`` steps
    (progress steps chunks + 1 … 2 · chunks)."""
    n = len(embeddings)
    scores = np.empty(n, dtype=np.float32)
    bounds = np.linspace(0, n, config.chunks + 1).round().astype(int)
    for i, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        if hi > lo:
            scores[lo:hi] = forest.predict_proba(np.asarray(embeddings[lo:hi], dtype=np.float32))[:, 1]
        if progress:
            progress(config.chunks + i + 1, 2 * config.chunks, f"scoring materials: {hi:,} of {n:,}")
    return scores


def concept_scores(atlas, positive_ids, negative_ids=(), config: ConceptConfig | None = None,
                   progress: Progress | None = None) -> ConceptScores:
    """:func:`fit_concept` on a loaded map's embeddings, labels given as material ids (ids not
    in the map are left out).

    Args:
        atlas: a loaded map (:class:`ml.service.LoadedMap`).
        positive_ids, negative_ids: material ids of the positives and negatives (none: random
            unlabelled materials).

    Returns:
        :class:`ConceptScores`, ``scores`` ``(n_materials,)`` in map-row order.

    Raises:
        ConceptError, ValueError: as :func:`fit_concept`.
    """
    return fit_concept(atlas.embeddings, label_rows(atlas, positive_ids), label_rows(atlas, negative_ids),
                       config, progress=progress)


def label_rows(atlas, material_ids) -> np.ndarray:
    """``(m,)`` int64 map rows of the ``material_ids`` that are in the map, in the given order."""
    return np.array([atlas.row_of(m) for m in material_ids or () if m in atlas], dtype=np.int64)
