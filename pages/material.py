"""``/material/<material_id>``: one material's structure, properties, XRD and neighbours.

The page comes in two steps, so that its neighbour table shows first (issue 12: map click to a
filled table in <= 0.5 s):

1. The layout holds the header, the properties and the neighbour grid with its first
   :data:`DEFAULT_K` rows; the 3D scene, the XRD plot and the neighbours' small map are empty
   frames of their final size (no plotly or WebGL component is mounted yet, so the browser
   draws only the table).
2. When the grid has its rows (its ``virtualRowData``) and the browser has painted them, a
   client-side callback sets ``material-painted``; that starts the callbacks that put the
   scene, the plot and the small map into their frames (:func:`draw_structure`,
   :func:`draw_xrd`, :func:`draw_neighbor_map`), each under its own spinner.
"""

from __future__ import annotations

from typing import NamedTuple

import dash
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update
from dash.exceptions import PreventUpdate

from components.common import missing_page, notice
from components.compare import compare_view, neighbor_lists
from components.map_figure import make_neighbors_map_figure
from components.map_style import GRAPH_CONFIG
from components.map_image import map_image
from components.neighbors import NeighborPanel, neighbor_records, panel_meta
from components.properties import external_link, formula_children, property_table
from components.state import map_or_error, require_map
from components.structure_view import (
    StructureView,
    StructureViewError,
    preload,
    structure_scene,
)
from components.xrd import make_xrd_figure
from ml.service import MAX_NEIGHBORS, ArtifactError, UnknownMaterialError, explorer

dash.register_page(
    __name__,
    path_template="/material/<material_id>",
    name="Material",
    title=lambda material_id=None, **_: f"matmap · {material_id}" if material_id else "matmap · material",
    nav=False,
)

DEFAULT_K = 25
#: Side of the 3D scene's square canvas, px.
SCENE_SIZE = 420

VIEW_ID = "material"


def layout(material_id: str | None = None, **_):
    """The page of ``material_id``, a "not in the map" page for an unknown id."""
    atlas, error = map_or_error()
    if atlas is None:  # the message, and the components hidden (for Dash's callback checks)
        return missing_page(error, _body(None, None))
    preload()  # before this page's structure and XRD callbacks import in parallel
    if material_id is None:  # Dash's validation layout: the components, no material
        return _body(None, None)
    try:
        material = atlas.material(material_id)
    except UnknownMaterialError as unknown:
        return not_in_map(material_id, str(unknown))
    # the first neighbour table comes with the page: no callback round trip before its rows
    return _body(material_id, material, neighbor_view(atlas, material_id, DEFAULT_K))


def not_in_map(material_id: str, reason: str) -> html.Div:
    """The page for an id the map does not hold."""
    return html.Div(
        className="page",
        children=html.Div(
            className="card card--notice not-in-map",
            children=[
                html.H1(f"{material_id} is not in the map"),
                html.P(reason, className="muted"),
                html.P(["Search the ", dcc.Link("map", href="/"), " by id or formula, or ",
                        dcc.Link("place a CIF of your own", href="/locate"), "."]),
            ],
        ),
    )


class NeighborView(NamedTuple):
    """What the neighbour grid shows for one ``k``: its rows, the table's columns and a note
    (``None``, or why ``k`` was changed)."""

    rows: list[dict]
    columns: list[str]
    note: str | None


def neighbor_view(atlas, material_id: str, k, note: str | None = None) -> NeighborView:
    """The ``k`` nearest materials of ``material_id`` as the neighbour grid shows them.

    Raises:
        UnknownMaterialError: ``material_id`` is not on the map.
    """
    table = atlas.neighbors(material_id, k)
    return NeighborView(neighbor_records(table), list(table.columns), note)


