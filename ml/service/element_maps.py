"""The small map per element of ``/elements`` (Suzuki et al., *Mach. Learn.: Sci. Technol.* 3,
045034 (2022), figure 4: the map once per element, the materials containing it highlighted), as
PNG bytes, and each element's place in the periodic table; the page lays them out
(:mod:`components.element_maps`).

141k points × ~90 elements is far too much for the browser as Scattergl traces, so every
small map is a PNG rasterised here: the map's extent is binned into ``size × size`` pixels
(numpy ``histogram2d``), pixels holding any material are light grey, pixels holding materials
with the element are coloured by how many (log scale, white-red-dark red). Images are cached
on disk under ``<cache>/element-maps/<key>/`` where ``key`` hashes the map's manifest (its
files' checksums) and the image settings, so a rebuilt map never shows stale images.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: Rows 1–7 of the table, then a gap row, then the lanthanides and actinides.
LANTHANIDES = range(57, 72)
ACTINIDES = range(89, 104)


@dataclass(frozen=True)
class ElementImageStyle:
    """How the small maps are drawn.

    Attributes:
        size: width = height of an image, pixels.
        margin: empty border around the map, as a fraction of its extent.
        background: RGB of pixels with materials but none containing the element.
        low, high: RGB of the fewest and the most materials with the element in one pixel.
    """

    size: int = 96
    margin: float = 0.02
    background: tuple[int, int, int] = (208, 213, 219)
    low: tuple[int, int, int] = (247, 140, 120)
    high: tuple[int, int, int] = (140, 10, 20)

    def __post_init__(self) -> None:
        if not 8 <= self.size <= 1024:
            raise ValueError(f"size must be 8 … 1024 pixels, got {self.size}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"margin must be in [0, 0.5), got {self.margin}")


def table_position(symbol: str) -> tuple[int, int]:
    """``(row, column)`` of an element in an 18-column periodic table, both from 1; the
    lanthanides (La–Lu) sit in row 9 and the actinides (Ac–Lr) in row 10, columns 3–17.

    Raises:
        ValueError: not an element symbol.
    """
    from pymatgen.core import Element

    try:
        element = Element(symbol)
    except (ValueError, KeyError):
        raise ValueError(f"{symbol!r} is not an element") from None
    z = element.Z
    if z in LANTHANIDES:
        return 9, 3 + z - LANTHANIDES.start
    if z in ACTINIDES:
        return 10, 3 + z - ACTINIDES.start
    return int(element.row), int(element.group)


def element_rows(elements: pd.Series) -> dict[str, np.ndarray]:
    """Element symbol -> ``(m,)`` int64 rows of the materials containing it, from a
    space-separated ``elements`` column (one pass over the table)."""
    exploded = elements.fillna("").astype(str).str.split().explode()
    exploded = exploded[exploded.notna() & (exploded != "")]
    rows = np.arange(len(elements))[elements.index.get_indexer(exploded.index)] if len(exploded) else np.zeros(0, int)
    groups = pd.Series(rows, index=exploded.to_numpy()).groupby(level=0)
    return {str(symbol): np.unique(group.to_numpy().astype(np.int64)) for symbol, group in groups}


def pixel_bins(coordinates: np.ndarray, style: ElementImageStyle) -> tuple[np.ndarray, np.ndarray]:
    """Bin edges ``(x_edges, y_edges)``, each ``(size + 1,)``: a square window around all
    finite ``coordinates`` (``(n, 2)``, map units) with the style's margin."""
    xy = np.asarray(coordinates, dtype=np.float64)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        lo, hi = np.zeros(2), np.ones(2)
    else:
        lo, hi = xy.min(axis=0), xy.max(axis=0)
    centre, span = (lo + hi) / 2, max(float((hi - lo).max()), 1e-9) * (1 + 2 * style.margin)
    return (np.linspace(centre[0] - span / 2, centre[0] + span / 2, style.size + 1),
            np.linspace(centre[1] - span / 2, centre[1] + span / 2, style.size + 1))


