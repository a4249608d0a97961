"""The one map the app serves, loaded lazily on first use and then kept for the process.

Pages call :func:`get_map` (or :func:`map_or_error` when they want to show a message instead
of raising). A missing map is not cached: once ``python -m ml build`` has written it, the next
page view loads it without restarting the server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from ml.artifacts import ArtifactError, MapArtifacts
from ml.settings import get_settings

T = TypeVar("T")

_lock = threading.RLock()
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


def require_map() -> MapArtifacts:
    """The map, for callbacks: raises ``PreventUpdate`` (nothing changes on the page) when it
    is missing, since the page already says so."""
    from dash.exceptions import PreventUpdate

    try:
        return get_map()
    except ArtifactError:
        raise PreventUpdate from None


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
        _memo.clear()
    get_settings.cache_clear()


_memo: dict[tuple[int, str], object] = {}

#: Id of the app-wide store of located uploads (session storage; see ``app.py``).
LOCATED_STORE = "located-results"


def memo(atlas: MapArtifacts, name: str, compute: Callable[[MapArtifacts], T]) -> T:
    """``compute(atlas)`` once per loaded map and ``name`` (element lists, hover text …)."""
    key = (id(atlas), name)
    if key not in _memo:
        with _lock:
            if key not in _memo:
                if any(k[0] != id(atlas) for k in _memo):  # one map per process: drop the old
                    _memo.clear()
                _memo[key] = compute(atlas)
    return _memo[key]  # type: ignore[return-value]


def map_elements(atlas: MapArtifacts) -> list[str]:
    """The element symbols present in the map, by atomic number (computed once)."""
    from components.map_figure import available_elements

    return memo(atlas, "elements", lambda a: available_elements(a.materials["elements"]))


def map_hover_text(atlas: MapArtifacts):
    """``"formula · id"`` of every material, ``(n,)`` object array (computed once)."""
    from components.map_figure import hover_text

    return memo(atlas, "hover_text", lambda a: hover_text(a.materials))