def neighbor_map(atlas, material_id: str, k: int):
    """The small map of the ``k`` nearest materials of ``material_id``, a plotly ``Figure``
    (:func:`components.map_figure.make_neighbors_map_figure`): the whole map as a picture
    (:func:`components.map_image.map_image`), the ``k`` neighbours coloured by embedding
    distance, the material as a star (a response of a few KB whatever the map's size).

    Raises:
        UnknownMaterialError: ``material_id`` is not on the map.
    """
    table = atlas.neighbors(material_id, k)
    coordinates = atlas.coordinates
    rows = [atlas.row_of(mid) for mid in table["material_id"]]
    return make_neighbors_map_figure(
        map_image(atlas, "crystal"),
        tuple(coordinates[atlas.row_of(material_id)]),
        coordinates[rows],
        table["distance"].to_numpy(),
        neighbor_text=[f"#{r} {f} · {m}" for r, f, m in zip(table["rank"], table["formula"], table["material_id"])],
        neighbor_ids=list(table["material_id"]),
        query_label=f"{atlas.material(material_id)['formula']} · {material_id}",
    )


def _body(material_id: str | None, material, first: NeighborView | None = None) -> html.Div:
    """The page's sections: header, structure and properties, XRD, neighbours, descriptor
    comparison. Without a ``material_id`` (Dash's validation layout, the hidden skeleton of a
    page without a map) the frames hold the components the callbacks fill, so that every id
    is known."""
    return html.Div(
        className="page material-page",
        children=[
            dcc.Store(id="material-id", data=material_id),
            dcc.Store(id="material-painted"),
            dcc.Location(id="material-nav", refresh="callback-nav"),
            _header(material_id, material),
            html.Div(className="grid-2", children=[_structure_card(material_id), _properties_card(material)]),
            _xrd_card(material_id),
            _neighbors_card(material_id, first),
            _compare_card(),
        ],
    )


def _frame(frame_id: str, placeholder, skeleton, material_id: str | None) -> dcc.Loading:
    """A part drawn after the neighbour table: the div ``frame_id`` under a spinner, holding
    ``placeholder`` (an empty box of the part's size) until its callback fills it, or the
    ``skeleton`` component itself in the validation layout (``material_id`` ``None``)."""
    return dcc.Loading(html.Div(placeholder if material_id else skeleton, id=frame_id), type="circle", delay_show=200)


def _header(material_id: str | None, material) -> html.Div:
    """Formula and id, and the actions: show on the map, download the CIF, external page, generate around."""
    formula = str(material["formula"]) if material is not None else ""
    return html.Div(
        className="material-header",
        children=[
            html.H1([html.Span(formula_children(formula), className="formula"), " ",
                     html.Span(material_id or "", className="badge badge--id")], id="material-title"),
            html.Div(
                className="material-header__actions",
                children=[
                    dcc.Link("Show on map", href=f"/?highlight={material_id}", className="button button--secondary"),
                    html.Button("Download CIF", id="material-cif-button", className="button button--secondary", n_clicks=0),
                    external_link(material_id or ""),
                    html.Span(id="material-generate-link"),
                    dcc.Download(id="material-cif-download"),
                ],
            ),
        ],
    )


def _structure_card(material_id: str | None) -> html.Section:
    """The 3D structure (drawn by :func:`draw_structure` after the neighbour table)."""
    return html.Section(
        className="card",
        children=[
            html.H2("Structure"),
            _frame("material-structure", _structure_placeholder(), StructureView(VIEW_ID, scene_size=SCENE_SIZE), material_id),
        ],
    )


def _structure_placeholder() -> html.Div:
    """An empty scene frame as tall as :class:`StructureView` with its legend line (2.25 rem),
    so that nothing below moves when the scene arrives."""
    return html.Div(className="structure-view", style={"minHeight": f"calc({SCENE_SIZE}px + 2.25rem)"},
                    children=html.Div(className="structure-view__canvas", style={"height": f"{SCENE_SIZE}px"}))


def _properties_card(material) -> html.Section:
    """The material's properties table."""
    return html.Section(
        className="card",
        children=[html.H2("Properties"), property_table(material) if material is not None else None,
                  html.P("DFT values from the Materials Project; — where unknown.", className="hint")],
    )


def _xrd_card(material_id: str | None) -> html.Section:
    """The simulated powder pattern (drawn by :func:`draw_xrd` after the neighbour table)."""
    return html.Section(
        className="card",
        children=[html.H2("Simulated powder XRD"),
                  _frame("material-xrd-frame", html.Div(className="xrd-graph"), _xrd_graph(), material_id)],
    )


