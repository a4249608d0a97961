"""The whole map as one cached picture behind the small maps (``components.map_image``), and what
the material page's neighbour callback costs on the wire at the full map's size."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from dash_http import post_callback, scaled_map
from PIL import Image

from components.map_image import MapImage, image_extent, map_fingerprint, map_image, render_map_png

FULL_MAP = 141_659  # materials on the mp2024 map


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def test_every_point_is_drawn_where_it_lies_and_nothing_elsewhere():
    xy = np.array([[0.0, 0.0], [10.0, 5.0], [10.0, 5.0], [np.nan, 1.0]])
    extent = image_extent(xy, pad=0.0)
    assert extent == (0.0, 10.0, 0.0, 5.0)  # the NaN row is not part of the map
    rgba = _pixels(render_map_png(xy, extent, pixels=100))
    assert rgba.shape == (50, 100, 4)  # the aspect ratio of the extent
    alpha = rgba[..., 3]
    assert alpha[-1, 0] > 0  # (0, 0): the bottom-left pixel
    assert alpha[0, -1] > alpha[-1, 0]  # (10, 5): top right, two points there: darker
    assert int((alpha > 0).sum()) == 2  # every other pixel is transparent


def test_a_map_without_finite_points_is_refused():
    with pytest.raises(ValueError, match="no finite coordinates"):
        image_extent(np.full((3, 2), np.nan))


def test_the_layout_image_covers_the_extent_below_the_traces():
    image = MapImage("/map-image/crystal.png?v=abc", -2.0, 3.0, -1.0, 4.0)
    entry = image.layout_image()
    assert (entry["x"], entry["y"], entry["sizex"], entry["sizey"]) == (-2.0, 4.0, 5.0, 5.0)
    assert entry["layer"] == "below" and entry["xref"] == "x" and entry["sizing"] == "stretch"


def test_the_url_changes_when_the_map_is_rebuilt(atlas):
    manifest = dict(atlas.manifest)
    rebuilt = {**manifest, "created": "another build"}
    assert map_fingerprint(manifest) == map_fingerprint(dict(manifest))
    assert map_fingerprint(rebuilt) != map_fingerprint(manifest)
    assert map_image(atlas, "crystal").source.endswith(f"?v={map_fingerprint(manifest)}")


def test_the_route_serves_the_picture_cached_and_says_what_is_wrong(dash_app, atlas):
    client = dash_app.server.test_client()
    response = client.get(map_image(atlas, "crystal").source)
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert "immutable" in response.headers["Cache-Control"]
    rgba = _pixels(response.get_data())
    assert rgba.shape[1] == 800 and rgba[..., 3].max() > 0
    assert client.get("/map-image/nonsense.png").status_code == 404


def test_the_route_answers_503_without_a_map(dash_app, no_map):
    response = dash_app.server.test_client().get("/map-image/crystal.png")
    assert response.status_code == 503 and "no map" in response.get_data(as_text=True)


def test_a_click_on_the_full_size_map_sends_the_neighbours_not_the_map(dash_app, atlas, monkeypatch):
    """Issue 12: the material page's neighbour callback on a map of 141,659 points answers with
    at most 50 KB (it sent 248 KB with 30,000 sampled background points); the background is the
    picture, whose URL answers."""
    from components import state

    big = scaled_map(atlas, FULL_MAP)
    monkeypatch.setattr(state, "get_map", lambda: big)
    client = dash_app.server.test_client()
    response = post_callback(client, "material-neighbor-map-frame", "children",
                             {"material-painted.data": "mp-172", "material-id.data": "mp-172", "material-k.value": 25},
                             ["material-painted.data"])
    assert response.status == 200
    assert response.nbytes <= 50_000, f"{response.nbytes} bytes"
    graph = response.json["response"]["material-neighbor-map-frame"]["children"]
    assert graph["props"]["id"] == "material-neighbor-map"
    figure = graph["props"]["figure"]
    assert len(figure["layout"]["images"]) == 1
    source = figure["layout"]["images"][0]["source"]
    assert client.get(source).status_code == 200
    assert json.dumps(figure).count("mp-") >= 25  # the neighbours are there


def _update_of(response) -> dict:
    """The scatter update (``components/map_points.py`` ``scatter_update``) a callback response
    writes to ``map-update``."""
    return response.json["response"]["map-update"]["data"]


@pytest.mark.parametrize("mode", ["band_gap", "crystal_system", "element"])
def test_a_recolour_of_the_full_size_map_resends_colours_not_coordinates(dash_app, atlas, monkeypatch, mode):
    """Issue 12: a new colour mode sends one palette index per point (one byte; base64 and
    gzip: about 1.3 bytes) and the palette; the 141,659 positions stay in the browser's
    scatter (``assets/map_scatter.js``). Plotly's marker update sent about 5.3 bytes per point,
    and the coloured points as a new trace with their coordinates 19."""
    from components import state

    big = scaled_map(atlas, FULL_MAP)
    monkeypatch.setattr(state, "get_map", lambda: big)
    client = dash_app.server.test_client()
    values = {"map-color.value": mode, "map-element.value": "O", "map-view.value": "crystal", "map-highlight.data": ""}
    recolour = post_callback(client, "map-update", "data", values, ["map-color.value"])
    assert recolour.status == 200
    update = _update_of(recolour)
    assert set(update) == {"host", "colors"}  # no positions
    assert recolour.nbytes < 2 * FULL_MAP, f"{recolour.nbytes / FULL_MAP:.1f} bytes per point"
