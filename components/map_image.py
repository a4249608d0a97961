"""The whole map as one picture: the grey context behind the small maps.

The neighbour map of a material page (and the latent explorer's "place on map") used to send
30,000 sampled background points with every click (~250 KB per response, issue 12). Instead,
every point of a map view is rasterised once per loaded map into a PNG
(:func:`render_map_png`, a 2D histogram: a few milliseconds for 140k points), served at
``/map-image/<view>.png`` (:func:`register_route`) with a year-long cache lifetime, and a figure
refers to it by URL (:class:`MapImage` → a plotly layout image under the axes). The URL carries
a fingerprint of the map's manifest, so a rebuilt map gets a new URL and a browser never shows a
stale picture. All points are in the picture, none is sampled away; what hovers and clicks are
the neighbours, drawn as a trace on top.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass

import numpy as np

#: Pixels along the longer side of the picture (the small maps are ~400 px wide; 2× for HiDPI).
IMAGE_PIXELS = 800
#: Colour of the context points (the same grey as missing values on the big map).
IMAGE_RGB = (0x9A, 0x9A, 0x9A)


@dataclass(frozen=True)
class MapImage:
    """A rendered map view and where it lies in map coordinates.

    Attributes:
        source: the URL of the PNG.
        x0, x1, y0, y1: the picture's extent in map (t-SNE) units: left, right, bottom, top.
    """

    source: str
    x0: float
    x1: float
    y0: float
    y1: float

    def layout_image(self) -> dict:
        """The plotly ``layout.images`` entry that stretches the picture over its extent, below the traces."""
        return {"source": self.source, "xref": "x", "yref": "y", "x": self.x0, "y": self.y1,
                "sizex": self.x1 - self.x0, "sizey": self.y1 - self.y0, "sizing": "stretch",
                "layer": "below", "opacity": 1.0}


def _finite_rows(coordinates: np.ndarray) -> np.ndarray:
    """The rows of ``coordinates`` ``(n, 2)`` with both values finite, float64."""
    xy = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    return xy[np.isfinite(xy).all(axis=1)]


def image_extent(coordinates: np.ndarray, pad: float = 0.02) -> tuple[float, float, float, float]:
    """``(x0, x1, y0, y1)``: the bounding box of the finite rows of ``coordinates`` ``(n, 2)``,
    padded by ``pad`` of its span on every side.

    Raises:
        ValueError: no finite row.
    """
    xy = _finite_rows(coordinates)
    if not len(xy):
        raise ValueError("no finite coordinates to draw")
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.maximum(high - low, 1e-6)
    low, high = low - pad * span, high + pad * span
    return float(low[0]), float(high[0]), float(low[1]), float(high[1])


def render_map_png(coordinates: np.ndarray, extent: tuple[float, float, float, float],
                   pixels: int = IMAGE_PIXELS) -> bytes:
    """Every finite point of ``coordinates`` ``(n, 2)`` as grey on a transparent PNG.

    Each pixel's opacity grows with the number of points in it (one point: faint; dense
    clusters: opaque), so the picture reads like the scatter it replaces.

    Args:
        coordinates: map coordinates, NaN rows skipped.
        extent: ``(x0, x1, y0, y1)`` of :func:`image_extent`.
        pixels: size of the longer side; the other follows the extent's aspect ratio.

    Returns:
        The PNG file, bytes.
    """
    from PIL import Image

    x0, x1, y0, y1 = extent
    ratio = (y1 - y0) / max(x1 - x0, 1e-12)
    width, height = (pixels, max(int(round(pixels * ratio)), 1)) if ratio <= 1 else (max(int(round(pixels / ratio)), 1), pixels)
    xy = _finite_rows(coordinates)
    counts, _, _ = np.histogram2d(xy[:, 1], xy[:, 0], bins=(height, width), range=((y0, y1), (x0, x1)))
    counts = counts[::-1]  # image rows run from the top (y1) down
    alpha = np.where(counts > 0, 0.35 + 0.65 * np.minimum(np.log1p(counts) / np.log(8.0), 1.0), 0.0)
    rgba = np.zeros((height, width, 4), dtype=np.uint8)
    rgba[..., :3] = IMAGE_RGB
    rgba[..., 3] = np.round(255 * alpha).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def map_fingerprint(manifest: dict) -> str:
    """Twelve hex digits that change whenever the map is rebuilt (a hash of its manifest)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:12]


def map_image(atlas, view: str) -> MapImage:
    """The picture of map ``view`` of the loaded map ``atlas`` (its URL and extent, computed once
    per loaded map; the PNG is rendered on the first request of the URL, then kept).

    Raises:
        ValueError: ``view`` is not a map this build has.
    """
    from components.state import memo

    return memo(atlas, f"map_image:{view}", lambda a: MapImage(
        f"/map-image/{view}.png?v={map_fingerprint(a.manifest)}", *image_extent(a.coordinates_of(view))))


def map_png(atlas, view: str) -> bytes:
    """The PNG of :func:`map_image` (rendered once per loaded map and view)."""
    from components.state import memo

    def render(a) -> bytes:
        image = map_image(a, view)
        return render_map_png(a.coordinates_of(view), (image.x0, image.x1, image.y0, image.y1))

    return memo(atlas, f"map_image_png:{view}", render)


def register_route(server) -> None:
    """Serve ``GET /map-image/<view>.png`` on the Flask ``server``: 200 with the PNG (cached a
    year by the browser: the URL changes with the map), 404 for a view this build lacks, 503
    while the map is missing or still loading."""
    from flask import Response

    def serve(view: str):
        from components.state import map_or_error

        atlas, error = map_or_error()
        if atlas is None:
            return Response(f"no map yet: {error}", status=503, mimetype="text/plain",
                            headers={"Cache-Control": "no-store", "Retry-After": "5"})
        if view not in atlas.views:
            return Response(f"this build has no {view!r} map", status=404, mimetype="text/plain")
        return Response(map_png(atlas, view), mimetype="image/png",
                        headers={"Cache-Control": "public, max-age=31536000, immutable"})

    server.add_url_rule("/map-image/<view>.png", "map_image", serve)
