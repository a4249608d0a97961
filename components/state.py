"""The one map the app serves, loaded lazily on first use and then kept for the process.

Pages call :func:`get_map` (or :func:`map_or_error` when they want to show a message instead
of raising). A missing map is not cached: once ``python -m ml build`` has written it, the next
page view loads it without restarting the server.
"""

from __future__ import annotations

import threading

import numpy as np

from ml.artifacts import ArtifactError, MapArtifacts
from ml.settings import get_settings

_lock = threading.Lock()
_loaded: MapArtifacts | None = None


def get_map() -> MapArtifacts:
    """The map of ``MATMAP_DATASET`` / ``MATMAP_MODEL`` under ``MATMAP_DATA_DIR``, loaded once.

    Raises:
        ArtifactError: the map is missing or incomplete; the message names the build command.
    """
    global _loaded
    if _loaded is None:
        with _lock:  # two first requests at once load it once
            if _loaded is None:
                _loaded = MapArtifacts.load()
    return _loaded


def map_or_error() -> tuple[MapArtifacts | None, str | None]:
    """``(map, None)`` when the map loads, ``(None, message)`` when it does not."""
    try:
        return get_map(), None
    except ArtifactError as error:
        return None, str(error)


def reset() -> None:
    """Forget the loaded map and the settings (tests point ``MATMAP_DATA_DIR`` elsewhere)."""
    global _loaded
    with _lock:
        _loaded = None
    get_settings.cache_clear()
    _element_cache.clear()


_element_cache: dict[int, dict] = {}


def element_presence(atlas: MapArtifacts) -> dict[str, np.ndarray]:
    """``symbol -> (n_materials,) bool`` of the materials containing each element.

    Computed once per loaded map from the space-separated ``elements`` column.
    """
    key = id(atlas)
    cached = _element_cache.get(key)
    if cached is None:
        tokens = atlas.materials["elements"].fillna("").astype(str).str.split()
        rows: dict[str, list[int]] = {}
        for row, symbols in enumerate(tokens):
            for symbol in symbols:
                rows.setdefault(symbol, []).append(row)
        n = len(atlas)
        cached = {}
        for symbol, where in rows.items():
            mask = np.zeros(n, dtype=bool)
            mask[where] = True
            cached[symbol] = mask
        _element_cache.clear()  # one map per process: keep only the current one
        _element_cache[key] = cached
    return cached
