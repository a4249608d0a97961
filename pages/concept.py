"""``/concept``: learn a materials concept from a few examples and rank every material by it.

The user marks positives (click a point, lasso or box selection on the map, pasted ids, or a
ready label set such as the SuperCon superconductors) and optionally negatives; a random
forest on the embeddings (:func:`ml.service.concepts.concept_scores`) runs as a Dash background
callback with progress and a cancel button, the map is coloured by the score and the best
unlabelled candidates are listed. Labels and the result live in session stores; a result is
dropped as soon as the labels it was trained on change.
"""

from __future__ import annotations

import time

import dash
import numpy as np
from dash import Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from components.background import progress_job_options
from components.common import map_update_stores, missing_page, notice, page_link, register_map_updates
from components.concept import (
    CANDIDATE_COLUMNS,
    LABEL_SETS,
    apply_labels,
    candidate_table,
    decode_scores,
    empty_labels,
    encode_scores,
    label_ring_marker,
    label_set_ids,
    labels_key,
    parse_ids,
    score_layers,
)
from components.map_figure import (
    BASE,
    FOREGROUND,
    HIGHLIGHT,
    base_trace,
    clicked_row,
    foreground_trace,
    highlight_trace,
    make_map_figure,
    map_update,
    trace_json,
)
from components.map_style import GRAPH_CONFIG as MAP_GRAPH_CONFIG
from components.neighbors import NeighborPanel, neighbor_records
from components.state import get_map, map_hover_text, map_or_error, require_map
from ml.service.concepts import ConceptConfig, ConceptError, concept_scores, label_rows, random_negative_count

dash.register_page(__name__, path="/concept", name="Concept", title="matmap · concept search", order=2)

#: Index of the negatives' ring trace (after the map figure's traces).
NEGATIVES = HIGHLIGHT + 1
CANDIDATES_ID = "concept-candidates"
N_CANDIDATES = 200
MAX_LISTED = 12
#: The map's config (:data:`components.map_style.GRAPH_CONFIG`, no box zoom) with the lasso and
#: box selection back: here they mark materials.
GRAPH_CONFIG = {**MAP_GRAPH_CONFIG, "modeBarButtonsToRemove": ["zoom2d", "autoScale2d"],
                "toImageButtonOptions": {"filename": "matmap-concept", "scale": 2}}
CONFIG = ConceptConfig()


def layout(**_):
    """Controls on the left; the map and the candidate table on the right."""
    atlas, error = map_or_error()
    if atlas is None:
        return missing_page(error, _page())
    return _page()


def _page():
    return html.Div(
        className="concept-page",
        children=[
            html.Aside(className="sidebar concept-sidebar", children=_controls()),
            html.Div(
                className="concept-main",
                children=[
                    html.Section(
                        className="card concept-map-card",
                        children=dcc.Loading(
                            dcc.Graph(id="concept-map", config=GRAPH_CONFIG, className="concept-map"),
                            type="circle", delay_show=300,
                        ),
                    ),
                    html.Section(
                        className="card",
                        children=[
                            html.H2("Best candidates not labelled"),
                            html.Div(id="concept-summary", className="concept-summary",
                                     children=html.P("Train the concept to rank the materials.", className="muted")),
                            NeighborPanel(CANDIDATES_ID, columns=CANDIDATE_COLUMNS, filename="concept_candidates.csv",
                                          height="420px"),
                        ],
                    ),
                ],
            ),
            dcc.Store(id="concept-labels", storage_type="session", data=empty_labels()),
            dcc.Store(id="concept-result", storage_type="session"),
            dcc.Store(id="concept-map-drawn", data=False),  # has this page's map got its points?
            *map_update_stores("concept-map"),  # partial updates, applied by plotly in the browser
        ],
    )


