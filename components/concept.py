"""Materials concepts from a few labels: a random forest on the embedding scores every material.

The user marks materials as *positives* of a concept (superconductor, battery cathode …) and
optionally as *negatives*; without negatives, randomly drawn unlabelled materials stand in
for them (positive–unlabelled learning: most materials are not in any given concept). A
random forest (scikit-learn) on the crystal embeddings then gives every material the
probability of the positive class. This is the concept classification of Suzuki et al.,
*Mach. Learn.: Sci. Technol.* 3, 045034 (2022), section "materials concepts" (random forest on
the embeddings, balanced classes), run interactively.

Training materials are scored by their *out-of-bag* probability (only the trees that did not
see them vote), so a random negative is not pushed to 0 because it was trained as one, and
the out-of-bag ROC AUC says how well the forest separates the labels.

The forest itself (scikit-learn) is fitted behind the service (:mod:`ml.service.concepts`); this
module only draws and keeps the page's state. Pure functions only (no Dash): :func:`parse_ids`,
:func:`score_layers`, :func:`candidate_table`, and the compact score encoding kept in the page's
session store.
"""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

from components.map_colors import ColorLayers

from components.map_style import MISSING_COLOR, auto_point_size
from ml.service import NEIGHBOR_PROPERTY_COLUMNS

#: Columns of the candidate table before the property columns.
CANDIDATE_COLUMNS = ["rank", "material_id", "formula", "score"]

#: Ready label sets from the materials table: key -> (label shown, column, value, role).
#: ``superconductor`` rows are direct (undoped) SuperCon matches with Tc > 0 K;
#: ``non-superconductor`` rows were measured with Tc = 0 K (3DSC / SuperCon, see SOURCES.md).
LABEL_SETS: dict[str, tuple[str, str, str, str]] = {
    "superconductors": ("SuperCon superconductors (direct match, Tc > 0 K) as positives",
                        "supercon_label", "superconductor", "positives"),
    "non-superconductors": ("SuperCon non-superconductors (measured Tc = 0 K) as negatives",
                            "supercon_label", "non-superconductor", "negatives"),
}

_ID_SEPARATORS = re.compile(r"[\s,;]+")


def parse_ids(text: str | None, known) -> tuple[list[str], list[str]]:
    """Split pasted text (ids separated by spaces, commas, semicolons or new lines) into
    ``(ids in the map, ids not in it)``, each in first-seen order without repeats;
    ``known`` supports ``in`` (a :class:`~ml.mapping.artifacts.MapArtifacts` or a set)."""
    found, unknown, seen = [], [], set()
    for token in _ID_SEPARATORS.split(text or ""):
        token = token.strip().strip("\"'")
        if not token or token in seen:
            continue
        seen.add(token)
        (found if token in known else unknown).append(token)
    return found, unknown


def label_set_ids(materials: pd.DataFrame, key: str) -> tuple[list[str], str]:
    """``(material ids, role)`` of a ready label set of :data:`LABEL_SETS`; role is
    ``"positives"`` or ``"negatives"``. A map without the set's column gives no ids.

    Raises:
        ValueError: unknown ``key``.
    """
    if key not in LABEL_SETS:
        raise ValueError(f"unknown label set {key!r}; choose one of {', '.join(LABEL_SETS)}")
    _, column, value, role = LABEL_SETS[key]
    if column not in materials:
        return [], role
    chosen = materials["material_id"][materials[column].astype(object).to_numpy() == value]
    return [str(m) for m in chosen], role


#: Materials scoring below this stay grey on the map (most of them, for a narrow concept), so
#: a new result sends the coordinates of the few that matter, not of all 141k.
SCORE_FLOOR = 0.02


def score_layers(scores: np.ndarray, n: int | None = None, title: str = "concept score",
                 floor: float = SCORE_FLOOR) -> ColorLayers:
    """How the map shows concept scores: materials scoring at least ``floor`` coloured by
    their score (0 … 1, "Plasma"), the highest drawn last (on top), the rest grey;
    ``scores`` ``None`` gives the grey map."""
    if scores is None:
        size = auto_point_size(n or 0)
        return ColorLayers(base_marker={"color": MISSING_COLOR, "size": size, "opacity": 0.8}, base_name=None,
                           foreground_rows=np.zeros(0, dtype=np.int64), title=title)
    scores = np.asarray(scores, dtype=np.float32)
    size = auto_point_size(len(scores))
    order = np.argsort(scores, kind="stable")
    order = order[scores[order] >= floor]
    return ColorLayers(
        base_marker={"color": MISSING_COLOR, "size": size, "opacity": 0.8},
        base_name=f"score below {floor:g} ({len(scores) - len(order):,})",
        foreground_rows=order,
        foreground_marker={
            "color": scores[order],
            "colorscale": "Plasma",
            "cmin": 0.0,
            "cmax": 1.0,
            "showscale": True,
            "colorbar": {"title": {"text": title}, "thickness": 14, "len": 0.9},
            "size": size + 0.5,
            "opacity": 0.9,
        },
        foreground_name=None,
        title=title,
    )


