"""matmap: an interactive, self-hostable map of Materials Project crystals.

Run ``python app.py`` (``--host``, ``--port``, ``--debug``) and open http://127.0.0.1:8050.
The app serves the map of ``MATMAP_DATASET`` / ``MATMAP_MODEL`` under ``MATMAP_DATA_DIR``
(see :mod:`ml.settings`), loaded on first use. ``server`` is the Flask app for WSGI servers
(``gunicorn app:server``) and tests.

Pages live in ``pages/`` (one module per route), reusable pieces in ``components/``, every
stylesheet and script in ``assets/``. This module builds the shell only: navbar, shared
stores and the page container; it holds no callbacks.
"""

from __future__ import annotations

import dash
from dash import Dash, dcc, html

from components.background import background_manager
from components.state import LOCATED_STORE


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
    return app


app = create_app()
server = app.server


def main(argv: list[str] | None = None) -> None:
    """``python app.py [--host HOST] [--port PORT] [--debug]``."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve the matmap app.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8050)
    parser.add_argument("--debug", action="store_true", help="Dash dev tools and reloading")
    args = parser.parse_args(argv)
    # no dev-tools version check: it calls a plotly server, and the app must work offline
    app.run(host=args.host, port=args.port, debug=args.debug, dev_tools_disable_version_check=True)


if __name__ == "__main__":
    main()
