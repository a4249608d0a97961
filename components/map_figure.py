"""Pure builders of the materials-map figures (no Dash state, no I/O).

The main map is one WebGL scatter of every material plus a few small overlay traces, always
in this order so that a Dash ``Patch`` can replace one of them without resending the rest:

| index | trace | content |
|---|---|---|
| :data:`BASE` | ``materials`` | every material, coordinates and hover text sent once |
| :data:`FOREGROUND` | colour layer | the coloured subset of some colour modes, drawn on top (may be empty) |
| :data:`HIGHLIGHT` | search result | rings around highlighted materials (may be empty; the map page
draws its search rings as layout shapes instead, :func:`ring_shapes`) |
| :data:`LOCATED` | uploaded CIFs' neighbours | rings on the nearest materials of each located CIF |
| :data:`LOCATED` + 1 | uploaded CIFs | one star per located CIF |

Colour modes (:data:`COLOR_MODES`):

- ``element``: materials containing an element in colour on top of the grey rest;
- ``nelements``, ``crystal_system``: categorical colours of every point, with a colour bar
  whose ticks name the categories;
- a property (``band_gap`` …): the materials that have a value, coloured on a continuous scale
  clipped to the 1st–99th percentile, and grey "no data" points; the colour-bar title carries
  the unit (``band gap (eV)``). When most materials have a value (every property of mp2024),
  the colours go on the base trace and the few grey points on top, so a recolour sends one
  number per point and no coordinates (2.7 MB → 0.8 MB on the 141,659-point map); otherwise the
  coloured subset is the foreground, on top of the grey base;
- ``supercon_label``: the materials with a SuperCon entry in colour on top of the rest.

Overlay traces carry ``customdata`` = the material's row in the materials table, so a click
on any trace resolves to a material; the base trace's row is its ``pointIndex``. Every style
default below is deep-copied before use, never mutated.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ml.service import column_label

if TYPE_CHECKING:  # a type only: at run time this module imports no other component (no import circle)
    from components.map_image import MapImage

BASE, FOREGROUND, HIGHLIGHT, LOCATED = 0, 1, 2, 3

#: Properties that can colour the map on a continuous scale.
PROPERTY_MODES = (
    "formation_energy_per_atom",
    "band_gap",
    "density",
    "total_magnetization",
    "e_above_hull",
    "spacegroup_number",
)

#: Colour modes: key (as in ``?color=``) -> label shown in the menu.
COLOR_MODES: dict[str, str] = {
    "element": "Element (present / absent)",
    "nelements": "Number of elements",
    "formation_energy_per_atom": "Formation energy (eV/atom)",
    "band_gap": "Band gap (eV)",
    "density": "Density (g/cm³)",
    "total_magnetization": "Magnetisation (μB/cell)",
    "e_above_hull": "Energy above hull (eV/atom)",
    "spacegroup_number": "Space group number",
    "crystal_system": "Crystal system",
    "supercon_label": "Superconductor (SuperCon label)",
}
DEFAULT_MODE = "nelements"
DEFAULT_ELEMENT = "O"

CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic")
#: SuperCon labels drawn in colour, with their colours; "no SuperCon entry" stays grey.
SUPERCON_COLORS = {
    "superconductor": "#d62728",
    "doped match": "#ff9f1c",
    "non-superconductor": "#1f77b4",
}

CATEGORY_COLORS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f",
)
MISSING_COLOR = "#cfd4da"
ELEMENT_COLOR = "#d62728"
HIGHLIGHT_COLOR = "#111111"
LOCATED_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324")

#: Where every map's colour bar goes: inside the plot area, in its bottom-right corner (a t-SNE
#: map is round: the corners are mostly empty). A colour bar outside would widen the right
#: margin, and the plot area would no longer be square.
COLORBAR_INSIDE = {"thickness": 14, "len": 0.4, "x": 0.995, "xanchor": "right", "y": 0.01, "yanchor": "bottom",
                   "bgcolor": "rgba(255,255,255,0.85)", "outlinewidth": 0, "xpad": 6, "ypad": 6}

#: How the maps keep an equal aspect (one map unit as long across as up). Plotly's
#: ``yaxis.scaleanchor`` does it, but it made every redraw of the 141,659-point map 0.6 s slower
#: in Chromium on 2 cores (``Plotly.relayout`` of the axis ranges: 0.04 s without, 0.6 s with;
#: a colour change 0.65 s without, 1.26 s with). Instead, the map's container is square (CSS
#: ``aspect-ratio: 1`` in ``assets/matmap.css``), the margins are equal, colour bars sit inside
#: (:data:`COLORBAR_INSIDE`), every figure is given square axis ranges (:func:`home_ranges`,
#: :func:`zoom_ranges`), and the pointer only pans and zooms both axes alike (scroll, the
#: zoom buttons; no box zoom: :data:`GRAPH_CONFIG`).
MAP_ASPECT_NOTE = "square plot area + square ranges"

#: The plotly config of every map: scroll zoom, no box zoom or selection (a drawn box would
#: stretch one axis: see :data:`MAP_ASPECT_NOTE`), PNG export at twice the size.
GRAPH_CONFIG = {
    "scrollZoom": True,
    "displaylogo": False,
    "modeBarButtonsToRemove": ["zoom2d", "select2d", "lasso2d", "autoScale2d"],
    "toImageButtonOptions": {"filename": "matmap", "scale": 2},
}

#: Style defaults; copied with :func:`copy.deepcopy` by every builder.
MAP_STYLE: dict = {
    "point_size": None,  # None: auto_point_size(n)
    "foreground_size": None,  # None: point size + 1
    "opacity": 0.85,
    "continuous_colorscale": "Viridis",
    "spacegroup_colorscale": "Turbo",
    "layout": {
        "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        # equal aspect without plotly's scaleanchor (which adds ~0.6 s to every redraw of a 141k-point
        # map in Chromium): the plot area is square (MAP_ASPECT_NOTE) and every figure gets square ranges
        "xaxis": {"visible": False},
        "yaxis": {"visible": False},
        "dragmode": "pan",
        "hovermode": "closest",
        "uirevision": "map",
        "legend": {
            "orientation": "h",
            "x": 0.0,
            "y": 1.0,
            "xanchor": "left",
            "yanchor": "top",
            "bgcolor": "rgba(255,255,255,0.8)",
            "itemsizing": "constant",
        },
        "font": {"family": "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
    },
}


def auto_point_size(n: int) -> float:
    """Marker diameter (px) for a map of ``n`` points: 6 for 300, about 3 for 140k."""
    return float(np.clip(9.0 - 1.2 * np.log10(max(n, 1)), 2.5, 7.0))


def style_defaults() -> dict:
    """A private deep copy of :data:`MAP_STYLE`."""
    return copy.deepcopy(MAP_STYLE)


@dataclass
class ColorLayers:
    """How one colour mode paints the map.

    Attributes:
        base_marker: the ``marker`` of the base trace (all materials).
        base_name: legend name of the base trace (``None``: no legend entry).
        foreground_rows: rows drawn again on top, ``(m,)`` int (may be empty).
        foreground_marker: the ``marker`` of that foreground trace.
        foreground_name: its legend name (``None``: no legend entry).
        title: human name of what the colour shows, with units where it has some.
    """

    base_marker: dict
    base_name: str | None
    foreground_rows: np.ndarray
    foreground_marker: dict = field(default_factory=dict)
    foreground_name: str | None = None
    title: str = ""

    @property
    def scale_marker(self) -> dict:
        """The marker that carries the colour scale (base or foreground, whichever has a colour bar)."""
        return self.base_marker if "colorbar" in self.base_marker else self.foreground_marker


def parse_mode(mode: str | None) -> str:
    """A valid colour mode: ``mode`` itself, or :data:`DEFAULT_MODE` when it is ``None``/empty.

    Raises:
        ValueError: an unknown mode name.
    """
    if not mode:
        return DEFAULT_MODE
    if mode not in COLOR_MODES:
        raise ValueError(f"unknown colour mode {mode!r}; choose one of {', '.join(COLOR_MODES)}")
    return mode


def contains_element(elements: pd.Series, symbol: str) -> np.ndarray:
    """``(n,)`` bool: which rows of a space-separated ``elements`` column contain ``symbol``."""
    padded = " " + elements.fillna("").astype(str) + " "
    return padded.str.contains(f" {symbol} ", regex=False).to_numpy(dtype=bool)


def available_elements(elements: pd.Series) -> list[str]:
    """The element symbols present in an ``elements`` column, by atomic number."""
    from pymatgen.core import Element

    symbols = set()
    for text in elements.dropna().astype(str).unique():
        symbols.update(text.split())

    def atomic_number(symbol: str) -> int:
        try:
            return Element(symbol).Z
        except ValueError:
            return 999

    return sorted(symbols, key=lambda s: (atomic_number(s), s))


def _discrete_colorscale(colors: list[str]) -> list[list]:
    """A stepped colour scale giving integer code ``i`` (with ``cmin=-0.5``) ``colors[i]``."""
    n = len(colors)
    scale = []
    for i, color in enumerate(colors):
        scale.append([i / n, color])
        scale.append([(i + 1) / n, color])
    return scale


def _categorical_marker(codes: np.ndarray, names: list[str], colors: list[str], title: str, size: float, opacity: float) -> dict:
    n = len(names)
    return {
        "color": codes.astype(np.float32),
        "colorscale": _discrete_colorscale(colors),
        "cmin": -0.5,
        "cmax": n - 0.5,
        "showscale": True,
        "colorbar": {
            "title": {"text": title},
            "tickvals": list(range(n)),
            "ticktext": names,
            **COLORBAR_INSIDE,
        },
        "size": size,
        "opacity": opacity,
    }


def _robust_range(values: np.ndarray, column: str) -> tuple[float, float]:
    """Colour range of a property: 1st–99th percentile (space group: 1–230; band gap and
    energy above hull from 0)."""
    if column == "spacegroup_number":
        return 1.0, 230.0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(finite, [1, 99]))
    if column in ("band_gap", "e_above_hull"):  # physical zero: metals, stable phases
        lo = 0.0
    if hi <= lo:
        hi = lo + 1.0
    return float(lo), float(hi)


def color_layers(materials: pd.DataFrame, mode: str, element: str | None = None, style: dict | None = None) -> ColorLayers:
    """How ``mode`` colours the map of ``materials`` (see the module docstring).

    Args:
        materials: the map's table (needs ``elements``, ``nelements`` and the mode's column).
        mode: a key of :data:`COLOR_MODES`.
        element: the element symbol of the ``element`` mode (default :data:`DEFAULT_ELEMENT`).
        style: overrides of :data:`MAP_STYLE` (not modified).

    Raises:
        ValueError: unknown mode.
    """
    mode = parse_mode(mode)
    s = style_defaults()
    if style:
        s.update(copy.deepcopy(style))
    n = len(materials)
    if s["point_size"] is None:
        s["point_size"] = auto_point_size(n)
    if s["foreground_size"] is None:
        s["foreground_size"] = s["point_size"] + 1.0
    grey = {"color": MISSING_COLOR, "size": s["point_size"], "opacity": s["opacity"]}
    empty = np.zeros(0, dtype=np.int64)

    if mode == "element":
        symbol = element or DEFAULT_ELEMENT
        present = contains_element(materials["elements"], symbol)
        return ColorLayers(
            base_marker=grey,
            base_name=f"no {symbol}",
            foreground_rows=np.flatnonzero(present),
            foreground_marker={"color": ELEMENT_COLOR, "size": s["foreground_size"], "opacity": 0.9},
            foreground_name=f"contains {symbol} ({int(present.sum()):,})",
            title=f"contains {symbol}",
        )

    if mode == "nelements":
        counts = pd.to_numeric(materials["nelements"], errors="coerce").to_numpy(dtype=float)
        present = sorted({int(c) for c in counts[np.isfinite(counts)]})
        if not present:
            return ColorLayers(base_marker=grey, base_name="no data", foreground_rows=empty, title="number of elements")
        code_of = {value: i for i, value in enumerate(present)}
        names = [str(v) for v in present]
        colors = [CATEGORY_COLORS[i % len(CATEGORY_COLORS)] for i in range(len(present))]
        codes = np.array([code_of.get(int(c), 0) if np.isfinite(c) else 0 for c in counts])
        title = "number of elements"
        marker = _categorical_marker(codes, names, colors, title, s["point_size"], s["opacity"])
        return ColorLayers(base_marker=marker, base_name=None, foreground_rows=empty, title=title)

    if mode == "crystal_system":
        systems = materials["crystal_system"].astype(object).where(materials["crystal_system"].notna(), None)
        names = list(CRYSTAL_SYSTEMS)
        colors = list(CATEGORY_COLORS[: len(names)])
        codes = np.array([names.index(v) if v in names else len(names) for v in systems])
        if (codes == len(names)).any():
            names.append("unknown")
            colors.append(MISSING_COLOR)
        title = "crystal system"
        marker = _categorical_marker(codes, names, colors, title, s["point_size"], s["opacity"])
        return ColorLayers(base_marker=marker, base_name=None, foreground_rows=empty, title=title)

    if mode == "supercon_label":
        labels = materials["supercon_label"].astype(object).to_numpy() if "supercon_label" in materials else np.full(n, None)
        names = list(SUPERCON_COLORS)
        rows = np.flatnonzero(np.isin(labels, names))
        codes = np.array([names.index(labels[r]) for r in rows])
        title = "SuperCon label"
        marker = _categorical_marker(codes, names, list(SUPERCON_COLORS.values()), title, s["foreground_size"] + 1, 0.95)
        return ColorLayers(
            base_marker=grey,
            base_name="no SuperCon entry",
            foreground_rows=rows,
            foreground_marker=marker,
            foreground_name="SuperCon entry",
            title=title,
        )

    # a property on a continuous scale (mode is one of PROPERTY_MODES here)
    values = pd.to_numeric(materials[mode], errors="coerce").to_numpy(dtype=float) if mode in materials else np.full(n, np.nan)
    rows = np.flatnonzero(np.isfinite(values))
    lo, hi = _robust_range(values, mode)
    title = column_label(mode) if mode != "spacegroup_number" else "space group number"
    colorscale = s["spacegroup_colorscale"] if mode == "spacegroup_number" else s["continuous_colorscale"]
    on_base = 2 * len(rows) >= n  # most materials have a value: colours on the base trace
    marker = {
        # on the base trace every point needs a colour: the missing ones (drawn grey on top) take lo
        "color": (np.where(np.isfinite(values), values, lo) if on_base else values[rows]).astype(np.float32),
        "colorscale": colorscale,
        "cmin": lo,
        "cmax": hi,
        "showscale": True,
        "colorbar": {"title": {"text": title}, **COLORBAR_INSIDE},
        "size": s["point_size"],
        "opacity": s["opacity"],
    }
    if on_base:  # the missing ones grey on top, same size: the coloured point below is hidden
        missing = np.flatnonzero(~np.isfinite(values))
        return ColorLayers(
            base_marker=marker,
            base_name=None,
            foreground_rows=missing,
            foreground_marker=grey,
            foreground_name=f"no data ({len(missing):,})" if len(missing) else None,
            title=title,
        )
    return ColorLayers(
        base_marker=grey,
        base_name=f"no data ({n - len(rows):,})",
        foreground_rows=rows,
        foreground_marker=marker,
        foreground_name=None,
        title=title,
    )


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


#: Radius of a search ring, screen pixels (as the ring markers of :func:`highlight_trace`).
RING_RADIUS_PX = 8


def ring_shapes(coordinates: np.ndarray, rows, name: str = "search") -> list[dict]:
    """Black rings around ``rows`` as layout shapes: circles of :data:`RING_RADIUS_PX` screen
    pixels anchored at the materials' map coordinates, the first with a legend entry ``name``.

    A search then changes only the layout (rings and ranges), no trace: plotly relayouts the
    141k-point map in about 0.05 s (Chromium, 2 cores; :data:`MAP_ASPECT_NOTE`). Shapes do not
    catch the pointer: hover and clicks reach the points.

    Args:
        coordinates: ``(n, 2)`` map coordinates. rows: the ringed rows (may be empty).

    Returns:
        Plotly ``layout.shapes`` entries, one per row.
    """
    r = RING_RADIUS_PX
    return [{"type": "circle", "xref": "x", "yref": "y", "xsizemode": "pixel", "ysizemode": "pixel",
             "xanchor": float(coordinates[row, 0]), "yanchor": float(coordinates[row, 1]),
             "x0": -r, "x1": r, "y0": -r, "y1": r, "line": {"color": HIGHLIGHT_COLOR, "width": 2.5},
             "layer": "above", "name": name, "showlegend": i == 0, "legendgroup": "rings"}
            for i, row in enumerate(np.asarray(rows if rows is not None else [], dtype=np.int64))]


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


def located_traces(coordinates: np.ndarray, points: list[LocatedPoint]) -> list[go.Scattergl]:
    """Two traces for any number of located structures: the rings on their neighbours and the
    stars on themselves, point ``i`` in :func:`located_color` ``(i)``. The ring trace carries
    the neighbours' rows as ``customdata`` (a click opens the material)."""
    coordinates = np.asarray(coordinates)
    rows = [np.asarray(p.neighbor_rows, dtype=np.int64).ravel() for p in points]
    ring_rows = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    ring_colors = [located_color(i) for i, r in enumerate(rows) for _ in range(len(r))]
    rings = go.Scattergl(
        x=np.asarray(coordinates[ring_rows, 0], dtype=np.float32),
        y=np.asarray(coordinates[ring_rows, 1], dtype=np.float32),
        mode="markers",
        name="their nearest materials",
        showlegend=len(ring_rows) > 0,
        hoverinfo="skip",
        customdata=ring_rows.astype(np.int32),
        marker={"symbol": "circle-open", "size": 9, "color": ring_colors, "line": {"width": 1.5}},
        uid="located-neighbours",
    )
    stars = go.Scattergl(
        x=[float(p.x) for p in points],
        y=[float(p.y) for p in points],
        mode="markers",
        name="uploaded structures",
        showlegend=len(points) > 0,
        hovertext=[p.label for p in points],
        hovertemplate="%{hovertext}<br>uploaded structure<extra></extra>",
        marker={
            "symbol": "star",
            "size": 20,
            "color": [located_color(i) for i in range(len(points))],
            "line": {"width": 1.5, "color": "#000000"},
        },
        uid="located",
    )
    return [rings, stars]


