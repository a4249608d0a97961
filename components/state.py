"""The one map the app serves, and its loading.

Pages call :func:`get_map` (or :func:`map_or_error` when they want to show a message instead
of raising). The map is loaded in one of two ways:

- on first use (tests, or ``gunicorn app:server`` without ``gunicorn.conf.py``): the first page
  view loads it. A missing map is not cached: once ``python -m ml build`` has written it, the
  next page view loads it without restarting the server;
- in the background at start (:func:`start_warm_up`, as ``./run.sh`` and ``python app.py``
  do): the map and what is derived from it (:func:`warm_up`) load in a thread while the server
  already answers; meanwhile pages say the map is loading (:class:`MapLoading`) and
  ``/healthz`` answers 503 (:func:`health`).

Under gunicorn the warm-up runs in the master, whose workers are then forked again so that
they share the loaded arrays copy-on-write (``gunicorn.conf.py``). A process forked while
this one was loading (the first workers) keeps saying "loading", since the loader thread does
not exist in it, until the master replaces it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ml.service import ArtifactError, LoadedMap
from ml.settings import get_settings

T = TypeVar("T")
log = logging.getLogger(__name__)

_lock = threading.RLock()  # held while loading
_start_lock = threading.Lock()  # held while a warm-up is being started
_loaded: LoadedMap | None = None
#: Where loading stands. ``state``: ``idle`` (nothing started: the first use loads),
#: ``loading`` (a warm-up runs), ``ready`` or ``failed`` (the last warm-up failed: the next
#: use retries); ``started`` (``time.time()``), ``seconds`` the warm-up took, ``error``.
_status: dict = {"state": "idle", "started": None, "seconds": None, "error": None}


class MapLoading(ArtifactError):
    """The map is being loaded in the background; pages say so and reload when it is ready."""


def get_map() -> LoadedMap:
    """The map of ``MATMAP_DATASET`` / ``MATMAP_MODEL`` under ``MATMAP_DATA_DIR``, loaded once.

    Raises:
        MapLoading: a background warm-up (:func:`start_warm_up`) is still loading it.
        ArtifactError: the map is missing or incomplete; the message names the build command.
    """
    global _loaded
    if _loaded is None:
        if _status["state"] == "loading":
            raise MapLoading(f"The map is loading (started {time.time() - _status['started']:.0f} s ago); "
                             "this page reloads when it is ready.")
        with _lock:  # two first requests at once load it once
            if _loaded is None:
                _loaded = LoadedMap.load()
                _status.update(state="ready", error=None)
    return _loaded


def require_map() -> LoadedMap:
    """The map, for callbacks: raises ``PreventUpdate`` (nothing changes on the page) when it
    is missing or still loading, since the page already says so."""
    from dash.exceptions import PreventUpdate

    try:
        return get_map()
    except ArtifactError:
        raise PreventUpdate from None


def map_or_error() -> tuple[LoadedMap | None, str | None]:
    """``(map, None)`` when the map loads, ``(None, message)`` when it does not (or not yet:
    :func:`is_loading` tells which)."""
    try:
        return get_map(), None
    except ArtifactError as error:
        return None, str(error)


# --------------------------------------------------------------------------- warm-up


def warm_up() -> LoadedMap:
    """Load the map and everything the pages derive from it, now: the faiss index, the
    formula search keys, the model and t-SNE states that place an uploaded CIF
    (:meth:`LoadedMap.preload`), the hover text and element list of
    the map page, the structure viewer's imports (crystal-toolkit, pymatgen's XRD) and the
    crystal generator of ``/generate``.

    Returns:
        The loaded map, which :func:`get_map` returns from then on.

    Raises:
        ArtifactError: the map is missing or incomplete (message with the build command).
    """
    global _loaded
    from components.structure_view import preload

    with _lock:
        atlas = _loaded if _loaded is not None else LoadedMap.load()
        atlas.preload()
        try:
            atlas.preload_locator()
        except (ArtifactError, OSError, ValueError) as error:  # the map works without it; /locate says why
            log.warning("placing CIFs will load on first use: %s", error)
        map_hover_text(atlas)
        map_elements(atlas)
        _preload_scatter(atlas)
        preload()
        _preload_generator()
        _loaded = atlas
    return atlas


def _preload_scatter(atlas: LoadedMap) -> None:
    """Encode what the map page's scatter is sent, now (under gunicorn, in the master, shared by
    the workers): both maps' positions and every colour mode (about 0.7 s for 141,659 materials)."""
    from components.map_colors import COLOR_MODES

    for view in atlas.views:
        scatter_xy(atlas, view)
    for mode in COLOR_MODES:
        scatter_colors(atlas, mode, None)


def _preload_generator() -> None:
    """Load the crystal generator of ``/generate`` now (its page says "loading" until then):
    otherwise Dash's first request, which renders every page once, loads it in the way."""
    from ml.service import explorer

    try:
        explorer.generator()
    except explorer.ExplorerUnavailable as error:  # the page says why, with the command
        log.info("no crystal generator: %s", error)


def start_warm_up(on_done: Callable[[], None] | None = None, start: bool = True) -> threading.Thread | None:
    """Run :func:`warm_up` in a daemon thread (once: ``None`` when one is running or the map
    is loaded); :func:`get_map` raises :class:`MapLoading` until it ends.

    Args:
        on_done: called in that thread when the warm-up ends, loaded or failed (gunicorn's
            master re-forks its workers there).
        start: ``False`` marks the map as loading and returns the thread unstarted: the
            caller starts it after work that must not wait for the map, nor load it, nor
            share the GIL with the loader (gunicorn's master renders every page layout once
            before forking its workers).
    """
    with _start_lock:
        if _status["state"] in ("loading", "ready") or _loaded is not None:
            return None
        _status.update(state="loading", started=time.time(), seconds=None, error=None)
    thread = threading.Thread(target=_warm_up_job, args=(on_done,), name="matmap-warm-up", daemon=True)
    if start:
        thread.start()
    return thread


