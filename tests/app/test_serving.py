"""Serving: the map loaded in the background at start, ``/healthz``, and gunicorn as ``./run.sh``
starts it (``gunicorn.conf.py``) on the fixture map, with a page, the browser's parallel first
requests, a background callback, and a clean shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from dash.exceptions import PreventUpdate
from fixture_map import DATASET, MODEL
from test_pages import text_of

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
PAGE_CALLBACK = {  # Dash's pages router: the layout of a path, as the browser asks for it
    "output": ".._pages_content.children..._pages_store.data..",
    "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
    "changedPropIds": ["_pages_location.pathname"],
    "state": [],
}


@pytest.fixture
def fresh_state(dash_app):
    """The app's map forgotten before the test, and loaded again after it (Dash's first-request
    setup done before, since it calls every page's layout, which loads the map)."""
    from components import state

    dash_app.server.test_client().get("/")
    state.reset()
    yield state
    state.reset()
    state.get_map()


def get(client, path: str):
    response = client.get(path)
    return response.status_code, response.get_json()


# --------------------------------------------------------------------------- in process


def test_healthz_answers_503_while_the_map_loads_and_200_once_loaded(dash_app, fresh_state, monkeypatch):
    from components.common import loading_finished, missing_page
    from ml.mapping.artifacts import MapArtifacts

    state = fresh_state
    client = dash_app.server.test_client()
    assert get(client, "/healthz") == (503, {"status": "idle"})  # nothing loaded, nothing loading

    release = threading.Event()
    real_load = MapArtifacts.load.__func__

    def slow_load(cls, *args, **kwargs):
        release.wait(30)
        return real_load(cls, *args, **kwargs)

    monkeypatch.setattr(MapArtifacts, "load", classmethod(slow_load))
    thread = state.start_warm_up()
    assert thread is not None and state.start_warm_up() is None  # once
    started = time.monotonic()
    status, body = get(client, "/healthz")
    assert time.monotonic() - started < 1.0  # answered at once, not after the load
    assert status == 503 and body["status"] == "loading" and body["loading_seconds"] >= 0
    atlas, message = state.map_or_error()
    assert atlas is None and message.startswith("The map is loading")
    page = missing_page(message, None)
    assert "Loading the map" in text_of(page) and "No map to show yet" not in text_of(page)
    with pytest.raises(PreventUpdate):
        loading_finished(1)
    from ml.service import explorer

    generate_page = sys.modules["pages.generate"]

    monkeypatch.setattr(explorer, "loaded", lambda: False)  # the warm-up loads it after the map
    monkeypatch.setattr(explorer, "generator", lambda: pytest.fail("a page loaded the generator"))
    assert "Loading the map" in text_of(generate_page.layout())
    monkeypatch.undo()
    monkeypatch.setattr(MapArtifacts, "load", classmethod(slow_load))

    release.set()
    thread.join(60)
    status, body = get(client, "/healthz")
    assert status == 200, body
    assert body["status"] == "ready" and body["materials"] == 300 and body["dataset"] == DATASET
    assert body["model"] == MODEL and body["load_seconds"] > 0
    assert body["views"] == list(state.require_map().views) and "crystal" in body["views"]
    assert loading_finished(2) is True  # the page reloads itself
    assert len(state.get_map().index) == 300  # loaded with its index
    from ml.mapping import locate  # and with what places a CIF: the first upload loads nothing

    assert locate._model_for.cache_info().currsize >= 1 and locate._tsne_of_version.cache_info().currsize >= 2


def test_a_map_whose_model_is_gone_still_loads_for_browsing(dash_app, fresh_state, monkeypatch):
    from components import state
    from ml.mapping import locate
    from ml.mapping.format import ArtifactError

    def gone(*args):
        raise ArtifactError("no model file")

    monkeypatch.setattr(locate, "preload", gone)
    dash_app.server.test_client().get("/")
    state.start_warm_up().join(60)
    assert get(dash_app.server.test_client(), "/healthz")[0] == 200


def test_healthz_says_why_a_map_cannot_load(dash_app, no_map):
    from components import state
    from components.common import missing_page

    dash_app.server.test_client().get("/")  # Dash's first-request setup
    thread = state.start_warm_up()
    thread.join(60)
    status, body = get(dash_app.server.test_client(), "/healthz")
    assert status == 503 and body["status"] == "failed"
    assert "build it with: python -m ml build" in body["error"]
    atlas, message = state.map_or_error()  # pages show how to build it, as before
    assert atlas is None and "No map to show yet" in text_of(missing_page(message, None))


