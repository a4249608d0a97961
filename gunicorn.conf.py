"""gunicorn settings of ``./run.sh`` and ``python app.py``: ``gunicorn --config gunicorn.conf.py app:server``.

Sized for a 2-core machine: 2 worker processes (one per core: a Dash callback is Python and
holds its process's GIL), 4 threads each (a slow callback, such as placing a CIF with the model,
does not hold up the quick ones; the concept forest runs in its own process, a Dash background
callback). Override any setting on the command line (``./run.sh serve --workers 3``) or with
``GUNICORN_CMD_ARGS``.

Loading (see :mod:`components.state`): ``preload_app`` imports the app once in the master;
when the socket is bound, the master loads the map in a background thread while the first
workers already answer (pages say "loading", ``/healthz`` 503). When it is loaded, the master
re-forks its workers (a graceful reload, SIGHUP): the new ones share the loaded arrays
copy-on-write, and ``/healthz`` answers 200.

Builds while serving (``./run.sh`` adds the XRD map and the voxel store in the background): the
master looks for rewritten artifacts every few seconds (:func:`components.state.watch`), reloads
them and re-forks its workers the same way; a worker never reloads on its own.
"""

import os
import signal

# One core per worker: numpy, faiss and torch must not start a thread per core in every worker
# (set before the app and its libraries are imported by preload_app).
for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

bind = "127.0.0.1:8050"
workers = 2
threads = 4  # gunicorn's gthread worker
preload_app = True
timeout = 120  # a worker silent this long is restarted (gthread workers report between requests)
graceful_timeout = 30
keepalive = 5  # behind a reverse proxy that keeps connections open
# gunicorn >= 25.1 opens a control socket at one path per user; two servers on a machine (the
# tests' and a running one) would take it from each other. Older versions ignore the name.
control_socket_disable = True

_forked_while_loading = False


def when_ready(server):
    """Master, socket bound, before the first workers: finish Dash's setup, start loading the map."""
    import app  # imported by preload_app
    from components.state import start_warm_up

    # Dash does its per-process setup on a process's first request (registering the component
    # bundles a page may fetch, and rendering every page's layout once to validate callbacks),
    # and marks it done before it is: a fresh worker's threads, serving a browser's parallel
    # first requests, could find it half done ("not a registered library"). One request here
    # does it once; every worker is forked with it done. The map is marked as loading first, so
    # that the layouts say "loading" instead of loading it, and the loader starts after: sharing
    # the GIL with it, this request took 9 s and held back the first workers.
    loader = start_warm_up(on_done=lambda: _loaded(server), start=False)
    app.server.test_client().get("/healthz")
    if loader is not None:
        loader.start()


def pre_fork(server, worker):
    """Master, before each fork: remember a worker that will not have the map."""
    global _forked_while_loading
    from components.state import is_loading

    _forked_while_loading = _forked_while_loading or is_loading()


def post_fork(server, worker):
    """Worker, just forked: the master reloads rebuilt artifacts and replaces it; it never reloads itself."""
    from components.state import follow_master

    follow_master()


def _loaded(server):
    """Master's loader thread, map loaded (or failed): replace the workers forked meanwhile, then
    watch for builds that rewrite the artifacts (reload, replace the workers again)."""
    from components.state import watch

    _replace_workers(server)
    watch(on_reloaded=lambda: _reload_workers(server))


def _reload_workers(server):
    """Master's watcher thread, artifacts reloaded: replace every worker by a fork of the reloaded map."""
    server.log.info("artifacts rebuilt and reloaded: replacing the workers")
    os.kill(server.pid, signal.SIGHUP)


def _replace_workers(server):
    """Master's loader thread, map loaded (or failed): gracefully replace the workers forked
    before, so that every worker is a fork of the loaded master."""
    if _forked_while_loading:
        server.log.info("map loaded: replacing the workers forked while it loaded")
        os.kill(server.pid, signal.SIGHUP)