def _warm_up_job(on_done: Callable[[], None] | None) -> None:
    started = time.perf_counter()
    try:
        warm_up()
    except ArtifactError as error:  # no map yet: pages show how to build it, as without a warm-up
        _status.update(state="failed", error=str(error))
        log.warning("map not loaded: %s", error)
    except Exception as error:  # an unreadable file: say so on /healthz, keep the server up
        _status.update(state="failed", error=f"{type(error).__name__}: {error}")
        log.exception("loading the map failed")
    else:
        _status.update(state="ready", error=None)
        log.info("map loaded in %.1f s", time.perf_counter() - started)
    finally:
        _status["seconds"] = round(time.perf_counter() - started, 3)
        if on_done is not None:
            on_done()


def is_loading() -> bool:
    """Is a background warm-up loading the map (here, or in the process this one was forked from)?"""
    return _status["state"] == "loading" and _loaded is None


def health() -> tuple[dict, int]:
    """``(JSON body, HTTP status)`` of ``/healthz``: 200 once the map is loaded, 503 before.

    The body has ``status`` (``ready``, ``loading``, ``idle``: not loaded yet, ``failed``)
    and, when ready, ``dataset``, ``model``, ``materials`` and ``load_seconds`` (the warm-up's
    wall time, ``None`` when loaded on first use); when loading ``loading_seconds``; when
    failed ``error`` (the message, with the build command for a missing map). Never loads.
    """
    atlas = _loaded
    if atlas is not None:
        return {"status": "ready", "dataset": atlas.dataset, "model": atlas.model, "materials": len(atlas),
                "load_seconds": _status["seconds"]}, 200
    state = _status["state"]
    body: dict = {"status": "idle" if state == "ready" else state}
    if state == "loading":
        body["loading_seconds"] = round(time.time() - _status["started"], 1)
    elif state == "failed":
        body["error"] = _status["error"]
    return body, 503


def reset() -> None:
    """Forget the loaded map, the warm-up and the settings (tests point ``MATMAP_DATA_DIR``
    elsewhere)."""
    global _loaded
    with _lock:
        _loaded = None
        _memo.clear()
        _status.update(state="idle", started=None, seconds=None, error=None)
    get_settings.cache_clear()


def _after_fork_in_child() -> None:
    # the locks may have been held by a thread that does not exist in the child
    global _lock, _start_lock
    _lock, _start_lock = threading.RLock(), threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


# --------------------------------------------------------------------------- derived data

_memo: dict[tuple[int, str], object] = {}

#: Id of the app-wide store of located uploads (session storage; see ``app.py``).
LOCATED_STORE = "located-results"


def memo(atlas: LoadedMap, name: str, compute: Callable[[LoadedMap], T]) -> T:
    """``compute(atlas)`` once per loaded map and ``name`` (element lists, hover text …)."""
    key = (id(atlas), name)
    if key not in _memo:
        with _lock:
            if key not in _memo:
                if any(k[0] != id(atlas) for k in _memo):  # one map per process: drop the old
                    _memo.clear()
                _memo[key] = compute(atlas)
    return _memo[key]  # type: ignore[return-value]


def map_elements(atlas: LoadedMap) -> list[str]:
    """The element symbols present in the map, by atomic number (computed once)."""
    from components.map_colors import available_elements

    return memo(atlas, "elements", lambda a: available_elements(a.materials["elements"]))


def map_hover_text(atlas: LoadedMap):
    """``"formula · id"`` of every material, ``(n,)`` object array (computed once)."""
    from components.map_figure import hover_text

    return memo(atlas, "hover_text", lambda a: hover_text(a.materials))


def scatter_xy(atlas: LoadedMap, view: str | None = None) -> dict:
    """The positions of map ``view`` (default: the crystal map) as the map page's scatter takes
    them (``{"xy": base64 float32 (n, 2)}``, :func:`components.map_points.scatter_points`),
    encoded once per map and view."""
    from components.map_points import encode, scatter_points
    from ml.service import DEFAULT_VIEW

    view = view or DEFAULT_VIEW
    return memo(atlas, f"scatter-xy:{view}", lambda a: {"xy": encode(scatter_points(a.coordinates_of(view)))})


def scatter_colors(atlas: LoadedMap, mode: str | None, element: str | None) -> tuple[dict, list]:
    """Colour mode ``mode`` (default :data:`components.map_colors.DEFAULT_MODE`; ``element``
    for the element mode) on the map page's scatter: the colours' payload
    (:func:`components.map_points.colors_payload`) and the key's children
    (:func:`components.map_legend.map_legend`), computed once per map, mode and element.

    Raises:
        ValueError: an unknown mode.
    """
    from components.map_colors import DEFAULT_ELEMENT, color_layers, parse_mode
    from components.map_legend import map_legend
    from components.map_points import colors_payload, point_colors

    mode = parse_mode(mode)
    element = (element or DEFAULT_ELEMENT) if mode == "element" else None

    def compute(a: LoadedMap):
        layers = color_layers(a.materials, mode, element)
        colors = point_colors(layers, len(a.materials))
        return colors_payload(colors), map_legend(layers, colors)

    return memo(atlas, f"scatter-colors:{mode}:{element}", compute)