def _xrd_graph(figure=None) -> dcc.Graph:
    """The XRD plot (``figure``: :func:`components.xrd.make_xrd_figure`)."""
    return dcc.Graph(id="material-xrd", figure=figure, config={"displaylogo": False}, className="xrd-graph")


def _neighbor_map_graph(figure=None) -> dcc.Graph:
    """The neighbours' small map (``figure``: :func:`neighbor_map`; a click opens a neighbour's page)."""
    return dcc.Graph(id="material-neighbor-map", figure=figure, config=GRAPH_CONFIG, className="neighbor-map")


def _neighbors_card(material_id: str | None, first: NeighborView | None) -> html.Section:
    """The nearest materials: the ``k`` control, the grid (``first``: the :data:`DEFAULT_K`
    neighbours that come with the page) and the frame of the small map."""
    k_control = html.Div(
        className="k-control",
        children=[
            html.Label("neighbours", htmlFor="material-k", className="field-label field-label--inline"),
            dcc.Input(id="material-k", type="number", min=1, max=MAX_NEIGHBORS, step=1,
                      value=DEFAULT_K, debounce=True, className="number-input"),
            html.Span(f"(1–{MAX_NEIGHBORS})", className="muted"),
        ],
    )
    return html.Section(
        className="card",
        children=[
            html.Div(className="section-head", children=[html.H2("Nearest materials in the embedding"), k_control]),
            html.P("Euclidean distance between crystal-encoder embeddings; smaller is more similar. "
                   "Click an id to open its page.", className="hint"),
            html.Div(id="material-k-message"),
            html.Div(
                className="grid-neighbors",
                children=[
                    dcc.Loading(
                        NeighborPanel(VIEW_ID, rows=first.rows if first else None,
                                      columns=first.columns if first else None,
                                      filename=f"{material_id}_neighbors.csv"),
                        type="circle", delay_show=200,
                    ),
                    _frame("material-neighbor-map-frame", html.Div(className="neighbor-map"), _neighbor_map_graph(),
                           material_id),
                ],
            ),
        ],
    )


def _compare_card() -> html.Section:
    """The neighbour lists of every descriptor side by side, once asked for (:func:`compare_descriptors`)."""
    return html.Section(
        className="card",
        children=[
            html.Div(
                className="section-head",
                children=[
                    html.H2("Compare descriptors"),
                    html.Button("Compare the neighbour lists", id="material-compare-button",
                                className="button button--secondary", n_clicks=0),
                ],
            ),
            html.P("The same number of nearest materials under each descriptor, side by side: ours (the CMML "
                   "embedding) and the hand-made or learned baselines built for this map.", className="hint"),
            dcc.Loading(html.Div(id="material-compare"), type="circle", delay_show=200),
        ],
    )


# Step 2 of the page (module docstring): once the grid has its rows and the browser has painted
# them (the next frame, then a task), the material is marked painted, once per material.
clientside_callback(
    """function (rows, materialId, painted) {
        if (!materialId || !rows || painted === materialId) { return window.dash_clientside.no_update; }
        return new Promise((resolve) => requestAnimationFrame(() => setTimeout(() => resolve(materialId), 0)));
    }""",
    Output("material-painted", "data"),
    Input(NeighborPanel.ids.grid(VIEW_ID), "virtualRowData"),
    State("material-id", "data"),
    State("material-painted", "data"),
)


@callback(Output("material-structure", "children"), Input("material-painted", "data"), prevent_initial_call=True)
def draw_structure(material_id):
    """The crystal-toolkit scene of the material with its element legend, or why it cannot be drawn."""
    if not material_id:
        raise PreventUpdate
    try:
        scene, colors = structure_scene(require_map().structure(material_id))
    except (StructureViewError, ArtifactError, ValueError) as error:
        return notice(f"The structure cannot be drawn: {error}", "error")
    return StructureView(VIEW_ID, scene, colors, scene_size=SCENE_SIZE)


@callback(Output("material-generate-link", "children"), Input("material-id", "data"))
def generate_link(material_id):
    """"Generate around this compound" when the material is one of the VAE's crystals (a
    callback, so the check never delays the page; the set is kept per process)."""
    if not material_id or not explorer.in_vae_set(material_id):
        return None
    return dcc.Link("Generate around this compound", href=f"/generate?around={material_id}",
                    className="button button--secondary")


