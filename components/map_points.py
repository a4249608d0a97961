"""The map page's points as its WebGL scatter takes them (``assets/map_scatter.js``, which
draws with regl-scatterplot, ``assets/vendor/``).

Plotly's ``scattergl`` recomputes every trace whenever any trace changes: a recolour of the
141,659-point map took 0.65–1.1 s in plotly alone in Chromium on 2 cores (session 10,
``bench/app.py``), over the 0.5 s a materials scientist should wait. regl-scatterplot keeps
the positions on the GPU and colours each point from a palette index, so a recolour is one
array of one byte per point and one redraw (0.2–0.35 s in the same browser, measured with
``/tmp/proto/run2.py`` against the real map). This module builds what the browser needs:

- :func:`scatter_points`: positions in the scatter's normalised device coordinates (the
  map's square home view, :func:`components.map_view.home_ranges`, becomes ``[-1, 1]²``;
  a material the map does not place is parked at :data:`UNPLACED_NDC`, outside every view);
- :func:`point_colors`: one palette index per material, the palette, a marker size per
  palette entry and which entries are drawn on top, derived from
  :func:`components.map_colors.color_layers` so every map of matmap colours a mode alike;
- :func:`ndc_area`: a window of the map (map units) as the scatter's zoom rectangle;
- :func:`scatter_update`: the update a server callback writes to ``map-update``.

Arrays travel as plotly's base64 encoding (``{"dtype", "bdata"}``), which ``matmap.js``
already decodes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import plotly.colors

from components.map_colors import ColorLayers
from components.map_view import home_ranges

#: Where a material without a position on the drawn map (NaN on the XRD map) is put, in the
#: scatter's coordinates: far outside the home view ``[-1, 1]²``, so it is neither drawn in
#: view nor hovered.
UNPLACED_NDC = 50.0

#: Colours a continuous scale is cut into (palette entries; one byte per point indexes them, and
#: the map's shared palette (:func:`shared_palette`) holds two scales, Viridis and Turbo).
CONTINUOUS_STEPS = 100


@dataclass
class PointColors:
    """One colour mode on the scatter.

    Attributes:
        index: ``(n,)`` uint8, each material's entry of ``palette``.
        palette: ``#rrggbb`` colours (at most 256).
        sizes: marker diameter (px) per palette entry, ``len(palette)`` floats.
        top: the palette entries drawn over the others (the coloured subset of the ``element``
            mode, the grey "no data" points of a property); empty when none is.
    """

    index: np.ndarray
    palette: list[str]
    sizes: list[float]
    top: list[int]


def encode(array: np.ndarray) -> dict:
    """``array`` as plotly's base64 array encoding ``{"dtype": "f4", "bdata": …}`` (little-endian).

    Raises:
        ValueError: a dtype the browser side has no typed array for.
    """
    array = np.ascontiguousarray(array)
    codes = {np.dtype("<f4"): "f4", np.dtype("<f8"): "f8", np.dtype("u1"): "u1", np.dtype("<i4"): "i4",
             np.dtype("<u4"): "u4", np.dtype("<i2"): "i2", np.dtype("<u2"): "u2", np.dtype("i1"): "i1"}
    if array.dtype not in codes:
        raise ValueError(f"no browser typed array for dtype {array.dtype}")
    return {"dtype": codes[array.dtype], "bdata": base64.b64encode(array.tobytes()).decode("ascii")}


def scatter_frame(coordinates: np.ndarray) -> tuple[np.ndarray, float]:
    """The centre ``(2,)`` (map units) and half side (map units) of the map's square home view,
    which the scatter shows as ``[-1, 1]²``."""
    (x0, x1), (y0, y1) = home_ranges(coordinates)
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2]), max((x1 - x0) / 2, 1e-12)


def scatter_points(coordinates: np.ndarray) -> np.ndarray:
    """``(n, 2)`` float32 positions in the scatter's coordinates for map ``coordinates``
    ``(n, 2)`` (map units): the home view spans ``[-1, 1]`` on both axes, one unit as long across
    as up; unplaced rows (NaN) at :data:`UNPLACED_NDC`."""
    xy = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    centre, half = scatter_frame(xy)
    ndc = (xy - centre) / half
    ndc[~np.isfinite(ndc).all(axis=1)] = UNPLACED_NDC
    return ndc.astype(np.float32)


def ndc_area(coordinates: np.ndarray, ranges: tuple[list[float], list[float]],
             frame: tuple[np.ndarray, float] | None = None) -> dict:
    """The window ``ranges`` ``([x0, x1], [y0, y1])`` (map units) of the map with ``coordinates``
    as the scatter's zoom rectangle ``{"x", "y", "width", "height"}`` (``x``, ``y``: its lower
    left corner, in the scatter's coordinates). ``frame``: :func:`scatter_frame` of
    ``coordinates`` when the caller has it, else computed (~15 ms on 140k points)."""
    centre, half = scatter_frame(coordinates) if frame is None else frame
    (x0, x1), (y0, y1) = ranges
    return {"x": (x0 - centre[0]) / half, "y": (y0 - centre[1]) / half,
            "width": (x1 - x0) / half, "height": (y1 - y0) / half}


def _hex(color: str) -> str:
    """``#rrggbb`` of a plotly colour string (``#rrggbb`` or ``rgb(r, g, b)``)."""
    if color.startswith("#"):
        return color.lower()
    r, g, b = plotly.colors.unlabel_rgb(color)
    return f"#{int(round(r)):02x}{int(round(g)):02x}{int(round(b)):02x}"


