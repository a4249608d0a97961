"""How many users a served matmap holds: simulated users replay the app's interactions against
a running server and the latency of each interaction is measured.

Each user loops over what a visitor does, with an exponential think time between actions
(mean ``--think`` seconds): open the map page (Dash's page router, then the map figure),
hover three points (the hover card and the 3D preview, two callbacks each, in parallel),
search a formula, recolour the map, open a material page (router, whose answer holds the
neighbour table, then its structure, XRD and generator-link callbacks in parallel, as the
browser sends them). The latency of an action is its wall time, from the first request
to the last answer. Static files (JavaScript, CSS) are left out: a browser caches them.

For each number of users (``--users``) the run lasts ``--seconds`` and prints actions per
second and the median / 95th percentile / worst latency of each action in seconds, then the
1-minute load average of the machine (the simulated users run on it too). Last line::

    serve load users=<most users whose p95 of every action stayed under --target s> target=<s> load=<…>

The materials it visits are read from the built map on this machine (``ml.service``), so run
it beside the server. Usage (a server already running, e.g. ``./run.sh``)::

    .venv/bin/python bench/serve.py --url http://127.0.0.1:8050 --users 1 5 10 20 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.memory import server_memory_mb, server_pid  # noqa: E402  (after the repository is on sys.path)

ROUTER = ".._pages_content.children..._pages_store.data.."
COLOR_MODES = ("band_gap", "formation_energy_per_atom", "density", "crystal_system", "nelements")


def post(url: str, payload: dict, timeout: float = 120) -> dict:
    """One Dash callback request; the decoded answer (``{}`` for 204: no update)."""
    request = urllib.request.Request(f"{url}/_dash-update-component", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json", "Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
        if response.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        return json.loads(body) if body else {}


def callback(output: str, outputs: list, inputs: list, state: list | None = None, changed: list | None = None) -> dict:
    """A ``_dash-update-component`` payload; ``outputs``, ``inputs``, ``state``: ``(id, property[, value])``."""
    return {
        "output": output,
        "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1 else
                   {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in (state or [])],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"] if changed is None else changed,
    }


def multi(*parts: str) -> str:
    return ".." + "...".join(parts) + ".."


class App:
    """The callbacks of the running app, from its ``/_dash-dependencies``."""

    def __init__(self, url: str):
        self.url = url
        with urllib.request.urlopen(f"{url}/_dash-dependencies", timeout=60) as response:
            self.outputs = [c["output"] for c in json.load(response)]

    def output(self, startswith: str) -> str:
        return next(o for o in self.outputs if o.startswith(startswith))

    def route(self, path: str) -> dict:
        return post(self.url, callback(ROUTER, [("_pages_content", "children"), ("_pages_store", "data")],
                                       [("_pages_location", "pathname", path), ("_pages_location", "search", "")]))

    def draw_map(self, color: str = "nelements", first: bool = True) -> dict:
        """The whole map's scatter update (``first``: the page's first call), else the update recolouring it."""
        return post(self.url, callback(
            multi("map-update.data", "map-legend.children", "map-element-row.style", "map-view-caption.children"),
            [("map-update", "data"), ("map-legend", "children"), ("map-element-row", "style"),
             ("map-view-caption", "children")],
            [("map-color", "value", color), ("map-element", "value", "O"), ("map-view", "value", "crystal"),
             ("map-home", "n_clicks", None)],
            [("map-highlight", "data", "")], changed=[] if first else ["map-color.value"]))

    def hover(self, row: int) -> None:
        hover = [("map-canvas-hovered", "data", row)]  # what assets/map_scatter.js writes on a hover
        jobs = [callback("map-hover.children", [("map-hover", "children")], hover,
                         [("map-color", "value", "nelements"), ("map-element", "value", "O")]),
                callback(multi("map-preview.figure", "map-preview-legend.children", "map-preview-box.style"),
                         [("map-preview", "figure"), ("map-preview-legend", "children"), ("map-preview-box", "style")],
                         hover)]
        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(lambda job: post(self.url, job), jobs))

    def search(self, query: str) -> dict:
        output = self.output("..map-update.data@")
        update_output = output.strip(".").split("...")[0]
        return post(self.url, callback(
            output, [(update_output.rsplit(".", 1)[0], "data"), ("map-search-result", "children"),
                     ("map-highlight", "data")],
            [("map-search", "value", query), ("map-search-button", "n_clicks", 1)], [("map-view", "value", "crystal")]))

    def material(self, material_id: str) -> None:
        """The page (its neighbour table comes with it), then what the browser asks for once the
        table is painted: structure, XRD plot, small map (``pages/material.py``)."""
        self.route(f"/material/{material_id}")
        painted = [("material-painted", "data", material_id)]
        jobs = [
            callback("material-structure.children", [("material-structure", "children")], painted),
            callback("material-xrd-frame.children", [("material-xrd-frame", "children")], painted),
            callback("material-neighbor-map-frame.children", [("material-neighbor-map-frame", "children")],
                     [*painted, ("material-k", "value", 25)], [("material-id", "data", material_id)]),
            callback("material-generate-link.children", [("material-generate-link", "children")],
                     [("material-id", "data", material_id)]),
        ]
        with ThreadPoolExecutor(len(jobs)) as pool:
            list(pool.map(lambda job: post(self.url, job), jobs))


def run_users(app: App, ids: list[str], formulas: list[str], users: int, seconds: float, think: float) -> dict:
    """``users`` simulated users for ``seconds``; action name → list of latencies (s)."""
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    stop = time.monotonic() + seconds
    lock = threading.Lock()

    def timed(name: str, action) -> None:
        started = time.perf_counter()
        try:
            action()
        except Exception as error:  # noqa: BLE001 — a failed request is counted, not fatal
            with lock:
                errors.append(f"{name}: {type(error).__name__}: {error}")
            return
        with lock:
            latencies[name].append(time.perf_counter() - started)

    def user(seed: int) -> None:
        rng = random.Random(seed)
        time.sleep(rng.uniform(0, think))  # staggered arrivals
        while time.monotonic() < stop:
            steps = [
                ("open map", lambda: (app.route("/"), app.draw_map())),
                *[("hover", lambda r=rng.randrange(len(ids)): app.hover(r)) for _ in range(3)],
                ("search", lambda: app.search(rng.choice(formulas))),
                ("recolour", lambda: app.draw_map(rng.choice(COLOR_MODES), first=False)),
                ("open material", lambda: app.material(rng.choice(ids))),
            ]
            for name, action in steps:
                if time.monotonic() >= stop:
                    break
                timed(name, action)
                time.sleep(rng.expovariate(1 / think) if name != "hover" else rng.uniform(0.2, 1.0))

    threads = [threading.Thread(target=user, args=(i,), daemon=True) for i in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(f"  {len(errors)} failed actions" + (f", e.g. {errors[0]}" if errors else ""))
    return latencies


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8050")
    parser.add_argument("--users", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--seconds", type=float, default=60.0, help="duration of each user count")
    parser.add_argument("--think", type=float, default=5.0, help="mean think time between actions, s")
    parser.add_argument("--target", type=float, default=1.0, help="the p95 every action must stay under, s")
    args = parser.parse_args(argv)

    from ml.service import LoadedMap

    app = App(args.url)
    materials = LoadedMap.load().materials
    ids = materials["material_id"].astype(str).tolist()
    formulas = sorted(set(materials["formula"].astype(str)))
    print(f"{args.url}: {len(ids):,} materials; {args.seconds:.0f} s per user count, think time {args.think} s")
    held = 0
    for users in args.users:
        latencies = run_users(app, ids, formulas, users, args.seconds, args.think)
        n = sum(len(v) for v in latencies.values())
        worst_p95 = 0.0
        print(f"users={users}: {n / args.seconds:.1f} actions/s")
        for name, values in sorted(latencies.items()):
            v = np.asarray(values)
            p50, p95 = np.percentile(v, [50, 95])
            worst_p95 = max(worst_p95, p95)
            print(f"  {name:14s} n={len(v):5d}  p50={p50:.3f}  p95={p95:.3f}  max={v.max():.3f}")
        print(f"  load average {os.getloadavg()[0]:.2f}")
        if worst_p95 < args.target:
            held = users
    memory = ""
    pid = server_pid(args.url)
    if pid is not None:  # the server is gunicorn on this machine: what it holds after the load
        rss, pss = server_memory_mb(pid)
        print(f"server memory (master and workers): PSS {pss:.0f} MB (RSS summed {rss:.0f} MB)")
        memory = f" pss_mb={pss:.0f} rss_mb={rss:.0f}"
    print(f"serve load users={held} target={args.target} load={os.getloadavg()[0]:.2f}{memory}")


if __name__ == "__main__":
    main()
