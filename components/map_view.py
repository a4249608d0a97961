"""Which part of a map a figure shows: the whole map in square ranges (:func:`home_ranges`),
or the matches of a search (:func:`zoom_ranges`, :func:`zoom_group`); map units throughout."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

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


def zoom_group(coordinates: np.ndarray, rows, extent: float | None = None) -> np.ndarray:
    """The rows of ``rows`` (in their order) that a search zooms onto.

    All of them (those the map places: finite coordinates) when they lie within
    :data:`ZOOM_SPREAD` of the map's extent; else the largest group: the matches within
    :data:`ZOOM_GROUP_RADIUS` × extent of the match that has most matches that near (the
    first such match on ties), so the zoom shows a region instead of the whole map.
    ``extent``: :func:`map_extent` of ``coordinates`` when the caller has it (it takes ~10 ms
    on 140k points), else computed.
    """
    rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
    xy = np.asarray(coordinates, dtype=np.float64)
    rows = rows[np.isfinite(xy[rows]).all(axis=1)] if rows.size else rows
    if rows.size <= 1:
        return rows
    chosen = xy[rows]
    extent = map_extent(xy) if extent is None else extent
    if float(np.ptp(chosen, axis=0).max()) <= ZOOM_SPREAD * extent:
        return rows
    rows, chosen = rows[:MAX_ZOOM_ROWS], chosen[:MAX_ZOOM_ROWS]  # a pairwise table of at most 1000²
    near = np.sqrt(((chosen[:, None, :] - chosen[None, :, :]) ** 2).sum(-1)) <= ZOOM_GROUP_RADIUS * extent
    centre = int(np.argmax(near.sum(axis=1)))
    return rows[near[centre]]


def zoom_ranges(coordinates: np.ndarray, rows, pad: float = 0.15, min_span: float | None = None,
                group: bool = True, extent: float | None = None) -> tuple[list[float], list[float]] | None:
    """Axis ranges ``([x0, x1], [y0, y1])`` framing ``rows`` with a margin (map units), or
    ``None`` when no row has a position.

    ``group``: frame only :func:`zoom_group` of the rows (a search's matches spread over the
    map); otherwise all of them. ``min_span`` (default :data:`ZOOM_MIN_SPAN` of
    :func:`map_extent`) keeps a single point from zooming in infinitely; ranges are widened
    to a square window so the map keeps its aspect ratio. Rows without a position (NaN on the
    XRD map) are left out. ``extent``: :func:`map_extent` of ``coordinates`` when the caller
    has it, else computed when needed.
    """
    rows = np.asarray(rows if rows is not None else [], dtype=np.int64)
    if rows.size == 0 or len(coordinates) == 0:
        return None
    xy = np.asarray(coordinates, dtype=np.float64)
    if min_span is None and extent is None:
        extent = map_extent(xy)
    rows = zoom_group(xy, rows, extent) if group else rows[np.isfinite(xy[rows]).all(axis=1)]
    if rows.size == 0:
        return None
    min_span = ZOOM_MIN_SPAN * extent if min_span is None else min_span
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
