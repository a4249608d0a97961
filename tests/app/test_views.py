"""The concept, elements and compare-descriptors views on the fixture map, called as plain
functions (callbacks run in a stand-in callback context)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from callback_context import in_callback
from test_pages import ids_of, text_of, update_ops

from components.compare import DESCRIPTOR_LABELS, OURS, neighbor_lists
from components.concept import SCORE_FLOOR, decode_scores, labels_key
from components.map_colors import contains_element
from components.map_figure import BASE, FOREGROUND, HIGHLIGHT

DESCRIPTOR = "ewald"


@pytest.fixture(scope="module")
def concept(dash_app):
    return sys.modules["pages.concept"]


@pytest.fixture(scope="module")
def elements(dash_app):
    return sys.modules["pages.elements"]


@pytest.fixture(scope="module")
def tiny_descriptor(atlas):
    """A descriptor exported beside the fixture map in the format ``MapArtifacts`` reads:
    6-d vectors of the first 250 materials (the last 50 are not covered)."""
    from ml.mapping.format import DESCRIPTOR_IDS, DESCRIPTOR_MANIFEST, DESCRIPTOR_VALUES, DESCRIPTORS_DIR

    folder = atlas.folder.parent / DESCRIPTORS_DIR / DESCRIPTOR
    folder.mkdir(parents=True)
    ids = atlas.materials["material_id"].to_numpy()[:250].astype(str)
    values = np.random.default_rng(0).normal(size=(250, 6)).astype(np.float32)
    np.save(folder / DESCRIPTOR_VALUES, values)
    np.save(folder / DESCRIPTOR_IDS, ids)
    (folder / DESCRIPTOR_MANIFEST).write_text(json.dumps(
        {"label": "Ewald sum matrix (test)", "coverage": "first 250", "n_materials": 250, "dim": 6, "metric": "euclidean"}))
    yield ids, values
    shutil.rmtree(folder.parent)
    atlas._descriptors.clear()


# --------------------------------------------------------------------------- concept


def test_concept_layout_has_its_controls(concept, atlas):
    layout = concept.layout()
    assert {"concept-map", "concept-paste", "concept-train", "concept-cancel", "concept-labels", "concept-result",
            "concept-progress"} <= ids_of(layout)
    assert "random unlabelled materials will serve as negatives" in text_of(layout)


def test_pasted_ids_are_added_and_unknown_ones_listed(concept, atlas):
    ids = list(atlas.materials["material_id"][:3])
    labels, message, left = in_callback(
        concept.change_labels, None, None, 1, 0, 0, 0, "positives", f"{ids[0]}, {ids[1]} mp-0\n{ids[2]} nope",
        "superconductors", None, trigger="concept-add-positives.n_clicks")
    assert labels == {"positives": ids, "negatives": []}
    assert "2 ids are not in the map" in text_of(message) and "mp-0, nope" in text_of(message)
    assert left == "mp-0 nope"  # the unknown ids stay in the box to be corrected


def test_a_click_toggles_and_a_selection_marks_negatives(concept, atlas):
    labels = {"positives": ["x"], "negatives": []}
    click = {"points": [{"curveNumber": BASE, "pointIndex": 4}]}
    mid = atlas.materials["material_id"].iat[4]
    once, _, _ = in_callback(concept.change_labels, click, None, 0, 0, 0, 0, "positives", "", "superconductors",
                             labels, trigger="concept-map.clickData")
    assert once["positives"] == ["x", mid]
    twice, _, _ = in_callback(concept.change_labels, click, None, 0, 0, 0, 0, "positives", "", "superconductors",
                              once, trigger="concept-map.clickData")
    assert twice["positives"] == ["x"]
    selection = {"points": [{"curveNumber": BASE, "pointIndex": 1}, {"curveNumber": FOREGROUND, "customdata": 2}]}
    marked, _, _ = in_callback(concept.change_labels, None, selection, 0, 0, 0, 0, "negatives", "", "superconductors",
                               twice, trigger="concept-map.selectedData")
    assert marked["negatives"] == list(atlas.materials["material_id"].iloc[[1, 2]])


def test_the_superconductor_set_loads_as_positives(concept, atlas):
    labels, message, _ = in_callback(concept.change_labels, None, None, 0, 0, 1, 0, "positives", "", "superconductors",
                                     None, trigger="concept-load-set.n_clicks")
    expected = list(atlas.materials["material_id"][atlas.materials["supercon_label"] == "superconductor"])
    assert labels["positives"] == expected
    assert (f"Added {len(expected):,} positives" in text_of(message)) if expected else "no materials" in text_of(message)


def test_training_scores_every_material_and_fills_the_table(concept, atlas):
    ids = list(atlas.materials["material_id"][:6])
    labels = {"positives": ids, "negatives": []}
    progress = []
    result, message = concept.train_result(atlas, labels, lambda d, t, w: progress.append(d / t))
    assert message is None and result["key"] == labels_key(labels)
    assert result["n_positives"] == 6 and result["random_negatives"]
    assert progress[-1] == 1.0
    scores = decode_scores(result["scores"], len(atlas))
    figure, _, rows, summary, drawn = in_callback(concept.draw, labels, result, False)
    assert drawn is True
    assert len(figure.data[FOREGROUND].x) == (scores >= SCORE_FLOOR).sum() > 0  # coloured above the floor
    assert list(figure.data[HIGHLIGHT].customdata) == list(range(6))  # positives ringed
    assert figure.data[HIGHLIGHT].marker.opacity == 0.5 and figure.data[HIGHLIGHT].marker.line.width == 1  # faint
    assert rows and not {r["material_id"] for r in rows} & set(ids)
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    assert rows[0]["score"] == pytest.approx(float(np.delete(scores, range(6)).max()))
    assert "random unlabelled materials as negatives" in text_of(summary)


def test_a_result_of_other_labels_is_dropped(concept, atlas):
    labels = {"positives": list(atlas.materials["material_id"][:4]), "negatives": []}
    result, _ = concept.train_result(atlas, labels)
    kept, _ = concept.labels_changed(labels, result)
    assert kept is concept.no_update
    changed = {"positives": labels["positives"][:3], "negatives": []}
    dropped, view = concept.labels_changed(changed, result)
    assert dropped is None and "3 positives" in text_of(view)
    figure, update = in_callback(concept.draw, changed, None, True, trigger="concept-result.data")[:2]
    assert figure is concept.no_update and update["graph"] == "concept-map"  # an update, not the figure
    foreground = update_ops(update)[("data", FOREGROUND)]
    assert np.size(foreground["customdata"]) == 0 and "colorscale" not in foreground["marker"]  # grey map again


def test_many_training_examples_do_not_hide_the_map(concept, atlas):
    """The ready SuperCon set rings every superconductor: thin, small and faint rings; a few
    marked materials get bold rings until the map is coloured by a result."""
    superconductors = list(atlas.materials["material_id"][atlas.materials["supercon_label"] == "superconductor"])
    assert len(superconductors) > 30
    figure = in_callback(concept.draw, {"positives": superconductors, "negatives": []}, None, False)[0]
    rings = figure.data[HIGHLIGHT].marker
    assert len(figure.data[HIGHLIGHT].x) == len(superconductors)
    assert rings.opacity == 0.5 and rings.line.width == 1
    few = {"positives": superconductors[:3], "negatives": superconductors[3:6]}
    patch = update_ops(in_callback(concept.draw, few, None, True, trigger="concept-labels.data")[1])
    assert patch[("data", HIGHLIGHT)]["marker"]["opacity"] == 1.0
    assert patch[("data", concept.NEGATIVES)]["marker"]["line"]["width"] == 2
    result, _ = concept.train_result(atlas, few)
    patch = update_ops(in_callback(concept.draw, few, result, True, trigger="concept-result.data")[1])
    assert patch[("data", HIGHLIGHT, "marker")]["opacity"] == 0.5
    assert patch[("data", concept.NEGATIVES, "marker")]["opacity"] == 0.5


def test_training_without_enough_positives_says_so(concept, atlas):
    for labels, words in [({"positives": [], "negatives": []}, "No positives"),
                          ({"positives": list(atlas.materials["material_id"][:2])}, "Too few positives: 2")]:
        result, message = concept.train_result(atlas, labels)
        assert result is concept.no_update and words in text_of(message)


# --------------------------------------------------------------------------- elements


def test_elements_page_has_one_cell_per_element(elements, atlas):
    layout = elements.layout()
    cells = [c for c in ids_of(layout) if "element-cell" in c]
    present = {s for text in atlas.materials["elements"] for s in text.split()}
    assert {json.loads(c)["symbol"] for c in cells} == present
    text = text_of(layout)
    n_o = int(contains_element(atlas.materials["elements"], "O").sum())
    assert f'"{n_o:,}"' in text and "/?color=element&element=O" in text and "data:image/png;base64," in text


# --------------------------------------------------------------------------- compare


def test_compare_lists_ours_and_marks_missing_descriptors(atlas):
    mid = atlas.materials["material_id"].iat[0]
    lists = neighbor_lists(atlas, mid, 5)
    assert lists[0]["name"] == OURS and lists[0]["ok"]
    assert [r["material_id"] for r in lists[0]["rows"]] == list(atlas.neighbors(mid, 5)["material_id"])
    missing = {item["name"]: item["message"] for item in lists if not item["ok"]}
    assert set(DESCRIPTOR_LABELS) <= set(missing) | {i["name"] for i in lists if i["ok"]}


def test_compare_lists_an_exported_descriptor(atlas, tiny_descriptor):
    ids, values = tiny_descriptor
    lists = {item["name"]: item for item in neighbor_lists(atlas, str(ids[10]), 5)}
    ewald = lists[DESCRIPTOR]
    assert ewald["ok"] and ewald["label"] == "Ewald sum matrix (test)"
    distance = np.linalg.norm(values - values[10], axis=1)
    distance[10] = np.inf
    assert [r["material_id"] for r in ewald["rows"]] == list(ids[np.argsort(distance)[:5]])
    assert ewald["columns"] == lists[OURS]["columns"]
    # each list says which materials it searched: a baseline may cover a subset only
    assert ewald["scope"] == "among 250 materials (first 250)"
    assert lists[OURS]["scope"] == f"among all {len(atlas.materials):,} materials of the map"
    assert not lists["chgnet"]["ok"] and "not built" in lists["chgnet"]["message"]
    assert lists["chgnet"]["command"] == "python -m ml descriptors --dataset mp2024-fixture --name chgnet"
    uncovered = {item["name"]: item for item in neighbor_lists(atlas, atlas.materials["material_id"].iat[299], 5)}
    assert not uncovered[DESCRIPTOR]["ok"] and "not covered" in uncovered[DESCRIPTOR]["message"]


def test_material_page_shows_the_compare_view(pages, atlas, tiny_descriptor):
    ids, _ = tiny_descriptor
    view = pages["material"].compare_descriptors(1, 7, str(ids[3]))
    text = text_of(view)
    assert "Ewald sum matrix (test)" in text and "CHGNet feature: descriptor not built" in text
    # the exact command that builds a missing descriptor (ml/cli/main.py's descriptors verb)
    for name in ("chgnet", "crystalnn", "sine_coulomb"):
        assert f"python -m ml descriptors --dataset mp2024-fixture --name {name}" in text
    assert "--name ewald" not in text  # built: no command
    assert "Neighbours among 250 materials (first 250)" in text
    assert f"{ids[3]}_neighbors_ewald.csv" in text and f"{ids[3]}_neighbors_ours.csv" in text
    # each CSV export says in which space its distances are
    metas = {m["filename"]: m for m in _stores(view)}
    assert metas[f"{ids[3]}_neighbors_ewald.csv"]["units"] == {"distance": "ewald descriptor units"}
    assert metas[f"{ids[3]}_neighbors_ours.csv"]["units"] == {}  # the default: embedding units


def _stores(component) -> list:
    """The ``data`` of every ``dcc.Store`` holding a dict in a layout tree."""
    found = []
    if type(component).__name__ == "Store" and isinstance(getattr(component, "data", None), dict):
        found.append(component.data)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, (list, tuple)) else [children]:
        if child is not None and not isinstance(child, (str, int, float)):
            found += _stores(child)
    return found
