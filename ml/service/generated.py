"""Generated crystals outside the generative model: their CIF file names, a zip of a result, the
pymatgen ``Structure`` of a row for the 3D view, and the results kept on the server between
requests (:func:`save_result` / :func:`load_result`). Part of the app's one door into ``ml``
(:mod:`ml.service`); torch-free, pymatgen imported only by :func:`structure_of`.

A *result* is what :func:`ml.service.explorer.interpolate` and
:func:`ml.service.explorer.sample_around` return.
"""

from __future__ import annotations

import csv
import io
import json
import os
import threading
import uuid
import zipfile
from collections import OrderedDict
from pathlib import Path


def cif_zip(rows: list[dict], stem: str = "matmap_generated") -> bytes:
    """A zip of the decoded structures of ``rows`` (a result's rows): ``<stem>/<index>_<formula>.cif``
    for each row with a structure and ``<stem>/generated.csv`` with every row (no CIF text)."""
    buffer = io.BytesIO()
    columns = [key for key in (rows[0] if rows else {}) if key != "cif"]
    table = io.StringIO()
    writer = csv.DictWriter(table, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            writer.writerow(row)
            if row.get("cif"):
                archive.writestr(f"{stem}/{cif_name(row)}", row["cif"])
        archive.writestr(f"{stem}/generated.csv", table.getvalue())
    return buffer.getvalue()


def cif_name(row: dict) -> str:
    """File name of one row's CIF: ``0007_NaCl.cif`` (``0007.cif`` without a formula)."""
    formula = "".join(ch for ch in str(row.get("formula") or "") if ch.isalnum())
    return f"{int(row['index']):04d}{'_' + formula if formula else ''}.cif"


def structure_of(cif_text: str):
    """The pymatgen ``Structure`` of a result row's ``cif`` (for the 3D view).

    Raises:
        ValueError: the text holds no structure pymatgen can read.
    """
    from pymatgen.core import Structure

    return Structure.from_str(cif_text, fmt="cif")


# --------------------------------------------------------------------------- results kept on the server

#: Result files kept on disk (the oldest are removed); results kept in memory as well.
KEPT_RESULTS, KEPT_IN_MEMORY = 100, 4

_results_lock = threading.Lock()
_memory: OrderedDict[str, dict] = OrderedDict()


def _results_folder() -> Path:
    from ml.settings import get_settings

    folder = get_settings().cache_dir / "explorer"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def save_result(result: dict) -> str:
    """Keep ``result`` (a result of :func:`ml.service.explorer.interpolate` /
    :func:`ml.service.explorer.sample_around`) on the server: a JSON
    file under ``<cache>/explorer`` (the background job that makes it runs in another process than
    the request that reads it), the :data:`KEPT_RESULTS` newest kept.

    Returns:
        Its token (32 hex characters) for :func:`load_result`.

    Raises:
        OSError: the cache folder cannot be written.
    """
    token = uuid.uuid4().hex
    folder = _results_folder()
    tmp = folder / f"{token}.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, folder / f"{token}.json")
    old = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-KEPT_RESULTS]
    for path in old:
        path.unlink(missing_ok=True)
    return token


def load_result(token: str | None) -> dict | None:
    """The result saved under ``token``; ``None`` when unknown or removed (a stale session)."""
    if not token or not isinstance(token, str) or not token.isalnum():
        return None
    with _results_lock:
        if token in _memory:
            _memory.move_to_end(token)
            return _memory[token]
    path = _results_folder() / f"{token}.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    with _results_lock:
        _memory[token] = result
        while len(_memory) > KEPT_IN_MEMORY:
            _memory.popitem(last=False)
    return result