def _controls() -> list:
    return [
        html.H1("Concept search", className="sidebar__title"),
        html.P("Mark a few materials that share a concept (superconductors, battery cathodes …). A random forest "
               "on the crystal embeddings learns it and scores every material of the map.", className="muted"),
        html.Label("Clicks and selections on the map mark", className="field-label"),
        dcc.RadioItems(id="concept-role", options=[{"label": " positives", "value": "positives"},
                                                   {"label": " negatives", "value": "negatives"}],
                       value="positives", inline=True, className="concept-role", inputClassName="concept-role__input"),
        html.P("Click a point to mark it (click again to unmark); the lasso and box tools of the map's toolbar "
               "mark every point they enclose. Click “positives” or “negatives” in the map's legend to hide "
               "their rings.", className="hint"),
        html.Label("Paste material ids", htmlFor="concept-paste", className="field-label"),
        dcc.Textarea(id="concept-paste", placeholder="mp-22601 mp-22526, mp-541449 …", className="concept-paste"),
        html.Div(className="button-row", children=[
            html.Button("Add as positives", id="concept-add-positives", className="button", n_clicks=0),
            html.Button("Add as negatives", id="concept-add-negatives", className="button button--secondary", n_clicks=0),
        ]),
        html.Label("Ready label set", htmlFor="concept-label-set", className="field-label"),
        html.Div(className="search-row", children=[
            dcc.Dropdown(id="concept-label-set", options=[{"label": v[0], "value": k} for k, v in LABEL_SETS.items()],
                         value="superconductors", clearable=False, searchable=False, className="concept-label-set"),
            html.Button("Load", id="concept-load-set", className="button button--secondary", n_clicks=0),
        ]),
        html.Div(id="concept-label-message"),
        html.Div(id="concept-labels-view", className="concept-labels", children=labels_view(empty_labels())),
        html.Div(className="button-row", children=[
            html.Button("Train", id="concept-train", className="button", n_clicks=0),
            html.Button("Cancel", id="concept-cancel", className="button button--secondary", n_clicks=0, disabled=True),
            html.Button("Clear labels", id="concept-clear", className="button button--secondary", n_clicks=0),
        ]),
        html.Div(id="concept-progress-box", className="concept-progress", style={"display": "none"}, children=[
            html.Progress(id="concept-progress", max=1, value=0, className="concept-progress__bar"),
            html.Span(id="concept-progress-text", className="muted"),
        ]),
        html.Div(id="concept-message", role="status"),
    ]


def labels_view(labels: dict, n_materials: int | None = None):
    """Counts and the first ids of each role, and what stands in for missing negatives."""
    labels = labels or empty_labels()
    blocks = []
    for role in ("positives", "negatives"):
        ids = labels.get(role) or []
        more = f" (first {MAX_LISTED})" if len(ids) > MAX_LISTED else ""
        blocks.append(html.Div(className=f"concept-labels__role concept-labels__role--{role}", children=[
            html.Strong(f"{len(ids):,} {role}"), html.Span(more, className="muted"),
            html.Div([page_link(mid) for mid in ids[:MAX_LISTED]], className="concept-labels__ids"),
        ]))
    if not labels.get("negatives"):
        n_pos = len(labels.get("positives") or [])
        n_neg = random_negative_count(n_pos, n_materials, CONFIG) if n_pos and n_materials else None
        text = ("No negatives: random unlabelled materials will serve as negatives"
                + (f" ({n_neg:,} of them)." if n_neg else "."))
        blocks.append(html.Div(notice(text, "info"), className="concept-random-note"))
    return blocks


def selected_ids(atlas, data: dict | None) -> list[str]:
    """The material ids of the points of a click or a lasso/box selection on the map."""
    ids = atlas.materials["material_id"]
    out = []
    for point in (data or {}).get("points") or []:
        row = clicked_row({"points": [point]})
        if row is not None and 0 <= row < len(ids):
            out.append(str(ids.iat[row]))
    return list(dict.fromkeys(out))


def _label_rows(atlas, labels: dict, role: str) -> np.ndarray:
    return label_rows(atlas, (labels or {}).get(role))


