"""The concept, elements and compare-descriptors views in headless Chromium (fixtures and
helpers as in ``test_browser.py``; every wait is on an element or a condition)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_browser import poll, wait_until_drawn
from test_views import tiny_descriptor  # noqa: F401 — the descriptor exported beside the map

pytestmark = pytest.mark.browser


def concept_trace_length(page, index: int):
    return page.evaluate(
        "(i) => { const gd = document.querySelector('#concept-map .js-plotly-plot');"
        " return gd && gd._fullData && gd._fullData.length === 4 ? gd._fullData[i].x.length : null; }",  # base, foreground, positives, negatives
        index,
    )


def test_concept_from_pasted_ids(page, live_server, atlas):
    ids = list(atlas.materials["material_id"][:5])
    page.goto(f"{live_server}/concept")
    page.wait_for_function("() => { const gd = document.querySelector('#concept-map .js-plotly-plot');"
                           " return gd && gd._fullData && gd._fullData.length === 4; }")
    page.get_by_text("random unlabelled materials will serve as negatives").wait_for()
    page.fill("#concept-paste", " ".join(ids) + " mp-0")
    page.get_by_role("button", name="Add as positives").click()
    page.get_by_text("1 id is not in the map and was left out").wait_for()
    page.locator(".concept-labels").get_by_text("5 positives").wait_for()
    assert poll(lambda: concept_trace_length(page, 2) == 5, page=page), "the positives were not ringed"
    assert concept_trace_length(page, 1) == 0  # not coloured before training

    page.get_by_role("button", name="Train").click()
    rows = page.locator(".neighbor-panel .ag-center-cols-container .ag-row")
    rows.first.wait_for()
    assert poll(lambda: (concept_trace_length(page, 1) or 0) > 0, page=page), "the map was not coloured"
    page.locator("#concept-map .colorbar").get_by_text("concept score").wait_for()
    page.get_by_text("random unlabelled materials as negatives").wait_for()
    assert wait_until_drawn(page, "#concept-map")
    assert page.get_by_role("button", name="Train").is_enabled()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == "concept_candidates.csv"
    csv = Path(download.value.path()).read_text().splitlines()
    assert csv[0].startswith("rank,material_id,formula,score")
    assert len(csv) - 1 == min(200, len(atlas) - 5)
    assert not {line.split(",")[1] for line in csv[1:]} & set(ids)

    # the result stays on a revisit of the page; a change of the labels drops it
    page.goto(f"{live_server}/elements")
    page.locator("#element-table").wait_for()
    page.goto(f"{live_server}/concept")
    page.locator(".neighbor-panel .ag-center-cols-container .ag-row").first.wait_for()
    page.get_by_role("button", name="Clear labels").click()
    page.locator(".concept-labels").get_by_text("0 positives").wait_for()
    page.get_by_text("Train the concept to rank the materials.").wait_for()
    assert poll(lambda: concept_trace_length(page, 1) == 0, page=page)


def test_concept_without_positives_says_so(page, live_server, atlas):
    page.goto(f"{live_server}/concept")
    page.locator("#concept-map .js-plotly-plot").wait_for()
    page.get_by_role("button", name="Clear labels").click()
    page.get_by_role("button", name="Train").click()
    page.get_by_text("No positives: mark at least a few materials").wait_for()


def test_elements_table_opens_the_map_coloured_by_an_element(page, live_server, atlas):
    present = {s for text in atlas.materials["elements"] for s in text.split()}
    page.goto(f"{live_server}/elements")
    cells = page.locator("#element-table .element-cell")
    cells.first.wait_for()
    assert cells.count() == len(present)
    assert poll(lambda: page.evaluate(
        "() => [...document.querySelectorAll('.element-cell__map')].every(img => img.complete && img.naturalWidth > 0)"),
        page=page), "the small maps did not load"
    page.locator(".element-cell", has_text=re.compile(r"^O")).first.click()
    page.wait_for_url(re.compile(r"/\?color=element&element=O$"))
    page.locator("#map-legend").get_by_text(re.compile(r"contains O \(")).wait_for()


def test_material_page_compares_descriptors(page, live_server, atlas, tiny_descriptor):  # noqa: F811
    ids, _ = tiny_descriptor
    page.goto(f"{live_server}/material/{ids[3]}")
    page.get_by_role("button", name="Compare the neighbour lists").click()
    ours = page.locator(".compare-list--ours .ag-center-cols-container .ag-row")
    ewald = page.locator(".compare-list--ewald .ag-center-cols-container .ag-row")
    ours.first.wait_for()
    ewald.first.wait_for()
    assert ours.count() > 0 and ewald.count() > 0
    page.locator(".compare-list--chgnet").get_by_text("descriptor not built").wait_for()
    with page.expect_download() as download:
        page.locator(".compare-list--ewald").get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == f"{ids[3]}_neighbors_ewald.csv"
    # its distances are the descriptor's, not the embedding's
    assert Path(download.value.path()).read_text().startswith("rank,material_id,formula,distance (ewald descriptor units),")
