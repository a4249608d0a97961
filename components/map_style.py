"""The look shared by every map figure: colours, marker sizes, the layout, the plotly config,
and how the maps keep an equal aspect (:data:`MAP_ASPECT_NOTE`). Every default is deep-copied
before use (:func:`style_defaults`), never mutated."""

from __future__ import annotations

import copy

import numpy as np

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
#: (:data:`COLORBAR_INSIDE`), every figure is given square axis ranges (:func:`components.map_view.home_ranges`,
#: :func:`components.map_view.zoom_ranges`), and the pointer only pans and zooms both axes alike (scroll, the
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