#: Up to this many labels of a role, the untrained map rings them boldly (they are what the
#: user is marking); more, or once scores colour the map, the rings become thin and faint so
#: they do not hide it (the 1,904 SuperCon superconductors would cover the map in black).
FEW_LABELS = 30
#: Ring colour of each role.
ROLE_COLORS = {"positives": "#111111", "negatives": "#1f77b4"}


def label_ring_marker(role: str, n_labels: int, n_materials: int, trained: bool) -> dict:
    """The marker of the rings around the training examples of ``role`` on the concept map.

    Args:
        role: ``"positives"`` or ``"negatives"`` (colour :data:`ROLE_COLORS`).
        n_labels: how many materials have that role.
        n_materials: the map's size (the rings fit round its points, :func:`auto_point_size`).
        trained: the map is coloured by scores.

    Returns:
        A plotly ``marker`` dict (open circles): bold (size point + 9 px, 2 px line, opaque)
        for at most :data:`FEW_LABELS` labels on an untrained map; else small, thin and
        semi-transparent (point + 4 px, 1 px line, opacity 0.5; 0.35 above 300 labels).

    Raises:
        ValueError: unknown role.
    """
    if role not in ROLE_COLORS:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLE_COLORS)}")
    point = auto_point_size(n_materials)
    if n_labels <= FEW_LABELS and not trained:
        return {"symbol": "circle-open", "color": ROLE_COLORS[role], "size": point + 9, "opacity": 1.0,
                "line": {"width": 2}}
    return {"symbol": "circle-open", "color": ROLE_COLORS[role], "size": point + 4,
            "opacity": 0.5 if n_labels <= 300 else 0.35, "line": {"width": 1}}


def candidate_table(materials: pd.DataFrame, scores: np.ndarray, labelled_rows, limit: int = 200) -> pd.DataFrame:
    """The ``limit`` highest-scoring materials that are not labelled, best first.

    Returns:
        Table with :data:`CANDIDATE_COLUMNS` (``rank`` from 1, ``score`` in [0, 1]) then the
        property columns of neighbour tables present in ``materials``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    mask = np.ones(len(scores), dtype=bool)
    mask[np.asarray(labelled_rows, dtype=np.int64)] = False
    rows = np.flatnonzero(mask)
    rows = rows[np.argsort(-scores[rows], kind="stable")[:limit]]
    table = materials.iloc[rows]
    out = pd.DataFrame({
        "rank": np.arange(1, len(rows) + 1),
        "material_id": table["material_id"].to_numpy(),
        "formula": table["formula"].to_numpy(),
        "score": scores[rows],
    })
    for column in NEIGHBOR_PROPERTY_COLUMNS:
        if column in table:
            out[column] = table[column].to_numpy()
    return out


def encode_scores(scores: np.ndarray) -> str:
    """Scores as base64 float32 (4 bytes a material) for a JSON store."""
    return base64.b64encode(np.asarray(scores, dtype="<f4").tobytes()).decode("ascii")


def decode_scores(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`encode_scores`.

    Raises:
        ValueError: the text does not hold ``n`` scores (a result of another map).
    """
    scores = np.frombuffer(base64.b64decode(text), dtype="<f4")
    if scores.size != n:
        raise ValueError(f"stored scores are for {scores.size} materials, the map has {n}")
    return scores.astype(np.float32)


ROLES = ("positives", "negatives")


def empty_labels() -> dict:
    """No material labelled: ``{"positives": [], "negatives": []}`` (the store's shape)."""
    return {role: [] for role in ROLES}


def apply_labels(labels: dict | None, role: str, material_ids, toggle: bool = False) -> dict:
    """New labels with ``material_ids`` given ``role`` (``"positives"`` or ``"negatives"``)
    and removed from the other role; with ``toggle``, ids already labelled (in either role)
    are unlabelled instead (a second click on a point). The input is not modified.

    Raises:
        ValueError: unknown role.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    out = {r: list((labels or {}).get(r) or []) for r in ROLES}
    other = ROLES[1 - ROLES.index(role)]
    for material_id in dict.fromkeys(material_ids):  # unique, in order
        labelled = material_id in out[role] or material_id in out[other]
        if toggle and labelled:
            for r in ROLES:
                if material_id in out[r]:
                    out[r].remove(material_id)
            continue
        if material_id in out[other]:
            out[other].remove(material_id)
        if material_id not in out[role]:
            out[role].append(material_id)
    return out


def labels_key(labels: dict | None) -> str:
    """A key of a label set that does not depend on the order of marking (ties a result to
    the labels it was trained on)."""
    import hashlib

    labels = labels or {}
    text = "|".join(",".join(sorted(labels.get(role) or [])) for role in ROLES)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
