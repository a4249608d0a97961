"""Pure builders of the materials-map figures (no Dash state, no I/O).

The main map is one WebGL scatter of every material plus a few small overlay traces, always
in this order so that a Dash ``Patch`` can replace one of them without resending the rest:

| index | trace | content |
|---|---|---|
| :data:`BASE` | ``materials`` | every material, coordinates and hover text sent once |
| :data:`FOREGROUND` | colour layer | the coloured subset of some colour modes, drawn on top (may be empty) |
| :data:`HIGHLIGHT` | search result | rings around highlighted materials (may be empty) |

Overlay traces carry ``customdata`` = the material's row in the materials table, so a click
on any trace resolves to a material; the base trace's row is its ``pointIndex``. The colours
come from :mod:`components.map_colors`, the look from :mod:`components.map_style`, the axis
ranges from :mod:`components.map_view`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from components.map_colors import ColorLayers
from components.map_style import COLORBAR_INSIDE, HIGHLIGHT_COLOR, LOCATED_COLORS, MISSING_COLOR, style_defaults
from components.map_view import home_ranges, set_ranges, zoom_ranges

if TYPE_CHECKING:  # a type only: at run time this module imports no other component (no import circle)
    from components.map_image import MapImage

BASE, FOREGROUND, HIGHLIGHT = 0, 1, 2


def hover_text(materials: pd.DataFrame) -> np.ndarray:
    """``"LiCoO2 · mp-22526"`` for every row, ``(n,)`` object array."""
    formula = materials["formula"].astype(str).to_numpy(dtype=object)
    ids = materials["material_id"].astype(str).to_numpy(dtype=object)
    return formula + " · " + ids


def base_trace(coordinates: np.ndarray, text: np.ndarray | None, layers: ColorLayers) -> go.Scattergl:
    """The trace of all materials: ``coordinates`` ``(n, 2)``, hover ``text`` ``(n,)``; without
    ``text`` a hover still fires plotly's hover event (the map page shows the material beside
    the map) but draws no label."""
    return go.Scattergl(
        x=np.asarray(coordinates[:, 0], dtype=np.float32),
        y=np.asarray(coordinates[:, 1], dtype=np.float32),
        mode="markers",
        name=layers.base_name or "materials",
        showlegend=layers.base_name is not None,
        hovertext=text,
        hovertemplate="%{hovertext}<extra></extra>" if text is not None else None,
        hoverinfo=None if text is not None else "none",
        marker=copy.deepcopy(layers.base_marker),
        uid="materials",
    )


def foreground_trace(coordinates: np.ndarray, layers: ColorLayers) -> go.Scattergl:
    """The coloured subset of a mode, drawn on top; hover falls through to the base trace."""
    rows = np.asarray(layers.foreground_rows, dtype=np.int64)
    return go.Scattergl(
        x=np.asarray(coordinates[rows, 0], dtype=np.float32),
        y=np.asarray(coordinates[rows, 1], dtype=np.float32),
        mode="markers",
        name=layers.foreground_name or "",
        showlegend=layers.foreground_name is not None,
        hoverinfo="skip",
        customdata=rows.astype(np.int32),
        marker=copy.deepcopy(layers.foreground_marker) or {"size": 1},
        uid="foreground",
    )


def highlight_trace(coordinates: np.ndarray, rows, text: np.ndarray | None = None, name: str = "search") -> go.Scattergl:
    """Black rings around ``rows`` (may be empty) with their hover text."""
    rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
    return go.Scattergl(
        x=np.asarray(coordinates[rows, 0], dtype=np.float32),
        y=np.asarray(coordinates[rows, 1], dtype=np.float32),
        mode="markers",
        name=name,
        showlegend=len(rows) > 0,
        hovertext=None if text is None else np.asarray(text, dtype=object)[rows],
        hovertemplate="%{hovertext}<extra></extra>" if text is not None else None,
        customdata=rows.astype(np.int32),
        marker={"symbol": "circle-open", "size": 16, "color": HIGHLIGHT_COLOR, "line": {"width": 2.5}},
        uid="highlight",
    )


@dataclass
class LocatedPoint:
    """An uploaded structure placed on the map.

    Attributes:
        label: hover text (file name and formula).
        x, y: map coordinates.
        neighbor_rows: rows of its nearest materials in the materials table (may be empty).
    """

    label: str
    x: float
    y: float
    neighbor_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def located_color(index: int) -> str:
    """The colour of the ``index``-th located structure (cycling through :data:`LOCATED_COLORS`)."""
    return LOCATED_COLORS[index % len(LOCATED_COLORS)]


#: A five-pointed star of :data:`STAR_RADIUS_PX` screen pixels, as an SVG path around (0, 0).
STAR_RADIUS_PX = 11


def _star_path(outer: float = STAR_RADIUS_PX, inner: float = STAR_RADIUS_PX * 0.45) -> str:
    """The SVG path of a five-pointed star around (0, 0) in pixels, one point up."""
    angles = np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, outer, inner)
    points = [f"{r * np.cos(a):.2f},{r * np.sin(a):.2f}" for r, a in zip(radii, angles)]
    return "M" + "L".join(points) + "Z"


def located_shapes(coordinates: np.ndarray, points: list[LocatedPoint]) -> list[dict]:
    """The located structures as layout shapes: a ring on each of point ``i``'s neighbours and a
    star on the point itself, both in :func:`located_color` ``(i)``, the first of each kind with a
    legend entry. Adding or removing them changes only the layout: plotly relayouts the 141k-point map in about 0.01 s, where a change of any
    trace recomputes every trace (1.4 s in Chromium on 2 busy cores). Shapes take no pointer:
    a click on a ringed material reaches its point (its page opens); the result cards name
    each star.

    Args:
        coordinates: ``(n, 2)`` map coordinates. points: the placed structures.

    Returns:
        Plotly ``layout.shapes`` entries: every ring, then every star.
    """
    coordinates = np.asarray(coordinates)
    r = 6
    rings, stars = [], []
    for i, point in enumerate(points):
        color = located_color(i)
        for row in np.asarray(point.neighbor_rows, dtype=np.int64).ravel():
            rings.append({"type": "circle", "xref": "x", "yref": "y", "xsizemode": "pixel", "ysizemode": "pixel",
                          "xanchor": float(coordinates[row, 0]), "yanchor": float(coordinates[row, 1]),
                          "x0": -r, "x1": r, "y0": -r, "y1": r, "line": {"color": color, "width": 2},
                          "layer": "above", "name": "their nearest materials", "showlegend": not rings,
                          "legendgroup": "located-neighbours"})
        stars.append({"type": "path", "xref": "x", "yref": "y", "xsizemode": "pixel", "ysizemode": "pixel",
                      "xanchor": float(point.x), "yanchor": float(point.y), "path": _star_path(),
                      "fillcolor": color, "line": {"color": "#000000", "width": 1.5}, "layer": "above",
                      "name": "uploaded structures", "showlegend": not stars, "legendgroup": "located",
                      "label": {"text": point.label, "textposition": "top center", "font": {"size": 11}}})
    return rings + stars


def clicked_row(click_data: dict | None) -> int | None:
    """The materials-table row of a clicked point of a map figure, or ``None``.

    The base trace's point number is its row; overlay traces carry rows in ``customdata``;
    points without one give ``None``.
    """
    if not click_data or not click_data.get("points"):
        return None
    point = click_data["points"][0]
    custom = point.get("customdata")
    if isinstance(custom, (int, float)) and not isinstance(custom, bool):
        return int(custom)
    if point.get("curveNumber") == BASE:
        index = point.get("pointIndex", point.get("pointNumber"))
        return int(index) if index is not None else None
    return None


def clicked_material_href(material_ids, click_data: dict | None) -> str | None:
    """``/material/<id>`` of a clicked point (``material_ids`` by table row), or ``None``."""
    row = clicked_row(click_data)
    return None if row is None else f"/material/{material_ids.iat[row]}"


def make_map_figure(
    coordinates: np.ndarray,
    layers: ColorLayers,
    text: np.ndarray | None = None,
    highlight_rows=None,
    highlight_name: str = "search",
    highlight_text: np.ndarray | None = None,
    located: list[LocatedPoint] | None = None,
    zoom_to_highlight: bool = True,
    style: dict | None = None,
) -> go.Figure:
    """The materials map.

    Args:
        coordinates: ``(n, 2)`` map coordinates (t-SNE units), row ``i`` = material ``i``.
        layers: the colour mode's :class:`ColorLayers` (from :func:`color_layers`).
        text: ``(n,)`` hover text (``None``: hover events without a label).
        highlight_rows: rows to ring (search result); the view zooms onto them when
            ``zoom_to_highlight``.
        highlight_name: legend name of the rings.
        highlight_text: ``(n,)`` hover text of the rings (default ``text``; only the ringed
            rows are sent).
        located: uploaded structures to mark with stars and rings (layout shapes,
            :func:`located_shapes`).
        style: overrides of :data:`MAP_STYLE` (not modified).

    Returns:
        A figure whose traces follow the order of the module docstring.
    """
    s = style_defaults()
    if style:
        s.update(copy.deepcopy(style))
    coordinates = np.asarray(coordinates)
    traces = [
        base_trace(coordinates, text, layers),
        foreground_trace(coordinates, layers),
        highlight_trace(coordinates, highlight_rows, text if highlight_text is None else highlight_text, highlight_name),
    ]
    figure = go.Figure(data=traces, layout=copy.deepcopy(s["layout"]))
    shapes = located_shapes(coordinates, located or [])
    if shapes:
        figure.update_layout(shapes=shapes)
    ranges = zoom_ranges(coordinates, highlight_rows) if zoom_to_highlight else None
    return set_ranges(figure, ranges if ranges is not None else home_ranges(coordinates))


def make_neighbors_map_figure(
    background: "np.ndarray | MapImage",
    query_xy: tuple[float, float] | None,
    neighbor_xy: np.ndarray,
    distances: np.ndarray,
    neighbor_text: list[str] | None = None,
    neighbor_ids: list[str] | None = None,
    query_label: str = "query",
) -> go.Figure:
    """A small map: the background in grey, the neighbours coloured by embedding distance and
    the query as a star.

    Args:
        background: the context: a :class:`components.map_image.MapImage` (the whole map as a
            picture referred to by URL: a response of a few KB, whatever the map's size), or
            ``(m, 2)`` coordinates drawn as grey points (small maps, tests).
        query_xy: map position of the query, or ``None``.
        neighbor_xy: ``(k, 2)`` neighbour positions, nearest first.
        distances: ``(k,)`` embedding distances (colour, "embedding distance" colour bar).
        neighbor_text: ``(k,)`` hover text. neighbor_ids: ``(k,)`` ids put in ``customdata``.
        query_label: hover text and legend name of the star.
    """
    s = style_defaults()
    layout = copy.deepcopy(s["layout"])
    layout["legend"].update(orientation="h", y=1.0)
    image = background if hasattr(background, "layout_image") else None  # a MapImage
    background_xy = np.zeros((0, 2), np.float32) if image else np.asarray(background, dtype=np.float32).reshape(-1, 2)
    if image is not None:
        layout["images"] = [image.layout_image()]
        span = max(image.x1 - image.x0, image.y1 - image.y0)
    else:
        span = float(np.ptp(background_xy, axis=0).max()) if len(background_xy) else 1.0
    neighbor_xy = np.asarray(neighbor_xy, dtype=np.float32).reshape(-1, 2)
    traces = [
        go.Scattergl(
            x=background_xy[:, 0], y=background_xy[:, 1], mode="markers", name="map",
            showlegend=False, hoverinfo="skip",
            marker={"color": MISSING_COLOR, "size": 2.5, "opacity": 0.7},
        ),
        _neighbors_trace(neighbor_xy, distances, neighbor_text, neighbor_ids),
    ]
    if query_xy is not None:
        traces.append(_query_star(query_xy, query_label))
    figure = go.Figure(data=traces, layout=layout)
    ranges = zoom_ranges(
        np.vstack([neighbor_xy, np.asarray([query_xy], dtype=np.float32)]) if query_xy is not None else neighbor_xy,
        np.arange(len(neighbor_xy) + (query_xy is not None)),
        pad=0.25,
        min_span=0.1 * span,
        group=False,
    )
    if ranges is None and image is not None:
        ranges = home_ranges(np.array([[image.x0, image.y0], [image.x1, image.y1]]), pad=0.0)
    return set_ranges(figure, ranges if ranges is not None else home_ranges(background_xy))


def _neighbors_trace(neighbor_xy: np.ndarray, distances, neighbor_text, neighbor_ids) -> go.Scattergl:
    """The ``(k, 2)`` neighbours coloured by embedding distance, the nearest in yellow (reversed Viridis)."""
    return go.Scattergl(
        x=neighbor_xy[:, 0], y=neighbor_xy[:, 1], mode="markers", name=f"{len(neighbor_xy)} nearest",
        hovertext=neighbor_text, hovertemplate="%{hovertext}<extra></extra>" if neighbor_text is not None else None,
        customdata=neighbor_ids,
        marker={
            "color": np.asarray(distances, dtype=np.float32),
            "colorscale": "Viridis_r",
            "size": 7,
            "line": {"width": 0.5, "color": "#333333"},
            "showscale": len(neighbor_xy) > 0,
            "colorbar": {"title": {"text": "embedding distance"}, **COLORBAR_INSIDE, "thickness": 10},
        },
    )


def _query_star(query_xy: tuple[float, float], label: str) -> go.Scattergl:
    """The query's map position as a red star."""
    return go.Scattergl(
        x=[float(query_xy[0])], y=[float(query_xy[1])], mode="markers", name=label,
        hovertemplate=f"{label}<extra></extra>",
        marker={"symbol": "star", "size": 18, "color": "#e6194b", "line": {"width": 1.5, "color": "#000000"}},
    )


def map_update(traces: dict[int, dict] | None = None, replace: dict[int, dict] | None = None,
               layout: dict[str, dict] | None = None, *, graph: str) -> dict:
    """A partial update of a drawn map, for ``matmap.applyMapUpdate`` (``assets/matmap.js``),
    which hands it to ``Plotly.react`` in the browser. The Graph's ``figure`` prop is not
    touched: for a ``Patch`` of it, Dash copied and redrew the whole 141k-point figure (2 s in
    Chromium beside plotly's own work).

    Args:
        traces: trace index → attributes to set on that trace (the others kept).
        replace: trace index → a whole new trace (JSON of :func:`trace_json`).
        layout: layout key → attributes to set on it (``xaxis``: a dict, merged), or its new
            value (``shapes``: a list, replaced).
        graph: the ``id`` of the ``dcc.Graph`` to update.

    Returns:
        ``{"graph": …, "traces": {"0": …}, "replace": {"1": …}, "layout": {…}}`` (JSON keys are strings).
    """
    return {"graph": graph,
            "traces": {str(i): t for i, t in (traces or {}).items()},
            "replace": {str(i): t for i, t in (replace or {}).items()},
            "layout": layout or {}}


def trace_json(trace: go.Scattergl | go.Scatter) -> dict:
    """A trace as the JSON plotly.js takes, numeric arrays base64-encoded as in a full figure
    (for ``Patch`` updates, which would otherwise send them as long lists)."""
    return go.Figure(data=[trace]).to_plotly_json()["data"][0]
