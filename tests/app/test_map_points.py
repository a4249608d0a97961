"""The map page's scatter payloads (components/map_points.py) and its key (components/map_legend.py),
on the six-material ``table`` of conftest.py."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from components import map_colors as mc
from components import map_points as mp
from components.map_legend import map_legend


def _xy(table):
    return table[["x", "y"]].to_numpy(np.float64)


def test_positions_fill_the_square_home_view_and_park_unplaced_rows():
    xy = np.array([[0.0, 0.0], [10.0, 2.0], [5.0, 4.0], [np.nan, np.nan]])
    ndc = mp.scatter_points(xy)
    assert ndc.dtype == np.float32 and ndc.shape == (4, 2)
    placed = ndc[:3]
    assert np.abs(placed).max() < 1.0 and np.ptp(placed[:, 0]) > 1.8  # the wide side fills the view (3 % margin) …
    np.testing.assert_allclose(np.ptp(placed[:, 1]) / np.ptp(placed[:, 0]), 4 / 10, rtol=1e-6)  # … one aspect
    assert (ndc[3] == mp.UNPLACED_NDC).all()


def test_a_zoom_window_lands_on_the_same_points():
    xy = np.array([[0.0, 0.0], [10.0, 2.0], [5.0, 4.0]])
    area = mp.ndc_area(xy, ([4.0, 6.0], [3.0, 5.0]))
    ndc = mp.scatter_points(xy)[2]
    assert area["x"] < ndc[0] < area["x"] + area["width"] and area["y"] < ndc[1] < area["y"] + area["height"]
    assert area["width"] == pytest.approx(area["height"])
    outside = mp.scatter_points(xy)[0]
    assert not area["x"] < outside[0] < area["x"] + area["width"]
    assert mp.ndc_area(xy, ([4.0, 6.0], [3.0, 5.0]), mp.scatter_frame(xy)) == area  # a frame kept by the caller


def test_element_mode_puts_the_materials_with_it_on_top(table):
    layers = mc.color_layers(table, "element", element="Cu")
    colors = mp.point_colors(layers, len(table))
    has_cu = table["elements"].str.split().apply(lambda e: "Cu" in e).to_numpy()
    assert np.isin(colors.index[has_cu], colors.top).all() and not np.isin(colors.index[~has_cu], colors.top).any()
    assert colors.palette[colors.index[has_cu][0]] == mc.ELEMENT_COLOR
    assert colors.palette[0] == mc.MISSING_COLOR and len(colors.sizes) == len(colors.palette)


def test_a_property_follows_its_colour_scale_and_missing_values_are_grey(table):
    colors = mp.point_colors(mc.color_layers(table, "band_gap"), len(table))
    gap = table["band_gap"].to_numpy()
    steps = mp.CONTINUOUS_STEPS
    assert colors.top == [steps]  # the scale first, then the grey "no data" entry drawn on top
    assert colors.palette[colors.index[int(np.nanargmax(gap))]] == mp.scale_colors("Viridis", steps)[-1]
    assert colors.palette[colors.index[2]] == mp.scale_colors("Viridis", steps)[0]  # 0 eV: the scale's start
    assert colors.palette[colors.index[int(np.flatnonzero(np.isnan(gap))[0])]] == mc.MISSING_COLOR


def test_categories_keep_one_colour_each(table):
    colors = mp.point_colors(mc.color_layers(table, "crystal_system"), len(table))
    systems = table["crystal_system"]
    cubic = np.flatnonzero(systems == "cubic")
    assert len(cubic) == 2 and len({int(colors.index[i]) for i in cubic}) == 1
    assert colors.palette[colors.index[int(np.flatnonzero(systems.isna())[0])]] == mc.MISSING_COLOR  # "unknown"
    assert colors.top == []  # nothing drawn on top


def test_payloads_are_json_and_decode_back(table):
    colors = mp.point_colors(mc.color_layers(table, "nelements"), len(table))
    payload = json.loads(json.dumps(mp.colors_payload(colors)))
    index = np.frombuffer(base64.b64decode(payload["index"]["bdata"]), dtype=payload["index"]["dtype"])
    np.testing.assert_array_equal(index, colors.index)
    with pytest.raises(ValueError, match="dtype"):
        mp.encode(np.zeros(3, dtype=np.complex64))
    with pytest.raises(ValueError, match="colours"):
        mp.scatter_update("map-canvas", points={"xy": mp.encode(mp.scatter_points(_xy(table)))})


def test_every_mode_shares_one_palette_so_a_recolour_sends_indices_only(table):
    modes = {mode: mp.point_colors(mc.color_layers(table, mode), len(table)) for mode in mc.COLOR_MODES}
    palette, sizes = mp.shared_palette(list(modes.values()))
    assert len(palette) == len(set(zip(palette, sizes))) <= 256  # each (colour, size) once
    keys = set()
    for mode, colors in modes.items():
        shared = mp.on_palette(colors, palette, sizes)
        assert shared.palette == palette and shared.sizes == sizes  # nothing appended
        # every material keeps its colour, size and layer
        assert [palette[i] for i in shared.index] == [colors.palette[i] for i in colors.index]
        assert [sizes[i] for i in shared.index] == [colors.sizes[i] for i in colors.index]
        assert np.array_equal(np.isin(shared.index, shared.top), np.isin(colors.index, colors.top))
        keys.add(mp.colors_payload(shared)["palette_key"])
    assert len(keys) == 1  # the browser sets the palette once
    sodium = mp.point_colors(mc.color_layers(table, "element", element="Na"), len(table))
    other = mp.on_palette(sodium, palette[:1], sizes[:1])  # missing entries are appended
    assert other.palette == palette[:1] + sodium.palette[1:] and mp.colors_payload(other)["palette_key"] not in keys


def test_too_many_colours_for_one_byte_are_refused(table, monkeypatch):
    monkeypatch.setattr(mp, "CONTINUOUS_STEPS", 200)  # two continuous layers: 400 colours
    layers = mc.ColorLayers(base_marker={"color": np.arange(len(table), dtype=float), "colorscale": "Viridis",
                                         "cmin": 0.0, "cmax": 5.0, "size": 3.0},
                            base_name=None, foreground_rows=np.arange(len(table)),
                            foreground_marker={"color": np.arange(len(table), dtype=float), "colorscale": "Viridis",
                                               "cmin": 0.0, "cmax": 5.0, "size": 4.0})
    with pytest.raises(ValueError, match="one byte"):
        mp.point_colors(layers, len(table))


def _text(children) -> str:
    return json.dumps([c.to_plotly_json() for c in children], default=lambda c: c.to_plotly_json(), ensure_ascii=False)


def test_the_key_names_layers_categories_and_the_scale_with_its_unit(table):
    layers = mc.color_layers(table, "element", element="Cu")
    text = _text(map_legend(layers, mp.point_colors(layers, len(table))))
    assert "contains Cu (3)" in text and "no Cu" in text and mc.ELEMENT_COLOR in text
    layers = mc.color_layers(table, "band_gap")
    text = _text(map_legend(layers, mp.point_colors(layers, len(table))))
    assert "band gap (eV)" in text and "linear-gradient" in text and "no data (1)" in text
    top = np.percentile(table["band_gap"].dropna(), 99)  # the scale: 0 eV to the 99th percentile
    assert '"0"' in text and f'"{top:.3g}"' in text
    layers = mc.color_layers(table, "crystal_system")
    text = _text(map_legend(layers, mp.point_colors(layers, len(table))))
    assert all(name in text for name in ("crystal system", "triclinic", "cubic", "unknown"))
