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

A build that rewrites the served artifacts (the XRD map added by ``python -m ml finish-build``
in the background, the voxel store, a rebuilt map) is picked up without a restart
(:func:`refresh_if_changed`): under gunicorn the master watches (:func:`watch`), reloads and
replaces its workers; elsewhere :func:`get_map` checks every :data:`CHECK_SECONDS` and reloads
in a thread, serving the loaded map meanwhile. While the build runs, pages say what it is
building (:func:`building_note`, :func:`views_being_built`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from ml.service import ArtifactError, LoadedMap, building
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
#: How often (seconds) a process looks for rebuilt artifacts (a ``stat`` of two files).
CHECK_SECONDS = 5.0
#: ``signature``: :func:`ml.service.building.signature` of what is loaded; ``checked``: when it
#: was last compared (``time.monotonic()``); ``reloading``: a reload runs; ``follow_master``:
#: a gunicorn worker, which its master replaces instead of reloading itself.
_freshness: dict = {"signature": None, "checked": 0.0, "reloading": False, "follow_master": False}


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
                signature = building.signature(*building.served_dataset())
                _loaded = LoadedMap.load()
                _freshness.update(signature=signature, checked=time.monotonic())
                _status.update(state="ready", error=None)
    elif not _freshness["follow_master"] and time.monotonic() - _freshness["checked"] > CHECK_SECONDS:
        refresh_if_changed(wait=False)
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
    with _lock:
        signature = building.signature(*building.served_dataset())
        atlas = _prepared(_loaded if _loaded is not None else LoadedMap.load())
        _loaded = atlas
        _freshness.update(signature=signature, checked=time.monotonic())
    return atlas


def _prepared(atlas: LoadedMap) -> LoadedMap:
    """Load now what :func:`warm_up` lists for ``atlas``; returns it."""
    from components.structure_view import preload

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
    return atlas


def _preload_scatter(atlas: LoadedMap) -> None:
    """Encode what the map page's scatter is sent, now (under gunicorn, in the master, shared by
    the workers): both maps' positions, their extents and frames for a search's zoom, and every
    colour mode (about 0.7 s for 141,659 materials)."""
    from components.map_colors import COLOR_MODES

    for view in atlas.views:
        scatter_xy(atlas, view)
        map_geometry(atlas, view)
    for mode in COLOR_MODES:
        scatter_colors(atlas, mode, None)


def refresh_if_changed(wait: bool = True) -> bool:
    """Reload the map and what is derived from it when a build has rewritten the served
    artifacts since they were loaded (:func:`ml.service.building.signature`); the loaded map is
    served until the new one is ready. A missing or half-written map keeps the loaded one.

    Args:
        wait: reload in this thread (``False``: in a daemon thread, returning at once).

    Returns:
        Whether a reload was started (and, with ``wait``, done).
    """
    _freshness["checked"] = time.monotonic()
    if _loaded is None or _freshness["reloading"]:
        return False
    signature = building.signature(*building.served_dataset())
    if signature == _freshness["signature"]:
        return False
    _freshness["reloading"] = True
    if not wait:
        threading.Thread(target=_reload, args=(signature,), name="matmap-reload", daemon=True).start()
        return True
    _reload(signature)
    return True


def _reload(signature: tuple) -> None:
    global _loaded
    try:
        started = time.perf_counter()
        fresh = LoadedMap.load()
        with _lock:
            _memo.clear()
            _loaded = _prepared(fresh)
            _freshness["signature"] = signature
        log.info("reloaded the map after a build changed it (%.1f s): maps %s", time.perf_counter() - started,
                 ", ".join(fresh.views))
    except Exception as error:  # noqa: BLE001 — a half-written or broken build: keep serving what is loaded
        _freshness["signature"] = signature
        log.warning("the rebuilt map could not be loaded, serving the loaded one: %s", error)
    finally:
        _freshness["reloading"] = False


def watch(on_reloaded: Callable[[], None], every: float = CHECK_SECONDS) -> threading.Thread:
    """Look for rebuilt artifacts every ``every`` seconds in a daemon thread; after each reload
    call ``on_reloaded`` (gunicorn's master: replace the workers by forks of the reloaded map)."""

    def loop() -> None:
        while True:
            time.sleep(every)
            try:
                if refresh_if_changed(wait=True):
                    on_reloaded()
            except Exception:  # noqa: BLE001 — the watcher must outlive one bad check
                log.exception("checking for a rebuilt map failed")

    thread = threading.Thread(target=loop, name="matmap-watch", daemon=True)
    thread.start()
    return thread


def follow_master() -> None:
    """In a gunicorn worker: never reload on its own; the master reloads and replaces it."""
    _freshness["follow_master"] = True


def building_note(item: str) -> str | None:
    """A sentence for the page when ``item`` (``"xrd map"``, ``"voxel store"``) of the served
    dataset is being built in the background (:func:`ml.service.building.note`), else ``None``."""
    try:
        return building.note(building.served_dataset()[0], item)
    except (OSError, ValueError):  # an unreadable status file: say nothing rather than fail the page
        return None


def views_being_built() -> list[str]:
    """Map views (keys of ``MAP_VIEWS``) a background build is adding to the served map."""
    try:
        build = building.pending(building.served_dataset()[0])
    except (OSError, ValueError):
        return []
    items = build["items"] if build else []
    return [view for view, item in building.VIEW_ITEMS.items() if item in items]


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
    and, when ready, ``dataset``, ``model``, ``materials``, ``views`` (the maps served:
    ``crystal``, and ``xrd`` once the background build wrote it) and ``load_seconds`` (the warm-up's
    wall time, ``None`` when loaded on first use); when loading ``loading_seconds``; when
    failed ``error`` (the message, with the build command for a missing map). Never loads.
    """
    atlas = _loaded
    if atlas is not None:
        return {"status": "ready", "dataset": atlas.dataset, "model": atlas.model, "materials": len(atlas),
                "views": list(atlas.views), "load_seconds": _status["seconds"]}, 200
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
        _freshness.update(signature=None, checked=0.0, reloading=False, follow_master=False)
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


def map_geometry(atlas: LoadedMap, view: str | None = None) -> tuple[float, tuple]:
    """Map ``view``'s (default: the crystal map) extent (map units,
    :func:`components.map_view.map_extent`) and the scatter's frame (centre ``(2,)`` and half
    side, map units: :func:`components.map_points.scatter_frame`), computed once per map and
    view: a search zooms with them (both walk all points: ~40 ms a search otherwise)."""
    from components.map_points import scatter_frame
    from components.map_view import map_extent
    from ml.service import DEFAULT_VIEW

    view = view or DEFAULT_VIEW

    def compute(a: LoadedMap):
        coordinates = a.coordinates_of(view)
        return map_extent(coordinates), scatter_frame(coordinates)

    return memo(atlas, f"map-geometry:{view}", compute)


def scatter_colors(atlas: LoadedMap, mode: str | None, element: str | None) -> tuple[dict, list]:
    """Colour mode ``mode`` (default :data:`components.map_colors.DEFAULT_MODE`; ``element``
    for the element mode) on the map page's scatter: the colours' payload on the map's shared
    palette (:func:`components.map_points.colors_payload`, :func:`scatter_palette`) and the key's
    children (:func:`components.map_legend.map_legend`), computed once per map, mode and element.

    Raises:
        ValueError: an unknown mode.
    """
    from components.map_colors import DEFAULT_ELEMENT, parse_mode
    from components.map_points import colors_payload, on_palette

    mode = parse_mode(mode)
    element = (element or DEFAULT_ELEMENT) if mode == "element" else None

    def compute(a: LoadedMap):
        colors, legend = _mode_colors(a, mode, element)
        return colors_payload(on_palette(colors, *scatter_palette(a))), legend

    return memo(atlas, f"scatter-colors:{mode}:{element}", compute)


def _mode_colors(atlas: LoadedMap, mode: str, element: str | None):
    """One colour mode's own palette indices (:func:`components.map_points.point_colors`) and its
    key, computed once per map, mode and element (shared by :func:`scatter_palette` and
    :func:`scatter_colors`)."""
    from components.map_colors import color_layers
    from components.map_legend import map_legend
    from components.map_points import point_colors

    def compute(a: LoadedMap):
        layers = color_layers(a.materials, mode, element)
        colors = point_colors(layers, len(a.materials))
        return colors, map_legend(layers, colors)

    return memo(atlas, f"mode-colors:{mode}:{element}", compute)


def scatter_palette(atlas: LoadedMap) -> tuple[list[str], list[float]]:
    """The one palette (colours, sizes) of every colour mode on the map page's scatter
    (:func:`components.map_points.shared_palette`; the element mode with its default element),
    computed once per map."""
    from components.map_colors import COLOR_MODES, DEFAULT_ELEMENT
    from components.map_points import shared_palette

    return memo(atlas, "scatter-palette", lambda a: shared_palette(
        [_mode_colors(a, mode, DEFAULT_ELEMENT if mode == "element" else None)[0] for mode in COLOR_MODES]))
