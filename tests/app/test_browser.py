"""The app in headless Chromium: map, material page, locating uploads.

Every test waits for elements or conditions (Playwright's waits, or :func:`poll` which
re-checks a condition until a deadline), never for a fixed time. The ``page`` fixture fails a
test whose page fetched anything from outside this machine or threw a JavaScript error.

The map is a real one built with the committed model (``fixture_map.py``), so uploads run
the real encoder and t-SNE ``transform``.
"""

from __future__ import annotations

import io
import re
import time
from pathlib import Path

import numpy as np
import pytest

from ml.mapping.tables import table_csv


pytestmark = pytest.mark.browser

DISORDERED = (Path(__file__).parent / "data" / "disordered.cif").read_text()
PLACEHOLDER = DISORDERED.split("Fe1 Fe")[0] + "X1 Xx 0 0 0 1\nO1 O 0.5 0.5 0.5 1\n"  # atom type Xx: no element


def poll(check, timeout: float = 30.0, interval_ms: int = 250, page=None):
    """Re-evaluate ``check()`` until it is truthy or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        page.wait_for_timeout(interval_ms)  # yields to the browser between checks


def colourful_fraction(png: bytes) -> float:
    """Share of pixels that are clearly coloured (not white / grey / black)."""
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)
    return float((pixels.max(axis=2) - pixels.min(axis=2) > 40).mean())


def wait_until_drawn(page, selector: str, minimum: float = 0.002) -> float:
    """Wait until the element's screenshot has coloured pixels (a WebGL canvas was drawn); an
    element replaced while it is shot (a placeholder box filled by its callback) is shot again."""
    from playwright.sync_api import Error as PlaywrightError

    locator = page.locator(selector).first

    def coloured() -> float:
        try:
            return (f := colourful_fraction(locator.screenshot())) > minimum and f
        except PlaywrightError as error:
            if "not attached" not in str(error):
                raise
            return 0.0

    return poll(coloured, page=page)


def open_map(page, live_server, query: str = ""):
    """Open the map page and wait until its scatter drew the points (``assets/map_scatter.js``)."""
    page.goto(f"{live_server}/{query}")
    page.wait_for_function("() => window.matmapScatter && matmapScatter.state() && matmapScatter.state().n > 0"
                           " && (window.matmapMapUpdates || 0) >= 1")


def scatter_state(page) -> dict:
    """The drawn scatter: ``n`` points, ``selected`` rows (the rings), ``camera`` (its view matrix)."""
    return page.evaluate("() => { const s = matmapScatter.state(); return {n: s.n, selected: s.selected, camera: s.camera}; }")


def drawn_positions(page, rows) -> np.ndarray:
    """``(len(rows), 2)`` positions of ``rows`` as the scatter holds them (its coordinates)."""
    return np.array(page.evaluate("(rows) => rows.map(r => matmapScatter.plot().get('points')[r].slice(0, 2))", list(rows)))


def isolated_row(atlas) -> int:
    """A material far from the others and away from the map's edges (legend, colour bar)."""
    xy = atlas.coordinates.astype(np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    inner = np.all((xy > lo + 0.2 * (hi - lo)) & (xy < hi - 0.2 * (hi - lo)), axis=1)
    distance = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(distance, np.inf)
    nearest = np.where(inner, distance.min(axis=1), -1)
    return int(np.argmax(nearest))


def point_position(page, row: int) -> dict:
    """Screen position (CSS px) of a material's point on the map page's scatter."""
    x, y = page.evaluate("(row) => matmapScatter.screenPosition(row)", row)
    return {"x": x, "y": y}


def upload(page, files: list[tuple[str, bytes]]):
    page.set_input_files(
        "#locate-upload input[type=file]",
        files=[{"name": name, "mimeType": "application/octet-stream", "buffer": data} for name, data in files],
    )


# --------------------------------------------------------------------------- map


def test_map_draws_every_material_in_webgl(page, live_server, atlas):
    open_map(page, live_server)
    assert scatter_state(page)["n"] == len(atlas)
    assert wait_until_drawn(page, "#map-canvas"), "the WebGL scatter stayed blank"
    page.get_by_text(f"{len(atlas):,} crystals").wait_for()
    page.locator("#map-legend").get_by_text("number of elements").wait_for()  # the key names the colours
    # AG Grid is started behind the drawn map, for the neighbour table of a click-through
    page.wait_for_function("() => document.querySelector('#map-grid-warm-up .ag-root')")
    assert not page.locator("#map-grid-warm-up").is_visible()
    with page.expect_download() as download:  # the view as an image, points in colour
        page.get_by_role("button", name="PNG").click()
    assert download.value.suggested_filename == "matmap.png"
    png = Path(download.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG") and colourful_fraction(png) > 0.002


def test_url_sets_and_keeps_the_colour(page, live_server, atlas):
    open_map(page, live_server, "?color=band_gap")
    page.locator("#map-legend").get_by_text("band gap (eV)").wait_for()
    page.locator("#map-color").click()
    page.get_by_role("option", name="Density (g/cm³)").click()
    page.locator("#map-legend").get_by_text("density (g/cm³)").wait_for()
    page.wait_for_url(re.compile(r"\?color=density$"))


def test_switching_to_the_xrd_map_redraws_it_and_keeps_the_colour(page, live_server, atlas):
    from components.map_points import scatter_points

    rows = list(range(5))
    open_map(page, live_server, "?view=xrd&color=band_gap&highlight=mp-172")
    np.testing.assert_allclose(drawn_positions(page, rows), scatter_points(atlas.coordinates_of("xrd"))[rows], atol=1e-6)
    page.locator("#map-legend").get_by_text("band gap (eV)").wait_for()
    match = atlas.row_of("mp-172")
    assert poll(lambda: scatter_state(page)["selected"] == [match], page=page)
    updates = page.evaluate("() => window.matmapMapUpdates")
    page.evaluate("() => { window.renders = 0; matmapScatter.plot().subscribe('draw', () => { window.renders++; }); }")
    page.get_by_label("Crystal-graph embedding").check()
    crystal = scatter_points(atlas.coordinates)[rows]
    assert poll(lambda: np.allclose(drawn_positions(page, rows), crystal, atol=1e-6), page=page)
    page.wait_for_function("(n) => window.matmapMapUpdates > n", arg=updates)
    # the other map in one render: its points, the match's ring and the zoom onto it together
    assert page.evaluate("() => window.renders") == 1
    assert scatter_state(page)["selected"] == [match]
    x, y = point_position(page, match).values()
    box = page.locator("#map-canvas").bounding_box()
    assert box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]
    page.wait_for_url(re.compile(r"/\?color=band_gap&highlight=mp-172$"))
    page.locator("#map-legend").get_by_text("band gap (eV)").wait_for()
    assert wait_until_drawn(page, "#map-canvas")


def test_search_highlights_and_lists_matches(page, live_server, atlas):
    open_map(page, live_server, "?highlight=mp-172")
    page.locator("#map-search-result").get_by_role("link", name="mp-172").wait_for()
    assert poll(lambda: scatter_state(page)["selected"] == [atlas.row_of("mp-172")], page=page)
    page.fill("#map-search", "Xx9")
    page.press("#map-search", "Enter")
    page.locator("#map-search-result").get_by_text("Nothing matches 'Xx9'").wait_for()
    page.wait_for_url(re.compile(r"highlight=Xx9"))
    assert poll(lambda: scatter_state(page)["selected"] == [], page=page)  # the rings of the last search go


def test_recolour_and_search_change_the_drawn_map_in_place_and_keep_each_other(page, live_server, atlas):
    """Issue 12: a recolour and a search update the drawn scatter in the browser; the rings and
    the zoom survive a recolour, the colours a search, and the page draws no plotly figure."""
    open_map(page, live_server, "?color=band_gap")
    page.locator("#map-legend").get_by_text("band gap (eV)").wait_for()
    home = scatter_state(page)["camera"]
    page.fill("#map-search", "mp-172")
    page.press("#map-search", "Enter")
    page.locator("#map-search-result").get_by_role("link", name="mp-172").wait_for()
    row = atlas.row_of("mp-172")
    assert poll(lambda: scatter_state(page)["selected"] == [row], page=page)
    zoomed = scatter_state(page)["camera"]
    assert zoomed[0] > 2 * home[0]  # zoomed in (the view matrix's scale) …
    x, y = point_position(page, row).values()
    box = page.locator("#map-canvas").bounding_box()
    assert box["x"] < x < box["x"] + box["width"] and box["y"] < y < box["y"] + box["height"]  # … onto the match
    page.locator("#map-legend").get_by_text("band gap (eV)").wait_for()  # the colours stay
    updates = page.evaluate("() => window.matmapMapUpdates")
    page.locator("#map-color").click()
    page.get_by_role("option", name="Density (g/cm³)").click()
    page.locator("#map-legend").get_by_text("density (g/cm³)").wait_for()
    page.wait_for_function("(n) => window.matmapMapUpdates > n", arg=updates)
    after = scatter_state(page)
    assert after["selected"] == [row] and after["camera"] == zoomed and after["n"] == len(atlas)  # rings, zoom stay
    assert page.locator("#map-canvas .js-plotly-plot").count() == 0
    page.get_by_role("button", name="Whole map").click()
    assert poll(lambda: scatter_state(page)["camera"] == home, page=page)
    assert wait_until_drawn(page, "#map-canvas")


def test_click_a_point_opens_its_page_with_neighbours_and_structure(page, live_server, atlas):
    row = isolated_row(atlas)
    material_id = atlas.materials["material_id"].iat[row]
    open_map(page, live_server)
    position = point_position(page, row)
    page.mouse.move(position["x"], position["y"])
    page.locator("#map-hover").get_by_text(material_id).wait_for()  # hover card follows the pointer
    page.locator("#map-hover").get_by_text("Formation energy (eV/atom)").wait_for()  # its key properties
    # the hover preview: the unit cell drawn in 3D beside the map, with its element colours
    page.locator("#map-preview-box").wait_for(state="visible")
    page.locator("#map-preview .gl-container canvas").first.wait_for()
    elements = atlas.materials["elements"].iat[row].split()
    for symbol in elements:
        page.locator("#map-preview-legend").get_by_text(symbol, exact=True).wait_for()
    page.mouse.click(position["x"], position["y"])  # leaving the page unmounts the preview: no error
    page.wait_for_url(f"**/material/{material_id}")
    page.wait_for_function("() => matmapScatter.plot() === null")  # the map's WebGL scatter is freed
    page.locator("#material-title").get_by_text(material_id).wait_for()
    grid_rows = page.locator(".neighbor-panel .ag-center-cols-container .ag-row")
    grid_rows.first.wait_for()
    assert grid_rows.count() >= 10
    assert wait_until_drawn(page, ".structure-view__canvas", minimum=0.005), "the 3D structure stayed blank"


#: Records, in the page, what was on screen when the neighbour grid got its first row, and the
#: outputs of every Dash callback request with the number of grid rows when it was sent.
TABLE_FIRST_PROBE = """
window.__probe = {atRows: null, requests: []};
const rowSelector = '.neighbor-panel .ag-center-cols-container .ag-row';
new MutationObserver(() => {
  if (window.__probe.atRows === null && document.querySelector(rowSelector)) {
    window.__probe.atRows = {plots: document.querySelectorAll('.js-plotly-plot').length,
                             canvases: document.querySelectorAll('.material-page canvas').length};
  }
}).observe(document, {subtree: true, childList: true});
const fetchOriginal = window.fetch;
window.fetch = function (url, options) {
  if (String(url).includes('_dash-update-component') && options && options.body) {
    window.__probe.requests.push({output: JSON.parse(options.body).output,
                                  rows: document.querySelectorAll(rowSelector).length});
  }
  return fetchOriginal.apply(this, arguments);
};
"""


def test_material_page_paints_its_neighbour_table_before_the_plots_and_the_scene(page, live_server, atlas):
    """Issue 12: the table is on screen with no plot or 3D canvas drawn yet; the XRD plot, the
    small map and the scene are asked for only once the grid has rows, and then drawn."""
    page.add_init_script(TABLE_FIRST_PROBE)
    page.goto(f"{live_server}/material/mp-172")
    page.locator(".neighbor-panel .ag-center-cols-container .ag-row").first.wait_for()
    page.wait_for_function("() => window.__probe.atRows !== null")
    assert page.evaluate("() => window.__probe.atRows") == {"plots": 0, "canvases": 0}
    page.wait_for_function(
        "() => ['#material-xrd', '#material-neighbor-map'].every(s => { const gd = document.querySelector(s + ' .js-plotly-plot');"
        " return gd && gd._fullData && gd._fullData.some(t => t.x && t.x.length); })")
    page.locator("#material-structure .structure-view__legend .chip").first.wait_for()
    assert wait_until_drawn(page, "#material-structure .structure-view__canvas", minimum=0.005), "the 3D structure stayed blank"
    requests = page.evaluate("() => window.__probe.requests")
    heavy = [r for r in requests if any(f"{frame}.children" in r["output"] for frame in
                                        ("material-structure", "material-xrd-frame", "material-neighbor-map-frame"))]
    assert len(heavy) == 3 and all(r["rows"] > 0 for r in heavy), requests
    # a new neighbour count redraws the small map, its neighbours those of the grid
    page.fill("#material-k", "5")
    page.press("#material-k", "Enter")
    page.wait_for_function(
        "() => { const gd = document.querySelector('#material-neighbor-map .js-plotly-plot');"
        " return gd && gd._fullData.some(t => t.customdata && t.customdata.length === 5); }")
    assert poll(lambda: page.locator(".neighbor-panel .ag-center-cols-container .ag-row").count() == 5, page=page)


def test_material_page_downloads_the_neighbour_csv(page, live_server, atlas):
    page.goto(f"{live_server}/material/mp-172")
    page.locator(".neighbor-panel .ag-row").first.wait_for()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    assert download.value.suggested_filename == "mp-172_neighbors.csv"
    # what `python -m ml neighbors` writes: units in the headers, rounded values
    assert Path(download.value.path()).read_text() == table_csv(atlas.neighbors("mp-172", 25))


def test_unknown_material(page, live_server, atlas):
    page.goto(f"{live_server}/material/mp-0")
    page.get_by_text("mp-0 is not in the map").wait_for()


# --------------------------------------------------------------------------- locate


def test_locate_places_an_uploaded_cif(page, live_server, atlas):
    page.goto(f"{live_server}/locate")
    page.get_by_text("at most 5 MB per file").wait_for()
    page.wait_for_function("() => { const gd = document.querySelector('#locate-map .js-plotly-plot'); return gd && gd._fullData; }")
    upload(page, [("nd5ge4.cif", atlas.cif("mp-172").encode())])
    card = page.locator(".located-card").filter(has_text="nd5ge4.cif")
    card.locator(".ag-center-cols-container .ag-row").first.wait_for()
    assert card.locator(".ag-center-cols-container .ag-row").count() == 10
    # its star (a layout shape labelled with the file) and its 10 neighbours' rings are drawn
    page.wait_for_function(
        "() => { const shapes = document.querySelector('#locate-map .js-plotly-plot')._fullLayout.shapes;"
        " return shapes.filter(s => s.type === 'path' && s.label.text.startsWith('nd5ge4.cif')).length === 1"
        " && shapes.filter(s => s.type === 'circle').length === 10; }"
    )
    assert page.locator("#locate-map .shapelayer path").count() >= 11  # drawn in the SVG, not only in the layout
    page.get_by_text("Placed 1 of 1 file.").wait_for()


def test_locate_says_why_a_file_is_refused(page, live_server, atlas):
    page.goto(f"{live_server}/locate")
    page.get_by_text("at most 5 MB per file").wait_for()
    upload(page, [
        ("notes.cif", b"these are my notes, not a crystal"),
        ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
        ("placeholder.cif", PLACEHOLDER.encode()),
        ("disordered.cif", DISORDERED.encode()),
    ])
    page.get_by_text("Placed 1 of 4 files.").wait_for()
    errors = page.locator(".located-card.card--error")
    errors.nth(2).wait_for()
    assert errors.count() == 3
    text = " ".join(errors.all_inner_texts())
    assert "not a CIF" in text and "binary file" in text and "not a chemical element" in text
    # the disordered structure is placed, and its card says by which approximation
    placed = page.locator(".located-card").filter(has_text="disordered.cif")
    placed.locator(".notice--warning").filter(has_text="majority occupant of each site").wait_for()
    page.goto(f"{live_server}/")  # the server still serves
    page.locator("#map-canvas").wait_for()


def test_locate_with_the_trained_model(page, live_server, atlas):
    material_id = atlas.materials.sort_values("nsites")["material_id"].iat[0]
    page.goto(f"{live_server}/locate")
    upload(page, [("own.cif", atlas.cif(material_id).encode())])
    card = page.locator(".located-card").filter(has_text="own.cif")
    card.locator(".ag-center-cols-container .ag-row").first.wait_for(timeout=120_000)
    # the map's own structure is its own nearest neighbour
    first = " ".join(card.locator(".ag-row[row-index='0']").all_inner_texts())  # pinned id + other columns
    assert material_id in first
    # at (almost) no distance: the build embeds the stored structure in batches on every thread, the
    # upload is parsed back from its CIF and embedded alone on one thread (0.000 or 0.001 seen, where
    # the nearest other material of a map lies at 1-8 embedding units)
    distance = float(re.search(r"\b(\d+\.\d{3})\b", first.split(material_id, 1)[1]).group(1))
    assert distance <= 0.005
