"""What a background build is still writing, in the app's terms, and when the app should reload.

``./run.sh`` serves the crystal-graph map as soon as it is built while ``python -m ml
finish-build`` adds the XRD map and the latent explorer's voxel store in the background
(:mod:`ml.build_status`). The app says so (:func:`pending`) and reloads what a build rewrote
(:func:`signature`) without a restart (:mod:`components.state`).
"""

from __future__ import annotations

import time

from ml.build_status import VOXEL_STORE, XRD_MAP, current
from ml.mapping.format import MANIFEST, artifact_dir
from ml.settings import get_settings

#: ``pending`` entry of each map view a build adds later.
VIEW_ITEMS = {"xrd": XRD_MAP}


def pending(dataset: str) -> dict | None:
    """The running background build of ``dataset`` (an artifact name), or ``None``.

    Returns:
        ``{"items": [what is still to be written: "xrd map", "voxel store"], "stage": what it
        does now, "log": its log file or None, "minutes": minutes since it started}``.
    """
    status = current(dataset)
    if status is None:
        return None
    started = status.get("started")
    return {"items": list(status.get("pending") or []), "stage": status.get("stage") or "",
            "log": status.get("log"), "minutes": None if started is None else (time.time() - started) / 60}


def note(dataset: str, item: str) -> str | None:
    """One sentence for the user when ``item`` (``"xrd map"``, ``"voxel store"``) is being built
    for ``dataset``, else ``None``."""
    build = pending(dataset)
    if build is None or item not in build["items"]:
        return None
    what = {XRD_MAP: "The XRD-embedding map", VOXEL_STORE: "The latent explorer's voxel store"}.get(item, item)
    since = "" if build["minutes"] is None else f" (started {build['minutes']:.0f} min ago, now: {build['stage']})"
    log = f"; progress in {build['log']}" if build["log"] else ""
    return f"{what} is being built in the background{since}{log}. It appears here when written, without a restart."


def signature(dataset: str, model: str) -> tuple:
    """What changes when a build rewrites what the server loaded: the map's manifest (rewritten
    last by every build) and the published voxel store's ``meta.json`` (``(mtime_ns, size)`` or
    ``None`` each)."""
    from ml.generation.voxel_arrays import published_store_dir  # numpy and pandas only: no torch

    stamps = []
    for path in (artifact_dir(dataset, model) / MANIFEST, published_store_dir(dataset) / "meta.json"):
        try:
            stat = path.stat()
        except FileNotFoundError:
            stamps.append(None)
        else:
            stamps.append((stat.st_mtime_ns, stat.st_size))
    return tuple(stamps)


def served_dataset() -> tuple[str, str]:
    """``(dataset artifact name, model)`` the app serves (``MATMAP_DATASET``, ``MATMAP_MODEL``)."""
    from ml.data.datasets import dataset_name

    settings = get_settings()
    return dataset_name(settings.dataset), settings.model
