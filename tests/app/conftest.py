"""Fixtures of the app's tests: a small real map, the app pointed at it, and for the browser
tests a live server and headless Chromium.

The map is built once per session by :func:`fixture_map.build_fixture_map`: the real
pipeline (``ml.mapping.build.build_map``) on 300 small mp2024 materials with the committed model,
so locating a CIF runs the real encoder and t-SNE ``transform``.

Browser tests use Debian's Chromium (``/usr/bin/chromium``; ``MATMAP_TEST_CHROMIUM`` to
override), never a browser downloaded by Playwright.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fixture_map import DATASET, MODEL, build_fixture_map

CHROMIUM = os.environ.get("MATMAP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--disable-background-networking"]


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: drives the app in headless Chromium (needs /usr/bin/chromium)")


@pytest.fixture(scope="session")
def map_data_dir(tmp_path_factory) -> Path:
    """A data folder holding the fixture map and the model it was built with."""
    data_dir = tmp_path_factory.mktemp("matmap-data")
    build_fixture_map(data_dir)
    return data_dir


@pytest.fixture(scope="session")
def app_env(map_data_dir):
    """Point the settings (and so the app) at the test map for the whole session."""
    from components import state

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATMAP_DATA_DIR", str(map_data_dir))
        patch.setenv("MATMAP_DATASET", DATASET)
        patch.setenv("MATMAP_MODEL", MODEL)
        state.reset()
        yield map_data_dir
    state.reset()


@pytest.fixture(scope="session")
def atlas(app_env):
    """The loaded test map (:class:`ml.service.LoadedMap`)."""
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


@pytest.fixture(scope="session")
def explorer_source(app_env):
    """The latent explorer served from a tiny generator trained on the fixture map's VAE set
    (``fixture_generator.py``, in the map's data folder); the dataset of its voxel store."""
    from fixture_generator import build_fixture_generator

    from ml.service import explorer

    dataset = build_fixture_generator(app_env)
    explorer.use_source(None, dataset)
    yield dataset
    explorer.use_source()


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
    (the UI must not need a CDN), threw an uncaught JavaScript error or logged an error (Dash
    reports failed callbacks and bad figure patches there)."""
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
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    yield page
    context.close()
    assert not outside, f"the page fetched from outside this machine: {outside}"
    assert not errors, f"JavaScript errors: {errors}"


@pytest.fixture
def table() -> pd.DataFrame:
    """Six materials with the map's columns, some values missing."""
    return pd.DataFrame(
        {
            "material_id": [f"mp-{i}" for i in range(1, 7)],
            "formula": ["LiCoO2", "NaCl", "Cu", "CuO", "SiO2", "YBa2Cu3O7"],
            "elements": ["Co Li O", "Cl Na", "Cu", "Cu O", "O Si", "Ba Cu O Y"],
            "nelements": [3, 2, 1, 2, 2, 4],
            "band_gap": [2.1, 5.0, 0.0, 1.2, np.nan, 0.0],
            "density": [5.0, 2.2, 8.9, 6.3, 2.6, 6.4],
            "formation_energy_per_atom": [-1.8, -2.1, 0.0, -0.8, -3.0, np.nan],
            "total_magnetization": [0.0, 0.0, 0.0, 0.5, 0.0, 1.0],
            "e_above_hull": [0.0, 0.0, 0.0, 0.01, 0.0, np.nan],
            "spacegroup_number": [166, 225, 225, 15, 154, 47],
            "crystal_system": ["trigonal", "cubic", "cubic", "monoclinic", "trigonal", None],
            "supercon_label": ["no SuperCon entry", "non-superconductor", "no SuperCon entry", "doped match",
                               "no SuperCon entry", "superconductor"],
            "x": np.array([0, 1, 2, 3, 4, 5], dtype=np.float32),
            "y": np.array([0, 1, 0, 1, 0, 1], dtype=np.float32),
        }
    )
