"""Page layouts and callbacks called as plain functions, on the fixture map."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from callback_context import in_callback
from dash import no_update
from dash.exceptions import PreventUpdate

from components.map_figure import BASE, FOREGROUND, HIGHLIGHT

from components.map_view import home_ranges
from components.neighbors import NeighborPanel


def text_of(component) -> str:
    """Everything a layout would render, as one string (for "the page says …" checks)."""
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component,
                      default=lambda c: c.to_plotly_json() if hasattr(c, "to_plotly_json") else str(c),
                      ensure_ascii=False)


def ids_of(component) -> set:
    found = set()

    def walk(node):
        if hasattr(node, "to_plotly_json"):
            if getattr(node, "id", None) is not None:
                found.add(json.dumps(node.id, sort_keys=True) if isinstance(node.id, dict) else node.id)
            walk(getattr(node, "children", None))
        elif isinstance(node, (list, tuple)):
            for child in node:
                walk(child)

    walk(component)
    return found


def update_ops(update: dict) -> dict:
    """A map update (``components/map_figure.py`` ``map_update``) as ``{("data", i, attribute) | ("data", i) |
    ("layout", axis, attribute): value}``, the way ``assets/matmap.js`` applies it."""
    assert set(update) == {"graph", "traces", "replace", "layout"}
    ops = {("data", int(i), k): v for i, attrs in update["traces"].items() for k, v in attrs.items()}
    ops |= {("data", int(i)): trace for i, trace in update["replace"].items()}
    ops |= {("layout", key, k): v for key, attrs in update["layout"].items() if isinstance(attrs, dict)
            for k, v in attrs.items()}
    return ops | {("layout", key): v for key, v in update["layout"].items() if not isinstance(v, dict)}


# --------------------------------------------------------------------------- app shell


def test_navbar_lists_the_pages_in_order(dash_app):
    import app

    links = app.navbar().children[1].children
    assert [(link.children, link.href) for link in links] == [
        ("Map", "/"), ("Locate", "/locate"), ("Concept", "/concept"), ("Elements", "/elements"),
        ("Generate", "/generate")]
    assert dash_app.config.suppress_callback_exceptions is False


# --------------------------------------------------------------------------- map page


def test_map_layout_reads_the_view_from_the_url(pages, atlas):
    layout = pages["map"].layout(color="element", element="Cd", highlight="HoCd")
    ids = ids_of(layout)
    assert {"map-canvas", "map-legend", "map-color", "map-element", "map-search", "map-highlight"} <= ids
    text = text_of(layout)
    assert "300 crystals" in text and "1 material ringed on the map" in text and "mp-170" in text


def test_map_layout_explains_a_bad_url(pages, atlas):
    text = text_of(pages["map"].layout(color="bandgap", element="Xx"))
    assert "unknown colour mode 'bandgap'" in text and "No material of this map contains 'Xx'" in text


def decoded(payload: dict) -> np.ndarray:
    """A base64 array of a scatter update (``components.map_points.encode``) as numpy."""
    return np.frombuffer(base64.b64decode(payload["bdata"]), dtype=payload["dtype"])


def test_whole_map_and_updates(pages, atlas):
    page = pages["map"]
    update = page.whole_update(atlas, "band_gap", None, "HoCd")
    json.dumps(update)  # a Store's data: plain JSON
    xy = decoded(update["points"]["xy"]).reshape(-1, 2)
    assert xy.shape == (len(atlas), 2) and np.abs(xy).max() <= 1.0  # every point placed, the home view is [-1, 1]²
    # one map unit is as long across as up: the scatter keeps the map's shape
    span = np.ptp(atlas.coordinates, axis=0)
    np.testing.assert_allclose(np.ptp(xy, axis=0) / np.ptp(xy, axis=0).max(), span / span.max(), rtol=1e-4)
    index = decoded(update["colors"]["index"])
    palette = update["colors"]["palette"]
    assert index.shape == (len(atlas),) and index.max() < len(palette) == len(update["colors"]["sizes"])
    gap = atlas.materials["band_gap"].to_numpy(dtype=float)
    wide, narrow = int(np.nanargmax(gap)), int(np.nanargmin(gap))
    assert index[wide] > index[narrow]  # along the colour scale, low to high
    rows = atlas.search("HoCd")
    assert update["select"] == rows and set(update["zoom"]) == {"x", "y", "width", "height"}
    assert page.whole_update(atlas, "band_gap", None, "")["zoom"] == "home"  # nothing searched: the whole map

    update = page.recolor_update(atlas, "element", "Cd")
    assert set(update) == {"host", "colors"}  # the positions stay in the browser
    index, colors = decoded(update["colors"]["index"]), update["colors"]
    has_cd = atlas.materials["elements"].str.split().apply(lambda e: "Cd" in e).to_numpy()
    assert has_cd.any() and np.isin(index[has_cd], colors["top"]).all() and not np.isin(index[~has_cd], colors["top"]).any()
    assert colors["sizes"][index[has_cd][0]] > colors["sizes"][index[~has_cd][0]]  # drawn on top, a little larger

    update = page.search_update(atlas, "mp-172")
    assert set(update) == {"host", "select", "zoom"} and update["select"] == [atlas.row_of("mp-172")]
    nothing = page.search_update(atlas, "no such thing")
    assert nothing["select"] == [] and "zoom" not in nothing  # rings cleared, view kept


def test_the_map_key_names_what_the_colours_mean(pages, atlas):
    page = pages["map"]
    _, key = in_callback(page.draw_map, "band_gap", None, "crystal", None, "", trigger=None)[:2]
    assert "band gap (eV)" in text_of(key) and "linear-gradient" in text_of(key)
    _, key = in_callback(page.draw_map, "element", "Cd", "crystal", None, "", trigger="map-color.value")[:2]
    n_cd = int(atlas.materials["elements"].str.split().apply(lambda e: "Cd" in e).sum())
    assert f"contains Cd ({n_cd:,})" in text_of(key) and "no Cd" in text_of(key)
    _, key = in_callback(page.draw_map, "crystal_system", None, "crystal", None, "", trigger="map-color.value")[:2]
    assert all(name in text_of(key) for name in ("crystal system", "cubic", "triclinic"))


def test_whole_map_button_and_colour_changes_send_no_positions(pages, atlas):
    page = pages["map"]
    first = in_callback(page.draw_map, "nelements", None, "crystal", None, "", trigger=None)[0]
    assert "points" in first
    recolour = in_callback(page.draw_map, "density", None, "crystal", None, "", trigger="map-color.value")[0]
    # one byte per point instead of the eight of the positions
    assert "points" not in recolour and 7 * len(recolour["colors"]["index"]["bdata"]) < len(first["points"]["xy"]["bdata"])
    home = in_callback(page.draw_map, "density", None, "crystal", 1, "", trigger="map-home.n_clicks")
    assert home[0] == {"host": "map-canvas", "zoom": "home"} and home[1] is no_update


def test_map_page_offers_the_xrd_map(pages, atlas):
    page = pages["map"]
    assert atlas.views == ["crystal", "xrd"]
    layout = page.layout(view="xrd", color="band_gap")
    radio = [c for c in _walk(layout) if getattr(c, "id", None) == "map-view"][0]
    assert radio.value == "xrd" and [o["value"] for o in radio.options] == ["crystal", "xrd"]
    assert "has no" not in text_of(layout)
    assert "has no 'tsne3d' map" in text_of(page.layout(view="tsne3d"))

    xrd_xy = atlas.coordinates_of("xrd")
    assert not np.allclose(xrd_xy, atlas.coordinates)
    update = in_callback(page.draw_map, "band_gap", None, "xrd", None, "mp-172", trigger="map-view.value")[0]
    drawn = decoded(update["points"]["xy"]).reshape(-1, 2)
    # the XRD map's positions, in the scatter's square frame of that map
    np.testing.assert_allclose(np.ptp(drawn, axis=0) / np.ptp(drawn, axis=0).max(),
                               np.ptp(xrd_xy, axis=0) / np.ptp(xrd_xy, axis=0).max(), rtol=1e-4)
    assert np.corrcoef(drawn[:, 0], xrd_xy[:, 0])[0, 1] > 0.999
    # a search on the XRD map zooms onto the material's XRD-map position
    zoom, row = update["zoom"], atlas.row_of("mp-172")
    assert zoom["x"] < drawn[row, 0] < zoom["x"] + zoom["width"] and zoom["y"] < drawn[row, 1] < zoom["y"] + zoom["height"]
    assert update["select"] == [row]
    assert "300 materials placed" in page.view_caption(atlas, "xrd")


def _walk(node):
    if hasattr(node, "to_plotly_json"):
        yield node
        yield from _walk(getattr(node, "children", None))
    elif isinstance(node, (list, tuple)):
        for child in node:
            yield from _walk(child)


def test_search_summary(pages, atlas):
    page = pages["map"]
    assert page.search_summary(atlas, "") is None
    assert "Nothing matches 'Xx9'" in text_of(page.search_summary(atlas, "Xx9"))
    assert "1 material ringed" in text_of(page.search_summary(atlas, "mp-172"))


def test_search_lists_every_match_and_says_which_the_zoom_shows(pages, atlas, monkeypatch):
    page = pages["map"]
    # a formula with more matches than fit the box: every one is listed (the box scrolls)
    many = list(range(0, 120, 3))  # 40 rows
    monkeypatch.setattr(atlas, "search", lambda query, limit=50: many[:limit])
    summary = page.search_summary(atlas, "SiO2")
    assert "40 materials ringed on the map:" in text_of(summary)
    assert all(str(atlas.materials["material_id"].iat[row]) in text_of(summary) for row in many)
    # matches far apart: the note says how many the zoom shows, and marks them
    xy = atlas.coordinates
    far = [int(np.argmin(xy[:, 0])), int(np.argmax(xy[:, 0]))]
    monkeypatch.setattr(atlas, "search", lambda query, limit=50: far)
    text = text_of(page.search_summary(atlas, "X"))
    assert "They lie far apart: the map shows the 1 of them" in text and text.count('"◎ "') == 1
    zoom = page.search_update(atlas, "X")["zoom"]
    drawn = decoded(page.whole_update(atlas, "nelements", None, "")["points"]["xy"]).reshape(-1, 2)
    assert zoom["x"] < drawn[far[0], 0] < zoom["x"] + zoom["width"] < drawn[far[1], 0]  # zoomed onto the first, not both


def test_click_opens_the_material_page(pages, atlas):
    row = atlas.row_of("mp-172")
    assert pages["map"].open_material({"row": row, "at": 1}) == "/material/mp-172"
    for junk in ({"row": len(atlas)}, {"row": -1}, {"row": True}, "mp-172", None):
        assert pages["map"].open_material(junk) is no_update


def test_hover_card_shows_the_coloured_value_key_properties_and_the_page_link(pages, atlas):
    material = atlas.material("mp-172")
    card = pages["map"].hover_details(material, "density", None)
    text = text_of(card)
    assert "mp-172" in text and "Density (g/cm³)" in text and "6.895" in text
    assert "Formation energy (eV/atom)" in text and f"{material['formation_energy_per_atom']:.3f}" in text
    assert "Space group number" in text and "/material/mp-172" in text
    assert '"yes"' in text_of(pages["map"].hover_details(material, "element", "Ge"))



# --------------------------------------------------------------------------- material page


def test_material_layout(pages, atlas):
    layout = pages["material"].layout(material_id="mp-172")
    text = text_of(layout)
    assert "mp-172" in text and "Formation energy (eV/atom)" in text
    assert "https://next-gen.materialsproject.org/materials/mp-172" in text
    assert "/?highlight=mp-172" in text
    assert json.dumps(NeighborPanel.ids.grid("material"), sort_keys=True) in ids_of(layout)


def test_the_material_page_comes_with_its_first_neighbour_table(pages, atlas):
    """Issue 12: the page's layout holds the first DEFAULT_K neighbours, so the table fills
    without a callback round trip after the page arrives; the plots and the 3D scene are not in
    it (the browser draws the table alone first), only empty frames their callbacks fill."""
    page = pages["material"]
    layout = page.layout(material_id="mp-172")
    grid = next(c for c in _walk(layout) if getattr(c, "id", None) == {"component": "NeighborPanel",
                                                                         "subcomponent": "grid", "aio_id": "material"})
    assert [r["material_id"] for r in grid.rowData] == list(atlas.neighbors("mp-172", page.DEFAULT_K)["material_id"])
    heavy = [type(c).__name__ for c in _walk(layout) if type(c).__name__ in ("Graph", "CrystalToolkitScene")]
    assert heavy == [], f"drawn before the table: {heavy}"
    assert {"material-structure", "material-xrd-frame", "material-neighbor-map-frame", "material-painted"} <= ids_of(layout)
    # Dash's validation layout (no material) holds the components the frames receive
    assert {"material-xrd", "material-neighbor-map"} <= ids_of(page.layout())


def test_unknown_material_says_it_is_not_in_the_map(pages, atlas):
    text = text_of(pages["material"].layout(material_id="mp-0"))
    assert "mp-0 is not in the map" in text


def test_material_callbacks(pages, atlas):
    page = pages["material"]
    view = page.draw_structure("mp-172")
    scene = next(c for c in _walk(view) if type(c).__name__ == "CrystalToolkitScene")
    assert {c["name"] for c in scene.data["contents"]} >= {"atoms", "unit_cell"}
    assert "Ge" in text_of(view)  # the element legend
    graph = page.draw_xrd("mp-172")
    assert graph.id == "material-xrd" and len(graph.figure.data[0].x) == 5000
    rows, meta, note = page.show_neighbors(7, "mp-172")
    assert [r["rank"] for r in rows] == list(range(1, 8)) and note is None
    assert meta == {"columns": list(rows[0]), "filename": "mp-172_neighbors.csv", "units": {}}
    small_map = page.draw_neighbor_map("mp-172", 7, "mp-172")
    assert small_map.id == "material-neighbor-map" and len(small_map.figure.data[1].x) == 7
    assert list(small_map.figure.data[1].customdata) == [r["material_id"] for r in rows]
    for painted in (None, "mp-170"):  # the table not painted yet, or another material's
        with pytest.raises(PreventUpdate):
            page.draw_neighbor_map(painted, 7, "mp-172")
    rows, *_, note = page.show_neighbors(5000, "mp-172")
    assert len(rows) == len(atlas) - 1 and "between 1 and 1000" in text_of(note)
    assert page.download_cif(1, "mp-172")["content"] == atlas.cif("mp-172")
    assert page.open_neighbor({"points": [{"customdata": "mp-170"}]}) == "/material/mp-170"


def test_a_structure_or_pattern_that_cannot_be_drawn_says_why(pages, atlas, monkeypatch):
    from components import state
    from ml.service import ArtifactError

    page = pages["material"]

    def broken(material_id):
        raise ArtifactError("no such file")

    monkeypatch.setattr(state, "get_map", lambda: atlas)  # the map the page reads (a reload would replace it)
    monkeypatch.setattr(atlas, "structure", broken)
    monkeypatch.setattr(atlas, "xrd_pattern", broken)
    assert "The structure cannot be drawn: no such file" in text_of(page.draw_structure("mp-172"))
    assert "No XRD pattern: no such file" in text_of(page.draw_xrd("mp-172"))


def test_k_is_clamped(pages):
    clamp = pages["material"].clamp_k
    assert clamp(25) == (25, None)
    assert clamp(0)[0] == 1 and clamp(1001)[0] == 1000 and clamp(None)[0] == 25


# --------------------------------------------------------------------------- locate page


def test_locate_layout_states_the_size_limit(pages, atlas):
    text = text_of(pages["locate"].layout())
    assert "at most 5 MB per file" in text


def test_add_uploads_keeps_every_result_newest_first(pages, atlas):
    page = pages["locate"]
    good = "data:chemical/x-cif;base64," + base64.b64encode(atlas.cif("mp-172").encode()).decode()
    bad = "data:text/plain;base64," + base64.b64encode(b"garbage").decode()
    results, status = page.add_uploads(atlas, [good, bad], ["nd5ge4.cif", "junk.txt"], 4, [], 10**6)
    assert status == "Placed 1 of 2 files." and [r["key"] for r in results] == ["1", "2"]
    more, _ = page.add_uploads(atlas, good, "again.cif", 4, results, 10**6)  # one file: a string
    assert [r["filename"] for r in more] == ["again.cif", "nd5ge4.cif", "junk.txt"] and more[0]["key"] == "3"
    cards = text_of(page.result_cards(more))
    assert "junk.txt" in cards and "not a CIF" in cards and "Nd" in cards


def test_a_located_upload_changes_only_the_layout_shapes(pages, atlas):
    from components.located import located_points

    page = pages["locate"]
    good = "data:chemical/x-cif;base64," + base64.b64encode(atlas.cif("mp-172").encode()).decode()
    results, _ = page.add_uploads(atlas, [good], ["a.cif"], 3, [], 10**6)
    update = page.located_update(atlas, located_points(results, atlas.row_of))
    assert update["graph"] == "locate-map" and not update["traces"] and not update["replace"]
    shapes = update["layout"]["shapes"]
    rings = [sh for sh in shapes if sh["type"] == "circle"]
    (star,) = [sh for sh in shapes if sh["type"] == "path"]
    assert star["label"]["text"] == "a.cif (Nd5Ge4)" and star["showlegend"] and star["name"] == "uploaded structures"
    assert (star["xanchor"], star["yanchor"]) == (results[0]["x"], results[0]["y"])
    neighbour_xy = {tuple(atlas.coordinates[atlas.row_of(r["material_id"])].astype(float)) for r in results[0]["rows"]}
    assert len(rings) == 3 and {(sh["xanchor"], sh["yanchor"]) for sh in rings} == neighbour_xy
    assert [sh["showlegend"] for sh in rings] == [True, False, False]  # one legend entry per kind
    # the view zooms onto the newest structure, in square ranges
    (x0, x1), (y0, y1) = update["layout"]["xaxis"]["range"], update["layout"]["yaxis"]["range"]
    assert x0 < star["xanchor"] < x1 and y0 < star["yanchor"] < y1 and x1 - x0 == pytest.approx(y1 - y0)
    assert x1 - x0 < 0.5 * np.ptp(atlas.coordinates[:, 0])
    # once the map is drawn, a new result sends that update, not the figure
    cards, figure, update, drawn = in_callback(page.show_results, results, "crystal", True, trigger="located-results.data")
    assert figure is no_update and drawn is no_update and update["layout"]["shapes"] == shapes
    # the XRD map: its coordinates for the base trace, the upload at its XRD-map position
    layout = page.layout()
    assert [o["value"] for o in [c for c in _walk(layout) if getattr(c, "id", None) == "locate-view"][0].options] == \
        ["crystal", "xrd"]
    _, figure, _, drawn = in_callback(page.show_results, results, "xrd", True, trigger="locate-view.value")
    assert drawn is True
    np.testing.assert_array_equal(np.asarray(figure.data[BASE].x, dtype=np.float32), atlas.coordinates_of("xrd")[:, 0])
    assert [sh.xanchor for sh in figure.layout.shapes if sh.type == "path"] == [results[0]["x_xrd"]]
    assert "No structure placed yet" in text_of(page.result_cards([]))


# --------------------------------------------------------------------------- no map


def test_every_page_explains_a_missing_map(pages, no_map):
    for name, kwargs, some_id in (("map", {}, "map-canvas"), ("material", {"material_id": "mp-172"}, "material-xrd"),
                                  ("locate", {}, "locate-upload")):
        layout = pages[name].layout(**kwargs)
        text = text_of(layout)
        assert "No map to show yet" in text and "python -m ml build --dataset" in text, name
        assert some_id in ids_of(layout), "the hidden components keep Dash's callback checks quiet"


def test_callbacks_change_nothing_without_a_map(pages, no_map):

    with pytest.raises(PreventUpdate):
        pages["map"].search("mp-172", 1, "crystal")
    with pytest.raises(PreventUpdate):
        pages["material"].draw_xrd("mp-172")
