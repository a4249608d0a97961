"""What a background build is building, for the app to say so while it serves.

``./run.sh`` serves as soon as the crystal-graph map is built and leaves the rest (the XRD map,
the latent explorer's voxel store) to ``python -m ml finish-build`` in the background. That
process *announces* itself (:func:`announce`): it holds an exclusive ``flock`` on
``<artifacts>/<dataset>/building.lock`` for as long as it runs, and describes itself in
``building.json`` beside it:

| key | meaning |
|---|---|
| ``pid`` | the building process |
| ``started`` | when it started (seconds since the epoch) |
| ``pending`` | what it has still to write: some of :data:`XRD_MAP`, :data:`VOXEL_STORE` |
| ``stage`` | what it is doing now, in words (e.g. ``"XRD map: patterns, embedding, t-SNE"``) |
| ``log`` | the file its progress goes to (``None``: the terminal) |

:func:`current` reads the description only while the lock is held, so a build that was killed
(its lock released by the kernel) is never reported as running, and reading costs one
``open`` and one non-blocking ``flock`` (no process table, no clock).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ml.settings import get_settings

#: ``pending`` entries: the XRD-embedding map of the dataset's map, the latent explorer's voxel store.
XRD_MAP = "xrd map"
VOXEL_STORE = "voxel store"
LOCK = "building.lock"
STATUS = "building.json"


class BuildRunning(RuntimeError):
    """Another process is already building this dataset (:attr:`status` is its description)."""

    def __init__(self, status: dict | None) -> None:
        status = status or {}
        super().__init__(f"a build of this dataset is already running (process {status.get('pid', '?')}; "
                         f"progress in {status.get('log') or 'its terminal'})")
        self.status = status


def _folder(dataset: str, root: Path | None) -> Path:
    return (root or get_settings().artifacts_dir) / dataset


class Announcement:
    """The running build's handle on its description (:func:`announce`)."""

    def __init__(self, path: Path, status: dict) -> None:
        self._path = path
        self.status = status
        self._write()

    def stage(self, text: str) -> None:
        """Say what the build is doing now."""
        self.status["stage"] = text
        self._write()

    def done(self, item: str) -> None:
        """Take ``item`` (one of ``pending``) off the list: it is written."""
        self.status["pending"] = [p for p in self.status["pending"] if p != item]
        self._write()

    def _write(self) -> None:
        tmp = self._path.with_name(self._path.name + ".tmp")
        tmp.write_text(json.dumps(self.status))
        os.replace(tmp, self._path)


@contextmanager
def announce(dataset: str, pending: list[str], log: str | Path | None = None,
             root: Path | None = None) -> Iterator[Announcement]:
    """Hold the build lock of ``dataset`` (a registry name) and describe the build while the block runs.

    Args:
        dataset: the dataset's artifact name (``mp2024``).
        pending: what the build will write (:data:`XRD_MAP`, :data:`VOXEL_STORE`).
        log: where its progress goes, shown by the app.
        root: the artifacts folder (default ``data/artifacts``).

    Raises:
        BuildRunning: another process holds the lock.
    """
    folder = _folder(dataset, root)
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BuildRunning(current(dataset, root)) from None
        status = {"pid": os.getpid(), "started": time.time(), "pending": list(pending), "stage": "starting",
                  "log": None if log is None else str(log)}
        announcement = Announcement(folder / STATUS, status)
        try:
            yield announcement
        finally:
            (folder / STATUS).unlink(missing_ok=True)
    finally:
        handle.close()  # releases the lock


def current(dataset: str, root: Path | None = None) -> dict | None:
    """The description of the build running for ``dataset`` (keys in the module docstring), or
    ``None`` when none runs."""
    folder = _folder(dataset, root)
    try:
        handle = open(folder / LOCK)
    except FileNotFoundError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: a build runs
            try:
                return json.loads((folder / STATUS).read_text())
            except (FileNotFoundError, json.JSONDecodeError):  # between taking the lock and writing
                return {"pid": None, "started": None, "pending": [], "stage": "starting", "log": None}
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
