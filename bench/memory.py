"""The memory a gunicorn server holds, for the benchmarks (``bench/app.py``, ``bench/serve.py``)."""

from __future__ import annotations

from urllib.parse import urlparse


def server_memory_mb(pid: int) -> tuple[float, float]:
    """``(RSS, PSS)`` of gunicorn's master ``pid`` and its workers summed, MB. The RSS sum counts
    the map's arrays, which the workers share copy-on-write with the master, once per process;
    the PSS (proportional set size) sum counts every page once: the memory the server really holds."""
    import psutil

    parent = psutil.Process(pid)
    processes = [parent, *parent.children(recursive=True)]
    rss = sum(p.memory_info().rss for p in processes)
    pss = sum(p.memory_full_info().pss for p in processes)
    return rss / 2**20, pss / 2**20


def server_pid(url: str) -> int | None:
    """The pid of the gunicorn master that listens on ``url``'s port on this machine, or ``None``
    (another server, another machine, or no permission to see it)."""
    import psutil

    port = urlparse(url).port or 80
    try:
        listening = [c.pid for c in psutil.net_connections(kind="tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid]
    except psutil.AccessDenied:
        return None
    for pid in listening:
        process = psutil.Process(pid)
        parent = process.parent()
        if parent is not None and "gunicorn" in " ".join(parent.cmdline()):
            process = parent  # a worker holding the socket: report the whole server
        if "gunicorn" in " ".join(process.cmdline()):
            return process.pid
    return None