def clicked_row(click_data: dict | None) -> int | None:
    """The materials-table row of a clicked point of a map figure, or ``None``.

    The base trace's point number is its row; overlay traces carry rows in ``customdata``;
    points without one (an uploaded structure's star) give ``None``.
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


#: The smallest window a search zooms to (one match), as a fraction of the map's extent.
ZOOM_MIN_SPAN = 0.05
#: Matches spanning more than this fraction of the map's extent are not framed together: the
#: zoom goes to their largest group (polymorphs of one formula often lie far apart).
ZOOM_SPREAD = 0.25
#: Radius of a group of matches, as a fraction of the map's extent (see :func:`zoom_group`).
ZOOM_GROUP_RADIUS = 0.1
MAX_ZOOM_ROWS = 1000


def map_extent(coordinates: np.ndarray) -> float:
    """The size of the map (map units; 1 when empty): the larger side of the box holding the
    finite coordinates, from their 1st to their 99th percentile when there are 100 or more
    (a t-SNE map has a few far-flung points; framing relative to them barely zooms)."""
    xy = np.asarray(coordinates, dtype=np.float64)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        return 1.0
    lo, hi = np.percentile(xy, [1, 99], axis=0) if len(xy) >= 100 else (xy.min(axis=0), xy.max(axis=0))
    return float((hi - lo).max()) or 1.0


def zoom_group(coordinates: np.ndarray, rows) -> np.ndarray:
    """The rows of ``rows`` (in their order) that a search zooms onto.

    All of them (those the map places: finite coordinates) when they lie within
    :data:`ZOOM_SPREAD` of the map's extent; else the largest group: the matches within
    :data:`ZOOM_GROUP_RADIUS` × extent of the match that has most matches that near (the
    first such match on ties), so the zoom shows a region instead of the whole map.
    """
    rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
    xy = np.asarray(coordinates, dtype=np.float64)
    rows = rows[np.isfinite(xy[rows]).all(axis=1)] if rows.size else rows
    if rows.size <= 1:
        return rows
    chosen = xy[rows]
    extent = map_extent(xy)
    if float(np.ptp(chosen, axis=0).max()) <= ZOOM_SPREAD * extent:
        return rows
    rows, chosen = rows[:MAX_ZOOM_ROWS], chosen[:MAX_ZOOM_ROWS]  # a pairwise table of at most 1000²
    near = np.sqrt(((chosen[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)) <= ZOOM_GROUP_RADIUS * extent
    centre = int(np.argmax(near.sum(axis=1)))
    return rows[near[centre]]


def zoom_ranges(coordinates: np.ndarray, rows, pad: float = 0.15, min_span: float | None = None,
                group: bool = True) -> tuple[list[float], list[float]] | None:
    """Axis ranges ``([x0, x1], [y0, y1])`` framing ``rows`` with a margin (map units), or
    ``None`` when no row has a position.

    ``group``: frame only :func:`zoom_group` of the rows (a search's matches spread over the
    map); otherwise all of them. ``min_span`` (default :data:`ZOOM_MIN_SPAN` of
    :func:`map_extent`) keeps a single point from zooming in infinitely; ranges are widened
    to a square window so the map keeps its aspect ratio. Rows without a position (NaN on the
    XRD map) are left out.
    """
    rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
    if rows.size == 0 or len(coordinates) == 0:
        return None
    xy = np.asarray(coordinates, dtype=np.float64)
    rows = zoom_group(xy, rows) if group else rows[np.isfinite(xy[rows]).all(axis=1)]
    if rows.size == 0:
        return None
    min_span = ZOOM_MIN_SPAN * map_extent(xy) if min_span is None else min_span
    chosen = xy[rows]
    lo, hi = chosen.min(axis=0), chosen.max(axis=0)
    centre = (lo + hi) / 2
    span = max(float((hi - lo).max()) * (1 + 2 * pad), min_span)
    half = span / 2
    return [float(centre[0] - half), float(centre[0] + half)], [float(centre[1] - half), float(centre[1] + half)]


def home_ranges(coordinates: np.ndarray, pad: float = 0.03) -> tuple[list[float], list[float]]:
    """The square axis ranges ``([x0, x1], [y0, y1])`` (map units) that frame every placed point
    of ``coordinates`` ``(n, 2)`` (NaN rows, unplaced on the XRD map, ignored) with a margin of
    ``pad`` of the larger side: the map's whole view, as plotly's autorange would show it but
    with one map unit as long across as up (:data:`MAP_ASPECT_NOTE`). ``([-1, 1], [-1, 1])``
    when no point is placed."""
    xy = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    ranges = zoom_ranges(xy, np.arange(len(xy)), pad=pad, min_span=1e-9, group=False)
    return ranges if ranges is not None else ([-1.0, 1.0], [-1.0, 1.0])


def set_ranges(figure: go.Figure, ranges: tuple[list[float], list[float]]) -> go.Figure:
    """Fix ``figure``'s axes to ``ranges`` (no autorange); returns the figure."""
    figure.update_xaxes(range=ranges[0], autorange=False)
    figure.update_yaxes(range=ranges[1], autorange=False)
    return figure