# --------------------------------------------------------------------------- gunicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, data: dict | None = None, timeout: float = 60) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture(scope="module")
def gunicorn_server(map_data_dir):
    """The app served as ``./run.sh`` serves it (``gunicorn --config gunicorn.conf.py …
    app:server``) on a free port, against the fixture map; ``(base URL, process, statuses
    /healthz answered until ready)``. Stopped with SIGTERM afterwards."""
    port = free_port()
    env = dict(os.environ, MATMAP_DATA_DIR=str(map_data_dir), MATMAP_DATASET=DATASET, MATMAP_MODEL=MODEL)
    log = map_data_dir / f"gunicorn-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(GUNICORN), "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}",
                                    "app:server"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    seen = []
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"gunicorn exited: {log.read_text()}"
            try:
                status, body = fetch(f"{base}/healthz", timeout=10)
            except OSError:  # not listening yet
                time.sleep(0.2)
                continue
            seen.append((status, json.loads(body)))
            if status == 200:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"/healthz never answered 200: {seen[-3:]}\n{log.read_text()}")
        yield base, process, seen, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_gunicorn_serves_healthz_and_a_page(gunicorn_server):
    base, _, seen, _ = gunicorn_server
    assert all(status == 503 and body["status"] in ("loading", "idle") for status, body in seen[:-1]), seen
    status, body = seen[-1]
    assert status == 200 and body["status"] == "ready" and body["materials"] == 300 and body["dataset"] == DATASET
    # the index, then the material page's layout through Dash's pages router, with the map
    status, html = fetch(f"{base}/")
    assert status == 200 and b"_dash-config" in html
    status, raw = fetch(f"{base}/_dash-update-component", {
        **PAGE_CALLBACK,
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/material/mp-172"},
                   {"id": "_pages_location", "property": "search", "value": ""}]})
    assert status == 200, raw[:500]
    page = json.loads(raw)["response"]
    assert page["_pages_store"]["data"]["title"] == "matmap · mp-172"
    assert '"Nd"' in json.dumps(page["_pages_content"]) and "Nearest materials in the embedding" in raw.decode()


def test_fresh_workers_serve_a_browser_s_parallel_first_requests(gunicorn_server):
    """The page and every script it loads, fetched at once from workers that have served
    nothing yet: Dash's first-request setup is done in the master before it forks them (done
    in each worker, its threads would find it half done: "not a registered library")."""
    base, process, _, log = gunicorn_server
    status, html = fetch(f"{base}/")
    paths = ["/", "/_dash-layout", "/_dash-dependencies", *re.findall(r'<script src="([^"]+)"', html.decode())]
    assert status == 200 and len(paths) > 8
    booted = log.read_text().count("Booting worker")
    os.kill(process.pid, signal.SIGHUP)  # gunicorn replaces its workers by fresh forks of the master
    deadline = time.monotonic() + 60
    while log.read_text().count("Booting worker") < booted + 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    with ThreadPoolExecutor(24) as pool:
        statuses = list(pool.map(lambda path: fetch(f"{base}{path}")[0], paths * 3))
    assert not [(path, s) for path, s in zip(paths * 3, statuses) if s != 200]


# --------------------------------------------------------------------------- in a browser


@pytest.mark.browser
def test_background_callbacks_work_under_gunicorn(gunicorn_server, browser, atlas):
    """The concept page's forest runs as a Dash background callback (DiskcacheManager): its
    job process, progress and result pass between gunicorn's workers through the disk cache."""
    base, *_ = gunicorn_server
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.set_default_timeout(90_000)
    errors: list[str] = []
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    try:
        page.goto(f"{base}/concept")
        page.wait_for_function("() => { const gd = document.querySelector('#concept-map .js-plotly-plot');"
                               " return gd && gd._fullData && gd._fullData.length === 4; }")
        page.fill("#concept-paste", " ".join(atlas.materials["material_id"][:5]))
        page.get_by_role("button", name="Add as positives").click()
        page.locator(".concept-labels").get_by_text("5 positives").wait_for()
        page.get_by_role("button", name="Train").click()
        page.locator(".neighbor-panel .ag-center-cols-container .ag-row").first.wait_for()
        page.get_by_text("random unlabelled materials as negatives").wait_for()
    finally:
        context.close()
    assert not errors, errors


def test_gunicorn_stops_cleanly(gunicorn_server):
    """SIGTERM: the master stops its workers and exits with status 0, without a traceback
    (the last test of the module: it stops the module's server)."""
    import psutil

    _, process, _, log = gunicorn_server
    workers = psutil.Process(process.pid).children()
    assert len(workers) >= 2
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0, log.read_text()[-3000:]
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    text = log.read_text()
    assert "Traceback" not in text and "Shutting down: Master" in text
