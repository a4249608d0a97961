"""Calling a Dash callback over HTTP, as the browser does, to measure what it sends.

:func:`post_callback` posts to ``/_dash-update-component`` with Flask's test client and
returns the response's size before and after gzip (the app compresses its responses), so
tests and ``bench/app.py`` can bound what a recolour or a click costs on the wire.
:func:`scaled_map` makes a map of any size from a small one, to measure at the full map's
141,659 points without building it.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass

import numpy as np


@dataclass
class CallbackResponse:
    """What one callback request returned.

    Attributes:
        status: HTTP status (204: the callback prevented the update).
        body: the raw JSON body, bytes.
        gzip_bytes: its size once gzip-compressed (level 6, as Flask-Compress), bytes.
    """

    status: int
    body: bytes
    gzip_bytes: int

    @property
    def json(self) -> dict:
        return json.loads(self.body) if self.body else {}

    @property
    def nbytes(self) -> int:
        return len(self.body)


def _id_key(component_id) -> str:
    return json.dumps(component_id, sort_keys=True, separators=(",", ":")) if isinstance(component_id, dict) else component_id


def find_callback(output_id, prop: str) -> dict:
    """The registered callback writing ``output_id.prop`` first (``allow_duplicate`` ones
    are found by their plain id as well)."""
    import dash
    from dash._callback import GLOBAL_CALLBACK_LIST

    key = f"{_id_key(output_id)}.{prop}"
    registered = [{**spec, "output": output} for output, spec in dash.get_app().callback_map.items()]
    for spec in [*GLOBAL_CALLBACK_LIST, *registered]:
        outputs = spec["output"].strip(".").split("...")
        if any(o == key or o.startswith(key + "@") for o in outputs) and not spec.get("clientside_function"):
            return spec
    raise KeyError(f"no server callback writes {key}")


def post_callback(client, output_id, prop: str, values: dict, triggered: list[str] | None = None) -> CallbackResponse:
    """Fire the server callback that writes ``output_id.prop`` through HTTP.

    Args:
        client: ``app.server.test_client()``.
        output_id, prop: one of the callback's outputs (finds the callback).
        values: ``"id.property"`` -> value for its inputs and states (missing ones: ``None``).
        triggered: the ``"id.property"`` that changed (default: none, the initial call).
    """
    spec = find_callback(output_id, prop)
    outputs = []
    for part in spec["output"].strip(".").split("..."):
        component, _, name = part.split("@")[0].rpartition(".")
        outputs.append({"id": json.loads(component) if component.startswith("{") else component, "property": name})

    def items(dependencies):
        return [{"id": d["id"], "property": d["property"],
                 "value": values.get(f"{_id_key(d['id'])}.{d['property']}")} for d in dependencies]

    payload = {
        "output": spec["output"],
        "outputs": outputs if spec["output"].startswith("..") else outputs[0],
        "inputs": items(spec["inputs"]),
        "state": items(spec["state"]),
        "changedPropIds": list(triggered or []),
    }
    response = client.post("/_dash-update-component", json=payload, headers={"Accept-Encoding": "identity"})
    body = response.get_data()
    return CallbackResponse(response.status_code, body, len(gzip.compress(body, 6)))


def scaled_map(atlas, n: int, seed: int = 0):
    """A map of ``n`` materials made of copies of ``atlas``'s rows (ids ``<id>~<copy>``),
    scattered in random blobs over both map views; its embeddings and neighbour index are the
    small map's (neighbour look-ups of the copies return rows of the original materials).

    For measuring payloads at scale only: structures and CIFs of the copies do not exist.
    """
    from ml.service import MAP_VIEWS, LoadedMap

    rng = np.random.default_rng(seed)
    base = atlas.materials
    take = np.arange(n) % len(base)
    table = base.iloc[take].reset_index(drop=True).copy()
    copy_number = np.arange(n) // len(base)
    table["material_id"] = [m if c == 0 else f"{m}~{c}" for m, c in zip(table["material_id"], copy_number)]
    for _, x, y in MAP_VIEWS.values():
        if x in table:
            centres = rng.normal(0, 40, size=(64, 2))
            xy = centres[rng.integers(0, 64, n)] + rng.normal(0, 4, size=(n, 2))
            table[x], table[y] = xy[:, 0].astype(np.float32), xy[:, 1].astype(np.float32)
    scaled = LoadedMap(folder=atlas.folder, manifest=dict(atlas.manifest), materials=table,
                       embeddings=np.asarray(atlas.embeddings)[take])
    scaled.__dict__["index"] = atlas.index
    return scaled
