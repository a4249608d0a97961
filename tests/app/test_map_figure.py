"""The map figure builders, on a hand-made table (no map, no browser)."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go
import pytest

from components import map_colors as mc
from components import map_figure as mf
from components import map_style as ms
from components import map_view as mv


def coords(table):
    return table[["x", "y"]].to_numpy(np.float32)


@pytest.mark.parametrize("mode", list(mc.COLOR_MODES))
def test_every_mode_builds_one_base_trace_of_all_points(table, mode):
    layers = mc.color_layers(table, mode, element="Cu")
    figure = mf.make_map_figure(coords(table), layers, mf.hover_text(table))
    assert [t.type for t in figure.data] == ["scattergl"] * 3  # base, foreground, highlight
    base = figure.data[mf.BASE]
    assert len(base.x) == len(table) and len(base.hovertext) == len(table)
    assert base.hovertext[0] == "LiCoO2 · mp-1"


@pytest.mark.parametrize(
    ("mode", "title"),
    [
        ("band_gap", "band gap (eV)"),
        ("density", "density (g/cm³)"),
        ("formation_energy_per_atom", "formation energy per atom (eV/atom)"),
        ("total_magnetization", "total magnetization (μB/cell)"),
        ("e_above_hull", "e above hull (eV/atom)"),
        ("spacegroup_number", "space group number"),
    ],
)
def test_property_colour_bar_title_carries_the_unit(table, mode, title):
    layers = mc.color_layers(table, mode)
    assert layers.scale_marker["colorbar"]["title"]["text"] == title
    figure = mf.make_map_figure(coords(table), layers)
    assert figure.data[mf.BASE].marker.colorbar.title.text == title  # most materials have a value


def test_property_mode_colours_the_base_and_greys_the_missing_values_on_top(table):
    """5 of 6 materials have a band gap: the colours go on the base trace (a recolour then
    sends no coordinates) and the one without a value is drawn grey on top of its own point."""
    layers = mc.color_layers(table, "band_gap")
    assert list(layers.foreground_rows) == [4]  # SiO2 has no band gap
    assert layers.foreground_marker["color"] == ms.MISSING_COLOR
    assert layers.foreground_marker["size"] == layers.base_marker["size"]  # covers the coloured point below
    assert layers.foreground_name == "no data (1)" and layers.base_name is None
    np.testing.assert_allclose(layers.base_marker["color"], [2.1, 5.0, 0.0, 1.2, 0.0, 0.0])
    assert layers.base_marker["color"].dtype == np.float32
    assert layers.base_marker["cmin"] == 0.0  # a band gap starts at zero
    assert layers.base_marker["cmax"] <= 5.0


def test_a_property_most_materials_lack_colours_only_the_known_values(table):
    sparse = table.assign(band_gap=[np.nan, 5.0, np.nan, np.nan, 1.0, np.nan])
    layers = mc.color_layers(sparse, "band_gap")
    assert list(layers.foreground_rows) == [1, 4]
    np.testing.assert_allclose(layers.foreground_marker["color"], [5.0, 1.0])
    assert layers.base_marker["color"] == ms.MISSING_COLOR and layers.base_name == "no data (4)"
    assert layers.scale_marker is layers.foreground_marker


def test_spacegroup_scale_spans_1_to_230(table):
    marker = mc.color_layers(table, "spacegroup_number").scale_marker
    assert (marker["cmin"], marker["cmax"]) == (1.0, 230.0)


def test_element_mode_colours_exactly_the_materials_with_the_element(table):
    layers = mc.color_layers(table, "element", element="Cu")
    assert list(layers.foreground_rows) == [2, 3, 5]  # Cu, CuO, YBa2Cu3O7 — not "Co"
    assert layers.foreground_name == "contains Cu (3)"
    assert layers.base_name == "no Cu"
    assert list(mc.color_layers(table, "element", element="O").foreground_rows) == [0, 3, 4, 5]


def test_categorical_modes_name_their_categories(table):
    marker = mc.color_layers(table, "crystal_system").base_marker
    ticks = marker["colorbar"]["ticktext"]
    assert ticks == [*mc.CRYSTAL_SYSTEMS, "unknown"]
    assert [ticks[int(c)] for c in marker["color"]] == ["trigonal", "cubic", "cubic", "monoclinic", "trigonal", "unknown"]
    nel = mc.color_layers(table, "nelements").base_marker
    assert nel["colorbar"]["ticktext"] == ["1", "2", "3", "4"]
    assert [nel["colorbar"]["ticktext"][int(c)] for c in nel["color"]] == ["3", "2", "1", "2", "2", "4"]


def test_supercon_mode_colours_the_labelled_materials(table):
    layers = mc.color_layers(table, "supercon_label")
    assert list(layers.foreground_rows) == [1, 3, 5]
    names = layers.foreground_marker["colorbar"]["ticktext"]
    assert [names[int(c)] for c in layers.foreground_marker["color"]] == [
        "non-superconductor", "doped match", "superconductor"]
    assert layers.base_name == "no SuperCon entry"


def test_unknown_mode_is_an_error_not_a_default(table):
    with pytest.raises(ValueError, match="unknown colour mode 'bandgap'"):
        mc.color_layers(table, "bandgap")
    assert mc.parse_mode(None) == mc.DEFAULT_MODE


def test_highlight_rings_the_rows_and_zooms_onto_them(table):
    layers = mc.color_layers(table, "nelements")
    figure = mf.make_map_figure(coords(table), layers, mf.hover_text(table), highlight_rows=[1, 2], highlight_name="search: x")
    ring = figure.data[mf.HIGHLIGHT]
    assert list(ring.x) == [1, 2] and list(ring.customdata) == [1, 2]
    assert ring.marker.symbol == "circle-open" and ring.name == "search: x" and ring.showlegend
    x0, x1 = figure.layout.xaxis.range
    y0, y1 = figure.layout.yaxis.range
    assert x0 < 1 < 2 < x1 and y0 < 0 < 1 < y1
    assert x1 - x0 == pytest.approx(y1 - y0)  # square window: the map keeps its aspect
    assert x1 - x0 < 0.5 * 5  # zoomed: less than half the map's width (5)


def spread_map(n: int = 2000, seed: int = 0) -> np.ndarray:
    """A 100 × 100 map of ``n`` random points and three far outliers (a t-SNE map's few
    far-flung points), ``(n + 3, 2)``."""
    xy = np.random.default_rng(seed).uniform(0, 100, size=(n, 2))
    return np.vstack([xy, [[-900, 0], [0, 900], [900, 900]]]).astype(np.float32)


def test_zoom_ignores_far_flung_points():
    xy = spread_map()
    assert mv.map_extent(xy) == pytest.approx(98, abs=2)  # 1st to 99th percentile, not the 1800 of the outliers
    (x0, x1), (y0, y1) = mv.zoom_ranges(xy, [5])
    assert x1 - x0 == pytest.approx(mv.ZOOM_MIN_SPAN * mv.map_extent(xy))
    assert x1 - x0 <= 5.0  # one match: a window of 1/20 of the map's bulk, about 400× less area


def test_zoom_goes_to_the_largest_group_of_spread_matches():
    xy = spread_map()
    xy[[10, 11, 12]] = [[20, 20], [22, 21], [21, 24]]  # three polymorphs together …
    xy[13] = [90, 90]  # … and one far from them
    rows = [13, 10, 11, 12]
    assert list(mv.zoom_group(xy, rows)) == [10, 11, 12]
    (x0, x1), (y0, y1) = mv.zoom_ranges(xy, rows)
    assert x0 < 20 and 22 < x1 < 40 and y0 < 20 and 24 < y1 < 40  # framed the group, not the outlier
    assert x1 - x0 < 0.2 * 100
    # matches close enough are framed together; a neighbour map frames every row it is given
    assert list(mv.zoom_group(xy, [10, 11])) == [10, 11]
    (x0, x1), _ = mv.zoom_ranges(xy, rows, group=False)
    assert x0 < 20 and x1 > 90
    # the map's extent, given by a caller that keeps it (components.state.map_geometry), is the one used
    assert mv.zoom_ranges(xy, rows, extent=mv.map_extent(xy)) == mv.zoom_ranges(xy, rows)
    assert list(mv.zoom_group(xy, rows, extent=1000.0)) == rows  # a larger map: the four lie together


def test_zoom_leaves_out_rows_without_a_position():
    xy = spread_map()
    xy[7] = np.nan  # a material the XRD map does not place
    assert mv.zoom_ranges(xy, [7]) is None
    (x0, x1), _ = mv.zoom_ranges(xy, [7, 8])
    assert np.isfinite([x0, x1]).all() and x0 < xy[8, 0] < x1


def test_without_a_highlight_the_map_shows_every_point_in_square_ranges(table):
    xy = coords(table)
    figure = mf.make_map_figure(xy, mc.color_layers(table, "nelements"))
    assert len(figure.data[mf.HIGHLIGHT].x) == 0
    (x0, x1), (y0, y1) = figure.layout.xaxis.range, figure.layout.yaxis.range
    assert figure.layout.xaxis.autorange is False and figure.layout.yaxis.autorange is False
    assert x1 - x0 == pytest.approx(y1 - y0)  # equal aspect without scaleanchor: square ranges
    assert (x0 < xy[:, 0]).all() and (xy[:, 0] < x1).all() and (y0 < xy[:, 1]).all() and (xy[:, 1] < y1).all()
    assert "scaleanchor" not in figure.layout.to_plotly_json()["xaxis"]
    # NaN rows (unplaced on the XRD map) are ignored; nothing placed gives a unit window
    with_nan = np.vstack([xy, [[np.nan, np.nan]]])
    assert mv.home_ranges(with_nan) == mv.home_ranges(xy)
    assert mv.home_ranges(np.full((2, 2), np.nan)) == ([-1.0, 1.0], [-1.0, 1.0])


def test_every_colour_bar_sits_inside_the_square_plot_area(table):
    for mode in ("nelements", "band_gap", "supercon_label"):
        bar = mc.color_layers(table, mode).scale_marker["colorbar"]
        assert bar["xanchor"] == "right" and bar["x"] <= 1.0  # outside, it would widen the right margin


def test_zoom_onto_one_point_keeps_a_minimum_window(table):
    (x0, x1), (y0, y1) = mv.zoom_ranges(coords(table), [2])
    assert x1 - x0 == pytest.approx(mv.ZOOM_MIN_SPAN * 5) and (x0 + x1) / 2 == pytest.approx(2.0)
    assert mv.zoom_ranges(coords(table), []) is None


def test_located_structures_get_stars_and_neighbour_rings_as_shapes(table):
    points = [
        mf.LocatedPoint("a.cif (NaCl)", 1.5, 0.5, np.array([1, 2])),
        mf.LocatedPoint("b.cif (Cu)", 4.5, 0.5, np.array([5])),
    ]
    shapes = mf.located_shapes(coords(table), points)
    stars = [sh for sh in shapes if sh["type"] == "path"]
    rings = [sh for sh in shapes if sh["type"] == "circle"]
    assert [(sh["xanchor"], sh["yanchor"]) for sh in stars] == [(1.5, 0.5), (4.5, 0.5)]
    assert [sh["label"]["text"] for sh in stars] == ["a.cif (NaCl)", "b.cif (Cu)"]
    assert [sh["fillcolor"] for sh in stars] == [mf.located_color(0), mf.located_color(1)]
    xy = coords(table)
    assert [(sh["xanchor"], sh["yanchor"]) for sh in rings] == [tuple(xy[r].astype(float)) for r in (1, 2, 5)]
    assert [sh["line"]["color"] for sh in rings] == [mf.located_color(0)] * 2 + [mf.located_color(1)]
    assert [sh["showlegend"] for sh in stars] == [True, False] and sum(sh["showlegend"] for sh in rings) == 1
    figure = mf.make_map_figure(xy, mc.color_layers(table, "nelements"), located=points)
    assert len(figure.data) == mf.HIGHLIGHT + 1  # no trace for them: a new upload relayouts only
    assert len(figure.layout.shapes) == 3 + 2  # the located marks


def test_clicked_row_resolves_base_and_overlay_points():
    assert mf.clicked_row({"points": [{"curveNumber": mf.BASE, "pointIndex": 4}]}) == 4
    assert mf.clicked_row({"points": [{"curveNumber": mf.HIGHLIGHT, "pointIndex": 0, "customdata": 7}]}) == 7
    assert mf.clicked_row({"points": [{"curveNumber": mf.HIGHLIGHT, "pointIndex": 0}]}) is None  # no row known
    assert mf.clicked_row(None) is None and mf.clicked_row({"points": []}) is None


def test_style_defaults_are_never_mutated(table):
    before = copy.deepcopy(ms.MAP_STYLE)
    figure = mf.make_map_figure(coords(table), mc.color_layers(table, "band_gap"), style={"point_size": 9.0})
    figure.layout.legend.x = 0.5
    figure.data[mf.BASE].marker.size = 20
    mf.make_neighbors_map_figure(coords(table), (0, 0), coords(table)[:2], np.array([0.1, 0.2]))
    assert ms.MAP_STYLE == before


def test_point_size_follows_the_number_of_points():
    assert ms.auto_point_size(300) == pytest.approx(6.03, abs=0.01)
    assert 2.5 <= ms.auto_point_size(140_000) < 3.0


def test_trace_json_base64_encodes_arrays_for_patches(table):
    colours = mf.trace_json(mf.base_trace(coords(table)[:0], None, mc.color_layers(table, "density")))
    assert set(colours["marker"]["color"]) == {"dtype", "bdata"} and colours["marker"]["color"]["dtype"] == "f4"
    subset = mf.trace_json(mf.foreground_trace(coords(table), mc.color_layers(table, "element", element="O")))
    assert set(subset["x"]) == {"dtype", "bdata"} and set(subset["customdata"]) == {"dtype", "bdata"}


def test_neighbours_map_colours_by_distance_and_marks_the_query(table):
    figure = mf.make_neighbors_map_figure(
        coords(table), (0.0, 0.0), coords(table)[1:4], np.array([0.1, 0.2, 0.3]),
        neighbor_text=["a", "b", "c"], neighbor_ids=["mp-2", "mp-3", "mp-4"], query_label="LiCoO2 · mp-1")
    background, neighbours, query = figure.data
    assert neighbours.marker.colorbar.title.text == "embedding distance"
    assert list(neighbours.customdata) == ["mp-2", "mp-3", "mp-4"]
    assert query.marker.symbol == "star" and query.name == "LiCoO2 · mp-1"
    assert isinstance(figure, go.Figure)


def test_available_elements_are_sorted_by_atomic_number(table):
    assert mc.available_elements(table["elements"]) == ["Li", "O", "Na", "Si", "Cl", "Co", "Cu", "Y", "Ba"]
