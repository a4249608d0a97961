"""Fixtures of the app's tests: a small real map, the app pointed at it, and for the browser
tests a live server and headless Chromium.

The map is built once per session by :func:`fixture_map.build_fixture_map` (swap that for
the real ``python -m ml build`` on a tiny slice when it can make one). Until the app's tests
run against a map built with a trained model, ``MapArtifacts.locate`` is replaced by
:func:`fixture_map.fake_locate`, which keeps the real CIF parsing and structure checks; set
``MATMAP_TEST_REAL_MODEL=1`` to use the real one (see ``test_browser.py``).

Browser tests use Debian's Chromium (``/usr/bin/chromium``; ``MATMAP_TEST_CHROMIUM`` to
override), never a browser downloaded by Playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from fixture_map import DATASET, MODEL, REAL_MODEL, build_fixture_map, fake_locate

CHROMIUM = os.environ.get("MATMAP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the app in headless Chromium (needs /usr/bin/chromium)")
    config.addinivalue_line(
        "markers", "real_model: needs a map built with a trained model (MATMAP_TEST_REAL_MODEL=1 and MATMAP_DATA_DIR)"
    )


@pytest.fixture(scope="session")
def map_data_dir(tmp_path_factory) -> Path:
    """A data folder holding the fixture map (or, with ``MATMAP_TEST_REAL_MODEL=1``, the
    ``MATMAP_DATA_DIR`` of a map built with a trained model)."""
    if REAL_MODEL:
        return Path(os.environ["MATMAP_DATA_DIR"])
    data_dir = tmp_path_factory.mktemp("matmap-data")
    build_fixture_map(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def app_env(map_data_dir):
    """Point the settings (and so the app) at the test map for the whole session."""
    from components import state
    from ml.artifacts import MapArtifacts

    with pytest.MonkeyPatch.context() as patch:
        if not REAL_MODEL:
            patch.setenv("MATMAP_DATA_DIR", str(map_data_dir))
            patch.setenv("MATMAP_DATASET", DATASET)
            patch.setenv("MATMAP_MODEL", MODEL)
            patch.setattr(MapArtifacts, "locate", fake_locate)
        state.reset()
        yield map_data_dir
    state.reset()


@pytest.fixture(scope="session")
def atlas(app_env):
    """The loaded test map (:class:`ml.artifacts.MapArtifacts`)."""
    from components.state import get_map

    return get_map()


@pytest.fixture(scope="session")
def dash_app(app_env):
    """The Dash app (importing it registers the pages and their callbacks)."""
    import app

    return app.app


@pytest.fixture(scope="session")
def pages(dash_app):
    """The page modules, as Dash imported them: ``pages["map"]`` …"""
    import sys

    return {name: sys.modules[f"pages.{name}"] for name in ("map", "material", "locate")}


@pytest.fixture
def no_map(monkeypatch, tmp_path, app_env):
    """The app with an empty data folder (no map), restored afterwards."""
    from components import state

    monkeypatch.setenv("MATMAP_DATA_DIR", str(tmp_path))
    state.reset()
    yield tmp_path
    monkeypatch.undo()
    state.reset()


# --------------------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def live_server(dash_app):
    """The app served by werkzeug on a free port of 127.0.0.1 in a thread; its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, dash_app.server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="matmap-test-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture(scope="session")
def browser():
    """Headless Debian Chromium driven by Playwright."""
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).is_file():
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (or set MATMAP_TEST_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser page; fails the test if the page asked for anything off this machine
    (the UI must not need a CDN) or threw an uncaught JavaScript error."""
    context = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    context.set_default_timeout(60_000)
    outside: list[str] = []
    errors: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            request_route.continue_()
        else:
            outside.append(url)
            request_route.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert not outside, f"the page fetched from outside this machine: {outside}"
    assert not errors, f"uncaught JavaScript errors: {errors}"
