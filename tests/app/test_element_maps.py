"""The per-element small maps (ml/service/element_maps.py): positions, rasterising, cache."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ml.service import element_maps
from ml.service.element_maps import (
    ElementImageStyle,
    cache_key,
    cached_element_maps,
    density,
    element_image,
    element_rows,
    pixel_bins,
    render_element_maps,
    table_position,
)

STYLE = ElementImageStyle(size=16, margin=0.0)


def small_map() -> tuple[pd.DataFrame, np.ndarray]:
    """Four materials on the corners of a square; Fe only in the top-right one."""
    materials = pd.DataFrame({"material_id": ["a", "b", "c", "d"],
                              "elements": ["Li O", "Na Cl", "Fe O", "O Si"]})
    coordinates = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    return materials, coordinates


@pytest.mark.parametrize(("symbol", "position"), [
    ("H", (1, 1)), ("He", (1, 18)), ("Fe", (4, 8)), ("Ba", (6, 2)), ("Hf", (6, 4)),
    ("La", (9, 3)), ("Lu", (9, 17)), ("Ac", (10, 3)), ("U", (10, 6)),
])
def test_periodic_table_positions(symbol, position):
    assert table_position(symbol) == position


def test_positions_are_unique_and_bad_symbols_refused():
    from pymatgen.core import Element

    positions = [table_position(Element.from_Z(z).symbol) for z in range(1, 104)]
    assert len(set(positions)) == len(positions)
    with pytest.raises(ValueError, match="not an element"):
        table_position("Xx")


def test_element_rows_from_the_elements_column():
    materials, _ = small_map()
    rows = element_rows(materials["elements"])
    assert set(rows) == {"Li", "O", "Na", "Cl", "Fe", "Si"}
    assert list(rows["O"]) == [0, 2, 3]
    assert list(rows["Fe"]) == [2]


def test_density_counts_every_point_with_north_up():
    _, coordinates = small_map()
    edges = pixel_bins(coordinates, STYLE)
    counts = density(coordinates, edges)
    assert counts.shape == (16, 16) and counts.sum() == 4
    assert counts[0, -1] == 1 and counts[-1, 0] == 1  # top right = (10, 10); bottom left = (0, 0)


def test_element_image_colours_only_pixels_with_the_element():
    _, coordinates = small_map()
    edges = pixel_bins(coordinates, STYLE)
    everything = density(coordinates, edges)
    image = element_image(everything, density(coordinates[[2]], edges), STYLE)
    assert image.shape == (16, 16, 4) and image.dtype == np.uint8
    assert tuple(image[0, -1]) == (*STYLE.high, 255)  # the Fe material
    assert tuple(image[-1, 0]) == (*STYLE.background, 255)  # a material without Fe
    assert image[8, 8, 3] == 0  # no material: transparent


def test_render_gives_one_png_per_element_with_counts():
    materials, coordinates = small_map()
    maps = render_element_maps(materials, coordinates, STYLE)
    assert maps.counts == {"Cl": 1, "Fe": 1, "Li": 1, "Na": 1, "O": 3, "Si": 1}
    picture = np.asarray(Image.open(io.BytesIO(maps.images["O"])))
    assert picture.shape == (16, 16, 4)
    coloured = (picture[..., 3] == 255) & (picture[..., :3] != STYLE.background).any(axis=-1)
    assert coloured.sum() == 3


def test_cache_is_reused_and_keyed_by_the_map(tmp_path, monkeypatch):
    materials, coordinates = small_map()
    manifest = {"dataset": "d", "model": "m", "files": {"materials.parquet": "abc"}}
    first = cached_element_maps(materials, coordinates, manifest, tmp_path, STYLE)

    def fail(*_args, **_kwargs):
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(element_maps, "render_element_maps", fail)
    again = cached_element_maps(materials, coordinates, manifest, tmp_path, STYLE)
    assert again.images == first.images and again.counts == first.counts
    changed = {**manifest, "files": {"materials.parquet": "def"}}
    assert cache_key(changed, STYLE) != cache_key(manifest, STYLE)
    assert cache_key(manifest, ElementImageStyle(size=32)) != cache_key(manifest, STYLE)


def test_style_is_validated():
    with pytest.raises(ValueError, match="size"):
        ElementImageStyle(size=4)
    with pytest.raises(ValueError, match="margin"):
        ElementImageStyle(margin=0.6)