def scale_colors(colorscale, steps: int) -> list[str]:
    """``steps`` ``#rrggbb`` colours evenly along a plotly colour scale (a name such as
    ``"Viridis"`` or a list of ``[position, colour]``)."""
    scale = plotly.colors.get_colorscale(colorscale) if isinstance(colorscale, str) else colorscale
    return [_hex(c) for c in plotly.colors.sample_colorscale(scale, list(np.linspace(0, 1, steps)))]


def marker_palette(marker: dict, count: int) -> tuple[np.ndarray, list[str], float]:
    """How one plotly ``marker`` of :func:`components.map_colors.color_layers` colours its
    ``count`` points: ``(codes (count,) int, palette, size)``.

    A single colour is one entry; categorical codes on a stepped scale (a colour bar with
    ``tickvals``) keep one entry per category; a continuous scale is cut into
    :data:`CONTINUOUS_STEPS` between ``cmin`` and ``cmax`` (values outside are clipped).
    """
    color, size = marker.get("color"), float(marker.get("size", 3.0))
    if isinstance(color, str):
        return np.zeros(count, dtype=np.int64), [_hex(color)], size
    values = np.asarray(color, dtype=np.float64)
    ticks = marker.get("colorbar", {}).get("tickvals")
    if ticks is not None:  # a stepped scale: entry 2i holds category i's colour
        palette = [_hex(marker["colorscale"][2 * i][1]) for i in range(len(ticks))]
        return np.clip(np.rint(values), 0, len(palette) - 1).astype(np.int64), palette, size
    lo, hi = float(marker["cmin"]), float(marker["cmax"])
    scaled = np.clip((np.nan_to_num(values, nan=lo) - lo) / ((hi - lo) or 1.0), 0.0, 1.0)
    codes = np.rint(scaled * (CONTINUOUS_STEPS - 1)).astype(np.int64)
    return codes, scale_colors(marker["colorscale"], CONTINUOUS_STEPS), size


def point_colors(layers: ColorLayers, n: int) -> PointColors:
    """The scatter's colours of ``n`` materials painted by ``layers``: the base marker's
    entries first, then the foreground's (drawn on top, ``top_from``).

    Raises:
        ValueError: the palette would need more than 256 entries.
    """
    codes, palette, size = marker_palette(layers.base_marker, n)
    rows = np.asarray(layers.foreground_rows, dtype=np.int64)
    top_from = len(palette)
    sizes = [size] * len(palette)
    if rows.size:
        fg_codes, fg_palette, fg_size = marker_palette(layers.foreground_marker, len(rows))
        codes = codes.copy()
        codes[rows] = fg_codes + top_from
        palette = palette + fg_palette
        sizes += [fg_size] * len(fg_palette)
    if len(palette) > 256:
        raise ValueError(f"{len(palette)} colours do not fit one byte per point")
    return PointColors(index=codes.astype(np.uint8), palette=palette, sizes=sizes,
                       top=list(range(top_from, len(palette))))


