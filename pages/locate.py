"""``/locate``: drop CIF files, see where they land on the map and what they are close to.

Each file is decoded, parsed, embedded by the crystal encoder and placed by the fitted t-SNE
(:meth:`ml.service.LoadedMap.locate`). Results are kept in the app-wide session store
(:data:`components.state.LOCATED_STORE`), so they survive a visit to a neighbour's page.
"""

from __future__ import annotations

import dash
import numpy as np
from dash import Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from components.common import map_update_stores, map_view_selector, missing_page, register_map_updates
from components.located import locate_upload, located_points, result_card
from components.map_colors import ColorLayers
from components.map_figure import clicked_material_href, located_color, located_shapes, make_map_figure, map_update
from components.map_style import GRAPH_CONFIG, MISSING_COLOR
from components.map_view import set_ranges, zoom_ranges
from components.state import LOCATED_STORE, map_or_error, require_map
from ml.service import DEFAULT_VIEW, MAX_NEIGHBORS
from ml.settings import get_settings

dash.register_page(__name__, path="/locate", name="Locate", title="matmap · locate a structure", order=1)

DEFAULT_K = 10


def layout(**_):
    """The upload zone, the results and the map with the uploaded structures."""
    atlas, error = map_or_error()
    if atlas is None:  # the message, and the components hidden (for Dash's callback checks)
        return missing_page(error, _page(get_settings().model, [DEFAULT_VIEW]))
    return _page(atlas.model, atlas.views)


def _page(model: str, views: list[str]):
    limit = get_settings().max_upload_mb
    return html.Div(
        className="page locate-page",
        children=[
            html.H1("Locate new structures"),
            html.P(
                [
                    "Drop one or more CIF files. Each structure is embedded by the crystal encoder of model ",
                    html.Code(model),
                    " and placed on the map next to the materials it resembles most. A disordered structure "
                    "(partial occupancies) is placed as the majority occupant of each site, as its result says; ",
                    html.Strong(f"at most {limit:g} MB per file"),
                    ".",
                ],
                className="lead",
            ),
            _upload_controls(),
            html.Div(id="locate-progress", className="locate-progress", role="status"),
            html.Div(id="locate-status", className="locate-status", role="status"),
            html.Div(
                className="grid-locate",
                children=[
                    dcc.Loading(html.Div(id="locate-results", className="locate-results"), type="circle"),
                    html.Section(
                        className="card locate-map-card",
                        children=[
                            map_view_selector("locate-view", views, DEFAULT_VIEW),
                            dcc.Graph(id="locate-map", className="locate-map",
                                      config={**GRAPH_CONFIG, "toImageButtonOptions": {"filename": "matmap-located", "scale": 2}}),
                        ],
                    ),
                ],
            ),
            dcc.Location(id="locate-nav", refresh="callback-nav"),
            dcc.Store(id="locate-map-drawn", data=False),  # has this page's map got its points?
            *map_update_stores("locate-map"),  # partial updates, applied by plotly in the browser
        ],
    )


def _upload_controls() -> html.Div:
    """The drop zone, the number of neighbours per structure and "Clear results"."""
    return html.Div(
        className="locate-controls",
        children=[
            dcc.Upload(
                id="locate-upload",
                multiple=True,
                className="upload-zone",
                className_active="upload-zone upload-zone--active",
                children=html.Div(
                    [html.Strong("Drag and drop CIF files here"), html.Span(" or "),
                     html.Span("choose files", className="upload-zone__link")]
                ),
            ),
            html.Div(
                className="locate-options",
                children=[
                    html.Label("neighbours per structure", htmlFor="locate-k", className="field-label"),
                    dcc.Input(id="locate-k", type="number", min=1, max=MAX_NEIGHBORS, step=1, value=DEFAULT_K,
                              className="number-input"),
                    html.Button("Clear results", id="locate-clear", className="button button--secondary", n_clicks=0),
                ],
            ),
        ],
    )


def _neutral_layers() -> ColorLayers:
    return ColorLayers(
        base_marker={"color": MISSING_COLOR, "size": 3, "opacity": 0.8},
        base_name=None,
        foreground_rows=np.zeros(0, dtype=np.int64),
    )


def clamp_k(k) -> int:
    """A neighbour count within 1 … MAX_NEIGHBORS (default when empty)."""
    if k is None:
        return DEFAULT_K
    return min(max(int(round(float(k))), 1), MAX_NEIGHBORS)


def add_uploads(atlas, contents, filenames, k, results, max_bytes: int) -> tuple[list[dict], str]:
    """Place every uploaded file and put the new results before the old ones.

    Args:
        contents, filenames: ``dcc.Upload``'s values (lists, or one string for one file).
        k: neighbours per structure. results: the results so far. max_bytes: size limit.

    Returns:
        ``(results, status line)``.
    """
    if isinstance(contents, str):  # one file
        contents, filenames = [contents], [filenames]
    filenames = list(filenames or [None] * len(contents))
    results = list(results or [])
    start = 1 + max((int(r.get("key", 0)) for r in results), default=0)
    new = [
        locate_upload(atlas, content, name, str(start + i), max_bytes, clamp_k(k))
        for i, (content, name) in enumerate(zip(contents, filenames))
    ]
    placed = sum(r["ok"] for r in new)
    status = f"Placed {placed} of {len(new)} file{'s' if len(new) != 1 else ''}."
    return new + results, status