def density(coordinates: np.ndarray, edges: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``(size, size)`` counts of points per pixel, image orientation (row 0 = top = largest y)."""
    xy = np.asarray(coordinates, dtype=np.float64).reshape(-1, 2)
    xy = xy[np.isfinite(xy).all(axis=1)]
    counts, _, _ = np.histogram2d(xy[:, 0], xy[:, 1], bins=edges)
    return counts.T[::-1]


def element_image(all_counts: np.ndarray, element_counts: np.ndarray, style: ElementImageStyle) -> np.ndarray:
    """``(size, size, 4)`` uint8 RGBA: transparent where no material lies, ``background``
    where materials lie but none with the element, ``low`` … ``high`` by the log of the
    element's count in the pixel (relative to its busiest pixel)."""
    image = np.zeros((*all_counts.shape, 4), dtype=np.uint8)
    image[all_counts > 0] = (*style.background, 255)
    present = element_counts > 0
    if present.any():
        level = np.log1p(element_counts[present]) / np.log1p(element_counts.max())
        low, high = np.array(style.low, float), np.array(style.high, float)
        image[present, :3] = np.round(low + (high - low) * level[:, None]).astype(np.uint8)
        image[present, 3] = 255
    return image


def png_bytes(image: np.ndarray) -> bytes:
    """An RGBA array as PNG bytes (Pillow)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGBA").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def cache_key(manifest: dict, style: ElementImageStyle) -> str:
    """A hash of what the images depend on: the map's files (manifest checksums, dataset,
    model) and the style."""
    basis = {"dataset": manifest.get("dataset"), "model": manifest.get("model"),
             "files": manifest.get("files"), "n": manifest.get("n_materials"), "style": asdict(style)}
    return hashlib.sha256(json.dumps(basis, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class ElementMaps:
    """The small maps of one map: symbol -> PNG bytes and symbol -> number of materials."""

    images: dict[str, bytes]
    counts: dict[str, int]


def render_element_maps(materials: pd.DataFrame, coordinates: np.ndarray,
                        style: ElementImageStyle | None = None) -> ElementMaps:
    """One PNG per element present in ``materials`` (``elements`` column, row ``i`` at
    ``coordinates[i]``, ``(n, 2)`` map units)."""
    style = style or ElementImageStyle()
    coordinates = np.asarray(coordinates, dtype=np.float64)
    edges = pixel_bins(coordinates, style)
    everything = density(coordinates, edges)
    images, counts = {}, {}
    for symbol, rows in element_rows(materials["elements"]).items():
        images[symbol] = png_bytes(element_image(everything, density(coordinates[rows], edges), style))
        counts[symbol] = int(rows.size)
    return ElementMaps(images=images, counts=counts)


def cached_element_maps(materials: pd.DataFrame, coordinates: np.ndarray, manifest: dict, cache_dir: Path,
                        style: ElementImageStyle | None = None) -> ElementMaps:
    """:func:`render_element_maps`, read from ``<cache_dir>/element-maps/<cache_key>/`` when
    there, else rendered and written there (``counts.json`` last, so a half-written folder is
    rendered again)."""
    style = style or ElementImageStyle()
    folder = Path(cache_dir) / "element-maps" / cache_key(manifest, style)
    index = folder / "counts.json"
    if index.is_file():
        counts = json.loads(index.read_text())
        try:
            return ElementMaps(images={s: (folder / f"{s}.png").read_bytes() for s in counts}, counts=counts)
        except FileNotFoundError:
            pass  # damaged cache: render again
    maps = render_element_maps(materials, coordinates, style)
    folder.mkdir(parents=True, exist_ok=True)
    for symbol, png in maps.images.items():
        (folder / f"{symbol}.png").write_bytes(png)
    index.write_text(json.dumps(maps.counts, sort_keys=True))
    return maps


def element_maps(atlas, style: ElementImageStyle | None = None) -> ElementMaps:
    """The small maps of a loaded map (:class:`ml.service.LoadedMap`, crystal-graph coordinates),
    from the disk cache under the settings' ``cache_dir`` (:func:`cached_element_maps`)."""
    from ml.settings import get_settings

    return cached_element_maps(atlas.materials, atlas.coordinates, atlas.manifest, get_settings().cache_dir, style)