def shared_palette(modes: list[PointColors]) -> tuple[list[str], list[float]]:
    """One palette for every colour mode of a map: each ``(colour, size)`` entry of ``modes``
    once, in the order first seen. The scatter keeps it from the first draw on, so a recolour
    sends only indices: setting a palette in regl-scatterplot costs a second redraw of every
    point (0.15–0.17 s in Chromium on 2 cores, measured with ``plot.subscribe("draw")``).

    Raises:
        ValueError: more than 256 entries (one byte per point).
    """
    entries = list(dict.fromkeys((c, float(s)) for mode in modes for c, s in zip(mode.palette, mode.sizes)))
    if len(entries) > 256:
        raise ValueError(f"{len(entries)} colours do not fit one byte per point")
    return [c for c, _ in entries], [s for _, s in entries]


def on_palette(colors: PointColors, palette: list[str], sizes: list[float]) -> PointColors:
    """``colors`` with its indices moved onto a shared palette (:func:`shared_palette`); an entry
    the palette lacks is appended to a copy of it (the browser then sets the new palette).

    Raises:
        ValueError: the palette would need more than 256 entries.
    """
    palette, sizes = list(palette), list(sizes)
    where = {(c, float(s)): i for i, (c, s) in enumerate(zip(palette, sizes))}
    moved = []
    for key in zip(colors.palette, (float(s) for s in colors.sizes)):
        if key not in where:
            where[key] = len(palette)
            palette.append(key[0])
            sizes.append(key[1])
        moved.append(where[key])
    if len(palette) > 256:
        raise ValueError(f"{len(palette)} colours do not fit one byte per point")
    lookup = np.asarray(moved, dtype=np.uint8)
    return PointColors(index=lookup[colors.index], palette=palette, sizes=sizes, top=[moved[i] for i in colors.top])


def colors_payload(colors: PointColors) -> dict:
    """What ``assets/map_scatter.js`` needs to recolour: ``{"index", "palette", "sizes", "top",
    "palette_key"}`` (``index``: base64 uint8, :func:`encode`; ``palette_key``: a digest of the
    palette and sizes, so the browser sets them only when they change)."""
    key = hashlib.sha1(json.dumps([colors.palette, colors.sizes]).encode()).hexdigest()[:16]
    return {"index": encode(colors.index), "palette": colors.palette, "sizes": colors.sizes,
            "top": [int(t) for t in colors.top], "palette_key": key}


def scatter_update(host: str, *, points: dict | None = None, colors: dict | None = None,
                   select: list[int] | None = None, zoom: dict | str | None = None) -> dict:
    """An update of the scatter drawn in the element ``host``, applied in this order by
    ``matmapScatter.apply`` (``assets/map_scatter.js``).

    Args:
        host: ``id`` of the element that holds the scatter's canvas.
        points: ``{"xy": encode((n, 2) float32)}`` (:func:`scatter_points`): new positions
            (a first draw, another map); needs ``colors``.
        colors: :func:`colors_payload`.
        select: materials-table rows to ring (``[]``: none), or ``None`` to keep the rings.
        zoom: a zoom rectangle (:func:`ndc_area`), ``"home"`` for the whole map, or ``None``
            to keep the view.

    Raises:
        ValueError: ``points`` without ``colors``.
    """
    if points is not None and colors is None:
        raise ValueError("new points need their colours")
    update: dict = {"host": host}
    if points is not None:
        update["points"] = points
    if colors is not None:
        update["colors"] = colors
    if select is not None:
        update["select"] = [int(r) for r in select]
    if zoom is not None:
        update["zoom"] = zoom
    return update
