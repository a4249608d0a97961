"""The concept forest (ml/service/concepts.py) and its drawing helpers (components/concept.py), on
small synthetic embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from components.concept import (
    CANDIDATE_COLUMNS,
    apply_labels,
    candidate_table,
    decode_scores,
    empty_labels,
    encode_scores,
    label_ring_marker,
    label_set_ids,
    labels_key,
    parse_ids,
    score_layers,
)
from ml.service.concepts import MIN_LABELS, ConceptConfig, ConceptError, fit_concept

FAST = ConceptConfig(n_estimators=40, chunks=4, min_random_negatives=50)


def two_clusters(n_per: int = 150, dim: int = 8, seed: int = 0) -> np.ndarray:
    """Rows 0 … n_per-1 around +2, the rest around -2 in every dimension (float32)."""
    rng = np.random.default_rng(seed)
    a = rng.normal(2.0, 1.0, size=(n_per, dim))
    b = rng.normal(-2.0, 1.0, size=(n_per, dim))
    return np.vstack([a, b]).astype(np.float32)


def test_fit_learns_the_concept_of_a_few_positives():
    x = two_clusters()
    positives = [0, 3, 7, 11, 20]
    result = fit_concept(x, positives, config=FAST)
    unlabelled_a = np.setdiff1d(np.arange(150), positives)
    assert result.scores.shape == (300,) and result.scores.dtype == np.float32
    assert 0.0 <= result.scores.min() and result.scores.max() <= 1.0
    # the rest of the positives' cluster ranks above the other cluster
    truth = np.r_[np.ones(unlabelled_a.size), np.zeros(150)]
    assert roc_auc_score(truth, np.r_[result.scores[unlabelled_a], result.scores[150:]]) > 0.95
    assert result.random_negatives and not np.isin(result.negative_rows, positives).any()


def test_random_negatives_are_scored_out_of_bag():
    """A random negative drawn from the positives' cluster is not pushed to 0 for having been
    a training negative: its out-of-bag score still says it looks like the positives."""
    x = two_clusters()
    result = fit_concept(x, list(range(100)), config=ConceptConfig(n_estimators=60, chunks=3, min_random_negatives=150))
    drawn_from_a = result.negative_rows[result.negative_rows < 150]
    assert drawn_from_a.size > 0
    assert result.scores[drawn_from_a].mean() > 0.5
    assert result.oob_auc > 0.8


def test_given_negatives_are_used_as_they_are():
    x = two_clusters()
    result = fit_concept(x, [0, 1, 2, 3], [150, 151, 152, 153], config=FAST)
    assert not result.random_negatives
    assert list(result.negative_rows) == [150, 151, 152, 153]
    assert result.scores[5:150].mean() > result.scores[155:].mean()


def test_same_labels_same_scores_and_progress_reaches_the_end():
    x = two_clusters()
    calls = []
    first = fit_concept(x, [0, 1, 2, 3, 4], config=FAST, progress=lambda d, t, w: calls.append((d, t, w)))
    second = fit_concept(x, [4, 3, 2, 1, 0, 0], config=FAST)
    np.testing.assert_array_equal(first.scores, second.scores)
    done = [d for d, _, _ in calls]
    assert done == sorted(done) and done[-1] == calls[-1][1] == 2 * FAST.chunks


@pytest.mark.parametrize(
    ("positives", "negatives", "message"),
    [
        ([], None, "No positives"),
        ([0, 1], None, "Too few positives: 2"),
        ([0, 1, 2], [2, 160, 161], "both positive and negative"),
        ([0, 1, 2], [160], "Too few negatives: 1"),
    ],
)
def test_unusable_labels_say_why(positives, negatives, message):
    with pytest.raises(ConceptError, match=message):
        fit_concept(two_clusters(), positives, negatives, config=FAST)


def test_rows_outside_the_table_are_refused():
    with pytest.raises(ValueError, match="rows must lie in 0"):
        fit_concept(two_clusters(), [0, 1, 300], config=FAST)


def test_config_is_validated():
    with pytest.raises(ValueError, match="n_estimators"):
        ConceptConfig(n_estimators=5)
    with pytest.raises(ValueError, match="chunks"):
        ConceptConfig(n_estimators=20, chunks=30)
    assert MIN_LABELS >= 2


def test_parse_ids_splits_on_any_separator_and_lists_unknown_ones():
    known = {"mp-1", "mp-2", "mp-3"}
    found, unknown = parse_ids(" mp-1, mp-2;mp-9\n'mp-3'  mp-1 xx", known)
    assert found == ["mp-1", "mp-2", "mp-3"]
    assert unknown == ["mp-9", "xx"]
    assert parse_ids(None, known) == ([], [])


def test_apply_labels_moves_toggles_and_leaves_the_input_alone():
    labels = {"positives": ["a", "b"], "negatives": ["c"]}
    moved = apply_labels(labels, "negatives", ["b", "d", "d"])
    assert moved == {"positives": ["a"], "negatives": ["c", "b", "d"]}
    assert labels == {"positives": ["a", "b"], "negatives": ["c"]}
    toggled = apply_labels(moved, "positives", ["c", "e"], toggle=True)
    assert toggled == {"positives": ["a", "e"], "negatives": ["b", "d"]}
    assert apply_labels(None, "positives", ["x"]) == {"positives": ["x"], "negatives": []}
    with pytest.raises(ValueError, match="unknown role"):
        apply_labels(labels, "maybe", ["a"])


def test_labels_key_ignores_order_but_not_role():
    assert labels_key({"positives": ["a", "b"], "negatives": []}) == labels_key({"positives": ["b", "a"]})
    assert labels_key({"positives": ["a"], "negatives": ["b"]}) != labels_key({"positives": ["b"], "negatives": ["a"]})
    assert labels_key(None) == labels_key(empty_labels())


def test_label_sets_read_the_supercon_column():
    materials = pd.DataFrame({
        "material_id": ["m1", "m2", "m3", "m4"],
        "supercon_label": ["superconductor", "doped match", "non-superconductor", None],
    })
    assert label_set_ids(materials, "superconductors") == (["m1"], "positives")
    assert label_set_ids(materials, "non-superconductors") == (["m3"], "negatives")
    assert label_set_ids(materials.drop(columns="supercon_label"), "superconductors") == ([], "positives")
    with pytest.raises(ValueError, match="unknown label set"):
        label_set_ids(materials, "magnets")


def test_candidates_are_the_best_unlabelled_materials():
    materials = pd.DataFrame({"material_id": [f"m{i}" for i in range(6)], "formula": list("ABCDEF"),
                              "band_gap": np.arange(6.0)})
    scores = np.array([0.9, 0.1, 0.8, 0.95, 0.3, 0.5], dtype=np.float32)
    table = candidate_table(materials, scores, labelled_rows=[3], limit=3)
    assert list(table.columns) == [*CANDIDATE_COLUMNS, "band_gap"]
    assert list(table["material_id"]) == ["m0", "m2", "m5"]
    assert list(table["rank"]) == [1, 2, 3]
    assert table["score"].is_monotonic_decreasing


def test_scores_round_trip_through_the_store():
    scores = np.random.default_rng(1).random(1000).astype(np.float32)
    np.testing.assert_array_equal(decode_scores(encode_scores(scores), 1000), scores)
    with pytest.raises(ValueError, match="for 1000 materials, the map has 999"):
        decode_scores(encode_scores(scores), 999)


def test_score_layers_draw_the_best_on_top():
    scores = np.array([0.2, 0.9, 0.5], dtype=np.float32)
    layers = score_layers(scores)
    assert list(layers.foreground_rows) == [0, 2, 1]
    assert list(layers.foreground_marker["color"]) == pytest.approx([0.2, 0.5, 0.9])
    assert (layers.foreground_marker["cmin"], layers.foreground_marker["cmax"]) == (0.0, 1.0)
    assert score_layers(None, 10).foreground_rows.size == 0
    low = score_layers(np.array([0.5, 0.001, 0.3], dtype=np.float32), floor=0.01)
    assert list(low.foreground_rows) == [2, 0] and "(1)" in low.base_name


def test_training_example_rings_stay_out_of_the_way():
    n = 141_659
    few = label_ring_marker("positives", 5, n, trained=False)  # what the user is marking: bold
    assert few["symbol"] == "circle-open" and few["opacity"] == 1.0 and few["line"]["width"] == 2
    supercon = label_ring_marker("positives", 1904, n, trained=False)  # the SuperCon set: faint
    assert supercon["line"]["width"] == 1 and supercon["opacity"] <= 0.35 and supercon["size"] < few["size"]
    trained = label_ring_marker("negatives", 5, n, trained=True)  # a coloured map: faint too
    assert trained["opacity"] == 0.5 and trained["line"]["width"] == 1 and trained["color"] == "#1f77b4"
    with pytest.raises(ValueError, match="unknown role 'others'"):
        label_ring_marker("others", 1, n, trained=False)