def result_cards(results: list[dict]) -> list:
    """One card per result (newest first), each ok one marked in its star's colour."""
    ok = [r for r in results if r.get("ok")]
    colors = {r["key"]: located_color(i) for i, r in enumerate(ok)}
    return [result_card(r, colors.get(r["key"])) for r in results] or [
        html.P("No structure placed yet.", className="muted empty-state")
    ]


@callback(
    Output(LOCATED_STORE, "data"),
    Output("locate-upload", "contents"),
    Output("locate-status", "children"),
    Input("locate-upload", "contents"),
    Input("locate-clear", "n_clicks"),
    State("locate-upload", "filename"),
    State("locate-k", "value"),
    State(LOCATED_STORE, "data"),
    prevent_initial_call=True,
    running=[(Output("locate-upload", "disabled"), True, False),
             (Output("locate-progress", "children"), "Embedding and placing the uploaded structures…", "")],
)
def locate_files(contents, _clear, filenames, k, results):
    """Place each uploaded file; the store keeps every result (or why it failed)."""
    if ctx.triggered_id == "locate-clear":
        return [], None, ""
    if not contents:
        # Dash also calls this when the page is shown (its output store lives outside the
        # page, so prevent_initial_call does not hold). Passing the store through unchanged,
        # rather than PreventUpdate, lets show_results draw the page from it.
        return results or [], no_update, no_update
    max_bytes = int(get_settings().max_upload_mb * 1e6)
    results, status = add_uploads(require_map(), contents, filenames, k, results, max_bytes)
    return results, None, status


@callback(
    Output("locate-results", "children"),
    Output("locate-map", "figure"),
    Output("locate-map-update", "data"),
    Output("locate-map-drawn", "data"),
    Input(LOCATED_STORE, "data"),
    Input("locate-view", "value"),
    State("locate-map-drawn", "data"),
)
def show_results(results, view, drawn):
    """Cards of the results and the map: the whole figure the first time this page shows it
    or when the user switches maps (crystal-graph / XRD embedding), afterwards an update of the
    located marks only (:func:`located_update`)."""
    atlas = require_map()
    view = view if view in atlas.views else DEFAULT_VIEW
    results = results or []
    points = located_points(results, atlas.row_of, view)
    if not drawn or ctx.triggered_id == "locate-view":
        # no hover text on the 141k base points (4.2 MB; every redraw slower): the result cards
        # list each structure's neighbours, and the stars carry their file's name
        figure = make_map_figure(atlas.coordinates_of(view), _neutral_layers(), None, located=points)
        ranges = newest_located_view(atlas.coordinates_of(view), points)
        return result_cards(results), figure if ranges is None else set_ranges(figure, ranges), no_update, True
    return result_cards(results), no_update, located_update(atlas, points, view), no_update


def located_update(atlas, points, view: str = DEFAULT_VIEW) -> dict:
    """The map update (:func:`components.map_figure.map_update`) drawing ``points`` on the
    ``view`` map of ``locate-map`` and zooming onto the newest (:func:`newest_located_view`):
    the layout only (shapes, :func:`components.map_figure.located_shapes`, and axis ranges), so
    plotly redraws no point."""
    coordinates = atlas.coordinates_of(view)
    ranges = newest_located_view(coordinates, points)
    axes = {} if ranges is None else {"xaxis": {"range": ranges[0], "autorange": False},
                                      "yaxis": {"range": ranges[1], "autorange": False}}
    return map_update(layout={"shapes": located_shapes(coordinates, points), **axes}, graph="locate-map")


def newest_located_view(coordinates: np.ndarray, points) -> tuple[list[float], list[float]] | None:
    """Square axis ranges (map units) framing the newest placed structure (``points[0]``: the
    results are newest first) and those of its neighbours that lie near it on the map
    (:func:`components.map_view.zoom_group`, judged against the whole map); ``None`` without
    points."""
    if not points:
        return None
    newest = points[0]
    xy = np.vstack([np.asarray(coordinates, dtype=np.float64), [[newest.x, newest.y]]])
    rows = np.concatenate([[len(xy) - 1], np.asarray(newest.neighbor_rows, dtype=np.int64)])
    return zoom_ranges(xy, rows)


register_map_updates("locate-map")


@callback(Output("locate-nav", "href"), Input("locate-map", "clickData"), prevent_initial_call=True)
def open_material(click_data):
    """A click on a material of the map opens its page."""
    href = clicked_material_href(require_map().materials["material_id"], click_data)
    if href is None:
        raise PreventUpdate
    return href
