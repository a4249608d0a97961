"""The manager of Dash background callbacks (long work that reports progress and can be
cancelled, such as fitting a concept on every material).

Jobs run in their own process (``multiprocess``); results and progress pass through a
diskcache under ``<MATMAP_DATA_DIR>/cache/dash-background`` (see :mod:`ml.settings`).
"""

from __future__ import annotations

from ml.settings import get_settings


def background_manager():
    """A ``dash.DiskcacheManager`` on the app's cache folder (created if needed).

    Raises:
        ImportError: ``diskcache``, ``multiprocess`` or ``psutil`` is not installed.
    """
    import diskcache
    from dash import DiskcacheManager

    folder = get_settings().cache_dir / "dash-background"
    folder.mkdir(parents=True, exist_ok=True)
    return DiskcacheManager(diskcache.Cache(str(folder)))
