"""Neighbour lists of one material under every descriptor, side by side.

"Ours" is the map's own list (:meth:`ml.mapping.artifacts.MapArtifacts.neighbors`, Euclidean in the
CMML embedding); every descriptor the map has (``MapArtifacts.descriptor_names()``) adds its
list (``MapArtifacts.descriptor_neighbors(name, material_id, k)``, same columns). The paper's
baselines that are not built get a message with the command that builds them, those that do
not cover the material a message. Each grid is a :class:`components.neighbors.NeighborPanel`
with its own CSV export; the cards are narrow, so their grids show rank, id, formula and
distance, the properties one click away.
"""

from __future__ import annotations

import logging

from dash import html

from components.common import notice
from components.neighbors import NeighborPanel, neighbor_records
from ml.service import descriptor_command
from ml.settings import get_settings

log = logging.getLogger(__name__)

OURS = "ours"
#: Descriptors matmap compares against (keys as in ``ml.descriptors.registry.DESCRIPTORS``) and their
#: names in the UI; ``cmml`` is the map itself ("ours").
DESCRIPTOR_LABELS = {
    "ewald": "Ewald sum matrix",
    "sine_coulomb": "Sine Coulomb matrix",
    "crystalnn": "CrystalNN fingerprint",
    "chgnet": "CHGNet feature",
}
SAME_AS_OURS = {"cmml"}


def descriptor_label(name: str) -> str:
    """The UI name of a descriptor (its key when unknown)."""
    return "Ours (CMML embedding)" if name == OURS else DESCRIPTOR_LABELS.get(name, name.replace("_", " "))


def built_descriptors(atlas) -> list[str]:
    """The descriptors the map can list neighbours for (none when the map predates them)."""
    names = getattr(atlas, "descriptor_names", None)
    if names is None:
        return []
    return [name for name in names() if name not in SAME_AS_OURS]


def neighbor_lists(atlas, material_id: str, k: int) -> list[dict]:
    """Every list for ``material_id``: ours first, then each built descriptor, then the known
    descriptors that are not built.

    Returns:
        Dicts with ``name``, ``label``, ``ok``; ``columns``, ``rows`` (records) and ``scope``
        (the candidates searched, e.g. "among 43,936 materials (mp2024-icsd)") when ok,
        ``message`` (for the user) when not, and ``command`` (the shell command that builds
        it for the served dataset ``MATMAP_DATASET``, :func:`ml.mapping.format.descriptor_command`)
        when the descriptor is not built.

    Raises:
        ml.mapping.format.UnknownMaterialError: ``material_id`` is not in the map.
    """
    table = atlas.neighbors(material_id, k)
    lists = [_ok(OURS, table, scope=f"among all {len(atlas.materials):,} materials of the map")]
    built = built_descriptors(atlas)
    for name in built:
        try:
            info = _exported_info(atlas, name)
            lists.append(_ok(name, atlas.descriptor_neighbors(name, material_id, k),
                             str(info.get("label") or descriptor_label(name)), _scope(info)))
        except (LookupError, ValueError, RuntimeError) as error:  # not covered, unreadable files
            lists.append(_missing(name, str(error)))
        except Exception as error:  # one descriptor must not break the page
            log.exception("neighbours of %s under %s failed", material_id, name)
            lists.append(_missing(name, f"could not be read ({type(error).__name__}: {error})"))
    for name in DESCRIPTOR_LABELS:
        if name not in built:
            command = descriptor_command(get_settings().dataset, name)
            lists.append(_missing(name, "descriptor not built for this map", command))
    return lists


def _exported_info(atlas, name: str) -> dict:
    """The manifest of an exported descriptor (``{}`` when the map cannot say)."""
    info = getattr(atlas, "descriptor_info", None)
    try:
        return dict(info(name)) if info else {}
    except (LookupError, ValueError, RuntimeError):
        return {}


def _scope(info: dict) -> str | None:
    """"among 43,936 materials (mp2024-icsd)": the candidates a baseline's neighbours come from
    (baselines too slow for the whole dataset cover a subset, see ``ml.descriptors``)."""
    n, coverage = info.get("n_materials"), info.get("coverage")
    if n is None:
        return None
    return f"among {int(n):,} materials" + (f" ({coverage})" if coverage else "")


def _ok(name: str, table, label: str | None = None, scope: str | None = None) -> dict:
    return {"name": name, "label": label or descriptor_label(name), "ok": True, "columns": list(table.columns),
            "rows": neighbor_records(table), "scope": scope}


def _missing(name: str, message: str, command: str | None = None) -> dict:
    return {"name": name, "label": descriptor_label(name), "ok": False, "message": message, "command": command}


def compare_view(lists: list[dict], material_id: str, height: str = "360px") -> html.Div:
    """A grid of one card per list: its neighbour grid with a CSV button, or its message."""
    cards = []
    for item in lists:
        if item["ok"]:
            units = None if item["name"] == OURS else {"distance": f"{item['name']} descriptor units"}
            body = NeighborPanel(aio_id=f"compare-{item['name']}", rows=item["rows"], columns=item["columns"],
                                 filename=f"{material_id}_neighbors_{item['name']}.csv", height=height, units=units,
                                 visible=[])
        elif item.get("command"):
            body = notice([f"{item['label']}: {item['message']}. Build it from the repository root, then "
                           "compare again:", html.Pre(html.Code(item["command"]), className="command")], "info")
        else:
            body = notice(f"{item['label']}: {item['message']}.", "info")
        scope = [html.P(f"Neighbours {item['scope']}", className="compare-scope")] if item.get("scope") else []
        cards.append(html.Div([html.H3(item["label"]), *scope, body], className=f"compare-list compare-list--{item['name']}",
                              **{"data-descriptor": item["name"]}))
    return html.Div(cards, className="compare-grid")
