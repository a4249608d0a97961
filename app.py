"""matmap: an interactive, self-hostable map of Materials Project crystals.

Run ``./run.sh`` (or ``python app.py [--host HOST] [--port PORT]``) and open
http://127.0.0.1:8050: gunicorn serves ``server`` with ``gunicorn.conf.py`` (workers and
threads for 2 cores, the map loaded once in the master and shared by the workers).
``python app.py --debug`` runs Flask's development server with Dash's dev tools instead.
The app serves the map of ``MATMAP_DATASET`` / ``MATMAP_MODEL`` under ``MATMAP_DATA_DIR``
(see :mod:`ml.settings`); both servers load it in the background at start, and ``/healthz``
answers 200 once it is loaded, 503 before (:func:`components.state.health`). Imported alone
(tests, another WSGI server), the app loads the map on first use.

Pages live in ``pages/`` (one module per route), reusable pieces in ``components/``, every
stylesheet and script in ``assets/``. This module builds the shell only: navbar, shared
stores and the page container; it holds no callbacks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dash
from dash import Dash, dcc, html

from components.background import background_manager
from components.map_image import register_route as register_map_image_route
from components.state import LOCATED_STORE, health

ROOT = Path(__file__).resolve().parent
#: gunicorn's settings for ``./run.sh`` and ``python app.py``.
GUNICORN_CONFIG = ROOT / "gunicorn.conf.py"


def navbar() -> html.Nav:
    """The top bar: the brand and one link per page registered with ``nav`` not false."""
    pages = sorted(
        (page for page in dash.page_registry.values() if page.get("nav", True) and not page.get("path_template")),
        key=lambda page: (page.get("order") is None, page.get("order") or 0, page["name"]),
    )
    return html.Nav(
        className="navbar",
        children=[
            dcc.Link([html.Span("◆", className="navbar__logo"), "matmap"], href="/", className="navbar__brand"),
            html.Div(
                className="navbar__links",
                children=[dcc.Link(page["name"], href=page["relative_path"], className="navbar__link") for page in pages],
            ),
        ],
    )


def create_app() -> Dash:
    """The Dash app with its pages (imported from ``pages/`` by Dash)."""
    app = Dash(
        __name__,
        use_pages=True,
        title="matmap",
        update_title=None,
        serve_locally=True,
        compress=True,  # the map page sends ~5 MB of coordinates and hover text for 140k points
        background_callback_manager=background_manager(),  # long jobs with progress (concept page)
        meta_tags=[{"name": "viewport", "content": "width=device-width, initial-scale=1"}],
    )
    app.layout = html.Div(
        className="app",
        children=[
            navbar(),
            # shared by pages: structures placed on /locate, kept while the tab lives
            dcc.Store(id=LOCATED_STORE, storage_type="session", data=[]),
            html.Main(dash.page_container, className="app__main"),
        ],
    )
    app.server.add_url_rule("/healthz", "healthz", healthz)
    register_map_image_route(app.server)  # the small maps' background picture (components.map_image)
    return app


def healthz():
    """``GET /healthz``: 200 and ``{"status": "ready", "materials": …}`` once the map is
    loaded, 503 and ``{"status": "loading" | "idle" | "failed", …}`` before (load balancers,
    ``docker`` health checks, the tests)."""
    from flask import jsonify

    body, status = health()
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


app = create_app()
server = app.server


def gunicorn_command(host: str = "127.0.0.1", port: int = 8050) -> list[str]:
    """The command line that serves the app in production (as ``./run.sh`` does)."""
    return [sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG), "--bind", f"{host}:{port}", "app:server"]


def main(argv: list[str] | None = None) -> None:
    """``python app.py [--host HOST] [--port PORT] [--debug]``: gunicorn (this process is
    replaced by it), or with ``--debug`` Flask's development server with Dash's dev tools."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve the matmap app (gunicorn; --debug: Flask's development server).")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--debug", action="store_true", help="Flask's development server with Dash dev tools and reloading")
    args = parser.parse_args(argv)
    if not args.debug:
        os.chdir(ROOT)  # gunicorn imports app:server from here
        command = gunicorn_command(args.host, args.port)
        os.execv(command[0], command)
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":  # the reloader's child serves; its parent only watches
        from components.state import start_warm_up

        start_warm_up()
    # no dev-tools version check: it calls a plotly server, and the app must work offline
    app.run(host=args.host, port=args.port, debug=True, dev_tools_disable_version_check=True)


if __name__ == "__main__":
    main()