@callback(
    Output("concept-labels", "data"),
    Output("concept-label-message", "children"),
    Output("concept-paste", "value"),
    Input("concept-map", "clickData"),
    Input("concept-map", "selectedData"),
    Input("concept-add-positives", "n_clicks"),
    Input("concept-add-negatives", "n_clicks"),
    Input("concept-load-set", "n_clicks"),
    Input("concept-clear", "n_clicks"),
    State("concept-role", "value"),
    State("concept-paste", "value"),
    State("concept-label-set", "value"),
    State("concept-labels", "data"),
    prevent_initial_call=True,
)
def change_labels(click, selection, _pos, _neg, _load, _clear, role, pasted, label_set, labels):
    """Every way of marking materials: click (toggles), selection, pasted ids, label sets, clear."""
    atlas = require_map()
    trigger = ctx.triggered_id
    if trigger == "concept-clear":
        return empty_labels(), None, no_update
    if trigger == "concept-map":
        prop = ctx.triggered[0]["prop_id"].split(".")[-1]
        ids = selected_ids(atlas, click if prop == "clickData" else selection)
        if not ids:
            raise PreventUpdate
        return apply_labels(labels, role, ids, toggle=prop == "clickData"), None, no_update
    if trigger == "concept-load-set":
        ids, set_role = label_set_ids(atlas.materials, label_set)
        if not ids:
            return no_update, notice(f"This map has no materials in the set {LABEL_SETS[label_set][0]!r}.", "warning"), no_update
        return apply_labels(labels, set_role, ids), notice(f"Added {len(ids):,} {set_role}.", "info"), no_update
    # pasted ids
    target = "positives" if trigger == "concept-add-positives" else "negatives"
    found, unknown = parse_ids(pasted, atlas)
    if not found and not unknown:
        return no_update, notice("Paste material ids first (separated by spaces, commas or new lines).", "warning"), no_update
    message = None
    if unknown:
        plural = len(unknown) > 1
        what = f"{len(unknown)} id{'s are' if plural else ' is'} not in the map and {'were' if plural else 'was'} left out: "
        message = notice([what, html.Code(", ".join(unknown))], "warning")
    return apply_labels(labels, target, found), message, ("" if not unknown else " ".join(unknown))


@callback(
    Output("concept-result", "data", allow_duplicate=True),
    Output("concept-labels-view", "children"),
    Input("concept-labels", "data"),
    State("concept-result", "data"),
    prevent_initial_call="initial_duplicate",  # the first call shows the labels kept in the session
)
def labels_changed(labels, result):
    """Show the labels; forget a result trained on other labels."""
    atlas = require_map()
    stale = result is not None and result.get("key") != labels_key(labels)
    return (None if stale else no_update), labels_view(labels, len(atlas))


@callback(
    Output("concept-map", "figure"),
    Output("concept-map-update", "data"),
    Output(NeighborPanel.ids.grid(CANDIDATES_ID), "rowData"),
    Output("concept-summary", "children"),
    Output("concept-map-drawn", "data"),
    Input("concept-labels", "data"),
    Input("concept-result", "data"),
    State("concept-map-drawn", "data"),
)
def draw(labels, result, drawn):
    """The map (whole the first time this page shows it, then updates applied in the browser,
    :func:`rings_update` and :func:`scores_update`: the session stores may fire first on load)
    and the candidate table."""
    atlas = require_map()
    scores = _valid_scores(atlas, labels, result)
    figure, update = no_update, no_update
    if not drawn:
        figure = concept_figure(atlas, scores, labels)
    elif ctx.triggered_id == "concept-labels":
        update = rings_update(atlas, labels, trained=scores is not None)
    else:
        update = scores_update(atlas, scores, labels)
    if scores is None:
        return figure, update, [], html.P("Train the concept to rank the materials.", className="muted"), True
    labelled = np.concatenate([_label_rows(atlas, labels, "positives"), _label_rows(atlas, labels, "negatives")])
    table = candidate_table(atlas.materials, scores, labelled, N_CANDIDATES)
    return figure, update, neighbor_records(table), result_summary(result), True


def _valid_scores(atlas, labels, result):
    if not result or result.get("key") != labels_key(labels):
        return None
    try:
        return decode_scores(result["scores"], len(atlas))
    except (KeyError, ValueError):
        return None


def concept_figure(atlas, scores, labels):
    """The map coloured by ``scores`` (grey without), positives in black rings, negatives in
    blue, the rings faint once there are many or the map is coloured (:func:`label_ring_marker`)."""
    trained = scores is not None
    figure = make_map_figure(atlas.coordinates, score_layers(scores, len(atlas)), map_hover_text(atlas),
                             highlight_rows=_label_rows(atlas, labels, "positives"), highlight_name="positives",
                             zoom_to_highlight=False)
    figure.data[HIGHLIGHT].update(marker=_ring_marker(atlas, labels, "positives", trained))
    figure.add_trace(ring_trace(atlas, labels, "negatives", trained))
    return figure