@callback(Output("material-xrd-frame", "children"), Input("material-painted", "data"), prevent_initial_call=True)
def draw_xrd(material_id):
    """The simulated XRD pattern (Cu Kα, 2θ 10–110°) as the build stored it
    (:meth:`ml.service.LoadedMap.xrd_pattern`), or why there is none."""
    if not material_id:
        raise PreventUpdate
    atlas = require_map()
    try:
        two_theta, intensity = atlas.xrd_pattern(material_id)
    except (ArtifactError, ValueError) as error:
        return notice(f"No XRD pattern: {error}", "error")
    return _xrd_graph(make_xrd_figure(two_theta, intensity, title=str(atlas.material(material_id)["formula"])))


@callback(
    Output("material-neighbor-map-frame", "children"),
    Input("material-painted", "data"),
    Input("material-k", "value"),
    State("material-id", "data"),
    prevent_initial_call=True,
)
def draw_neighbor_map(painted, k, material_id):
    """The small map of the neighbours the grid shows (:func:`neighbor_map`), once the table is
    painted, and again for every new ``k``."""
    if not painted or painted != material_id:
        raise PreventUpdate
    return _neighbor_map_graph(neighbor_map(require_map(), material_id, clamp_k(k)[0]))


def clamp_k(k) -> tuple[int, str | None]:
    """A neighbour count within 1 … MAX_NEIGHBORS and a note when ``k`` had to be changed."""
    if k is None:
        return DEFAULT_K, f"Enter a whole number from 1 to {MAX_NEIGHBORS}; showing {DEFAULT_K}."
    value = int(round(float(k)))
    clamped = min(max(value, 1), MAX_NEIGHBORS)
    return clamped, (f"Showing {clamped}: the count must be between 1 and {MAX_NEIGHBORS}." if clamped != value else None)


@callback(
    Output(NeighborPanel.ids.grid(VIEW_ID), "rowData"),
    Output(NeighborPanel.ids.meta(VIEW_ID), "data"),
    Output("material-k-message", "children"),
    Input("material-k", "value"),
    State("material-id", "data"),
    prevent_initial_call=True,
)
def show_neighbors(k, material_id):
    """Another ``k``: the nearest materials' grid rows and the table's columns (the panel's
    chooser and CSV follow them; the page comes with :data:`DEFAULT_K`, the small map follows
    in :func:`draw_neighbor_map`)."""
    if not material_id:
        raise PreventUpdate
    view = neighbor_view(require_map(), material_id, *clamp_k(k))
    return (view.rows, panel_meta(view.columns, f"{material_id}_neighbors.csv"),
            notice(view.note, "warning") if view.note else None)


@callback(
    Output("material-compare", "children"),
    Input("material-compare-button", "n_clicks"),
    Input("material-k", "value"),
    State("material-id", "data"),
    prevent_initial_call=True,
)
def compare_descriptors(n_clicks, k, material_id):
    """The neighbour lists of every descriptor side by side (once asked for)."""
    if not n_clicks or not material_id:
        raise PreventUpdate
    k, _ = clamp_k(k)
    return compare_view(neighbor_lists(require_map(), material_id, k), material_id)


@callback(
    Output("material-cif-download", "data"),
    Input("material-cif-button", "n_clicks"),
    State("material-id", "data"),
    prevent_initial_call=True,
)
def download_cif(n_clicks, material_id):
    """The material's CIF as a file."""
    if not n_clicks or not material_id:
        raise PreventUpdate
    return {"content": require_map().cif(material_id), "filename": f"{material_id}.cif", "type": "chemical/x-cif"}


@callback(Output("material-nav", "href"), Input("material-neighbor-map", "clickData"), prevent_initial_call=True)
def open_neighbor(click_data):
    """A click on a neighbour of the small map opens its page."""
    points = (click_data or {}).get("points") or []
    material_id = points[0].get("customdata") if points else None
    if not isinstance(material_id, str):
        return no_update
    return f"/material/{material_id}"
