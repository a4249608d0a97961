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


def progress_job_options(prefix: str, run_button: str) -> dict:
    """The keyword arguments of a ``@callback`` that runs in the background with a progress bar
    and a cancel button, for a page whose components follow one naming scheme:
    ``<prefix>-progress`` (an ``html.Progress``), ``<prefix>-progress-text``,
    ``<prefix>-progress-box`` (shown while running) and ``<prefix>-cancel``; ``run_button`` is
    disabled while the job runs. The job reports through ``set_progress((done, total, text))``.
    """
    from dash import Input, Output

    return {
        "background": True,
        "progress": [Output(f"{prefix}-progress", "value"), Output(f"{prefix}-progress", "max"),
                     Output(f"{prefix}-progress-text", "children")],
        "progress_default": [0, 1, ""],
        "running": [
            (Output(run_button, "disabled"), True, False),
            (Output(f"{prefix}-cancel", "disabled"), False, True),
            (Output(f"{prefix}-progress-box", "style"), {}, {"display": "none"}),
        ],
        "cancel": [Input(f"{prefix}-cancel", "n_clicks")],
        "interval": 500,
    }