def _ring_marker(atlas, labels, role: str, trained: bool) -> dict:
    return label_ring_marker(role, len(_label_rows(atlas, labels, role)), len(atlas), trained)


def ring_trace(atlas, labels, role: str, trained: bool):
    """The rings around the materials labelled ``role`` (trace :data:`HIGHLIGHT` for the
    positives, :data:`NEGATIVES` for the negatives); a click on their legend entry hides them."""
    trace = highlight_trace(atlas.coordinates, _label_rows(atlas, labels, role), map_hover_text(atlas), role)
    trace.update(marker=_ring_marker(atlas, labels, role, trained), uid="highlight" if role == "positives" else role)
    return trace


def rings_update(atlas, labels, trained: bool = False) -> dict:
    """The map update (:func:`components.map_figure.map_update`) redrawing the rings of the
    positives and negatives."""
    return map_update(replace={HIGHLIGHT: trace_json(ring_trace(atlas, labels, "positives", trained)),
                               NEGATIVES: trace_json(ring_trace(atlas, labels, "negatives", trained))},
                      graph="concept-map")


def scores_update(atlas, scores, labels=None) -> dict:
    """The map update (:func:`components.map_figure.map_update`) colouring the map by ``scores``
    (grey when ``None``), coordinates not resent, and restyling the rings of ``labels`` to suit
    (faint over a coloured map)."""
    layers = score_layers(scores, len(atlas))
    base = trace_json(base_trace(atlas.coordinates[:0], None, layers))
    trained = scores is not None
    return map_update(
        traces={BASE: {"marker": base["marker"]},
                HIGHLIGHT: {"marker": _ring_marker(atlas, labels, "positives", trained)},
                NEGATIVES: {"marker": _ring_marker(atlas, labels, "negatives", trained)}},
        replace={FOREGROUND: trace_json(foreground_trace(atlas.coordinates, layers))},
        graph="concept-map",
    )


def result_summary(result: dict):
    """One line on what the forest was trained on, and its out-of-bag ROC AUC."""
    negatives = (f"{result['n_negatives']:,} random unlabelled materials as negatives" if result["random_negatives"]
                 else f"{result['n_negatives']:,} negatives")
    auc = result.get("oob_auc")
    auc_text = f"; out-of-bag ROC AUC on the training labels {auc:.2f}" if auc is not None and np.isfinite(auc) else ""
    return html.P(f"Random forest of {result['n_estimators']} trees trained on {result['n_positives']:,} positives and "
                  f"{negatives} in {result['seconds']:.1f} s{auc_text}. Scores are probabilities of the positive "
                  f"class; the table lists the {N_CANDIDATES} best materials not labelled.", className="muted")


@callback(
    Output("concept-result", "data"),
    Output("concept-message", "children"),
    Input("concept-train", "n_clicks"),
    State("concept-labels", "data"),
    **progress_job_options("concept", "concept-train"),
    prevent_initial_call=True,
)
def train(set_progress, n_clicks, labels):
    """Fit the concept forest in a background process and store the scores."""
    if not n_clicks:
        raise PreventUpdate
    return train_result(get_map(), labels, lambda done, total, what: set_progress((done, total, what)))


def train_result(atlas, labels, progress=None) -> tuple:
    """``(result store, message)`` of training on ``labels``; a message only when the labels
    cannot make a concept (no positives, too few)."""
    started = time.perf_counter()
    labels = labels or {}
    try:
        fitted = concept_scores(atlas, labels.get("positives"), labels.get("negatives"), CONFIG, progress=progress)
    except ConceptError as error:
        return no_update, notice(str(error), "error")
    result = {
        "key": labels_key(labels),
        "scores": encode_scores(fitted.scores),
        "n_positives": int(fitted.positive_rows.size),
        "n_negatives": int(fitted.negative_rows.size),
        "random_negatives": bool(fitted.random_negatives),
        "n_estimators": CONFIG.n_estimators,
        "oob_auc": None if not np.isfinite(fitted.oob_auc) else float(fitted.oob_auc),
        "seconds": time.perf_counter() - started,
    }
    return result, None


register_map_updates("concept-map")