def make_map_figure(
    coordinates: np.ndarray,
    layers: ColorLayers,
    text: np.ndarray | None = None,
    highlight_rows=None,
    highlight_name: str = "search",
    highlight_text: np.ndarray | None = None,
    rings_as_shapes: bool = False,
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
        rings_as_shapes: draw the rings as layout shapes (:func:`ring_shapes`; the highlight
            trace stays, empty), so that a later search only relayouts.
        located: uploaded structures to mark with stars (see :func:`located_traces`); their
            two traces are always present, empty when ``located`` is empty.
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
        highlight_trace(coordinates, None if rings_as_shapes else highlight_rows,
                        text if highlight_text is None else highlight_text, highlight_name),
        *located_traces(coordinates, located or []),
    ]
    figure = go.Figure(data=traces, layout=copy.deepcopy(s["layout"]))
    if rings_as_shapes:
        figure.update_layout(shapes=ring_shapes(coordinates, highlight_rows, highlight_name))
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
        go.Scattergl(
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
        ),
    ]
    if query_xy is not None:
        traces.append(
            go.Scattergl(
                x=[float(query_xy[0])], y=[float(query_xy[1])], mode="markers", name=query_label,
                hovertemplate=f"{query_label}<extra></extra>",
                marker={"symbol": "star", "size": 18, "color": "#e6194b", "line": {"width": 1.5, "color": "#000000"}},
            )
        )
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


def map_update(traces: dict[int, dict] | None = None, replace: dict[int, dict] | None = None,
               layout: dict[str, dict] | None = None, graph: str = "map-graph") -> dict:
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
