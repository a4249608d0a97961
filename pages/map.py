"""``/``: every material of the map as one WebGL scatter, coloured, searchable, clickable.

Two maps of the same materials: the crystal-graph embedding (default) and the XRD embedding
(``?view=xrd``), the paper's second t-SNE map; colour modes, search and clicks work on both.

The URL keeps the view: ``?view=xrd``, ``?color=band_gap``, ``?color=element&element=Cu``,
``?highlight=mp-22526`` (an id or a formula). The page writes the URL back with
``history.replaceState`` (``assets/matmap.js``), which changes the address without making
Dash re-render the page, so the 140k coordinates are sent once per visit.

The points are drawn by regl-scatterplot (``assets/map_scatter.js``), not plotly: plotly
recomputes every trace when one changes, 0.65–1.1 s per recolour of 141,659 points in Chromium
on 2 cores, where regl-scatterplot redraws from a palette index in 0.15–0.2 s
(:mod:`components.map_points`). Every server callback writes a small update to the
``map-update`` store (:func:`components.map_points.scatter_update`): the positions once per
visit and per map, one byte per point for a colour mode, the rows to ring and the window to
zoom to for a search. The key of the colours is HTML over the map (:mod:`components.map_legend`).
"""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import numpy as np
from dash import (
    ClientsideFunction,
    Input,
    Output,
    State,
    callback,
    clientside_callback,
    ctx,
    dcc,
    html,
    no_update,
)
from dash.exceptions import PreventUpdate

from components.common import map_view_selector, missing_page, notice, page_link
from components.map_colors import COLOR_MODES, DEFAULT_ELEMENT, DEFAULT_MODE, parse_mode
from components.map_points import ndc_area, scatter_update
from components.map_view import zoom_group, zoom_ranges
from components.properties import format_value, formula_children, property_rows
from components.state import map_elements, map_geometry, map_or_error, require_map, scatter_colors, scatter_xy
from components.structure_preview import PREVIEW_SIZE, preview_figure
from components.structure_view import StructureViewError, element_colors, legend_chips
from ml.service import DEFAULT_VIEW, MAP_VIEWS, ArtifactError

dash.register_page(__name__, path="/", name="Map", title="matmap · materials map", order=0)

#: The element that holds the scatter's canvas; the scatter writes the hovered row to
#: ``map-canvas-hovered`` and a clicked one to ``map-canvas-clicked`` (``assets/map_scatter.js``).
HOST = "map-canvas"
#: Matches a search rings and lists (the list scrolls, with a visible scroll bar).
MAX_MATCHES = 50
#: The properties the hover card lists (beside the value the colour shows).
PREVIEW_PROPERTIES = ("formation_energy_per_atom", "e_above_hull", "band_gap", "spacegroup_number", "nsites")


def layout(color: str | None = None, element: str | None = None, highlight: str | None = None,
           view: str | None = None, **_):
    """The map page; query parameters ``view``, ``color``, ``element`` and ``highlight`` set the view."""
    atlas, error = map_or_error()
    if atlas is None:  # the message, and the components hidden (for Dash's callback checks)
        return missing_page(error, _page(DEFAULT_MODE, [], None, "", [], None, None, [DEFAULT_VIEW], DEFAULT_VIEW))
    notes = []
    views = atlas.views
    if view and view not in views:
        known = MAP_VIEWS[view][0] if view in MAP_VIEWS else repr(view)
        notes.append(notice(f"This build has no {known} map; showing the {MAP_VIEWS[DEFAULT_VIEW][0]} map.", "warning"))
    view = view if view in views else DEFAULT_VIEW
    try:
        mode = parse_mode(color)
    except ValueError as bad:
        notes.append(notice(f"{bad}. Showing {COLOR_MODES[DEFAULT_MODE].lower()} instead.", "warning"))
        mode = DEFAULT_MODE
    elements = map_elements(atlas)
    symbol = element if element in elements else (DEFAULT_ELEMENT if DEFAULT_ELEMENT in elements else (elements or [None])[0])
    if element and element not in elements:
        notes.append(notice(f"No material of this map contains {element!r}; showing {symbol}.", "warning"))
    query = (highlight or "").strip()
    summary = f"{len(atlas):,} crystals · dataset {atlas.dataset} · model {atlas.model}"
    return _page(mode, elements, symbol, query, notes, summary, search_summary(atlas, query, view), views, view)


def view_caption(atlas, view: str) -> str:
    """What the chosen map shows, with the number of materials it places."""
    placed = int(np.isfinite(atlas.coordinates_of(view)).all(axis=1).sum()) if view in atlas.views else 0
    what = ("t-SNE of the crystal-graph encoder's embeddings" if view == DEFAULT_VIEW
            else "t-SNE of the XRD encoder's embeddings of each simulated powder pattern (Cu Kα)")
    return f"{what}; {placed:,} materials placed."


def _page(mode: str, elements: list[str], symbol: str | None, query: str, notes: list, summary: str | None, found,
          views: list[str], view: str):
    """The sidebar (what the map shows, colour, search, the hovered material) beside the map."""
    sidebar = [
        html.H1("Materials map", className="sidebar__title"),
        html.P(summary, className="muted", id="map-summary"),
        *notes,
        map_view_selector("map-view", views, view, caption_id="map-view-caption"),
        *_colour_controls(mode, elements, symbol),
        *_search_controls(query, found),
        *_hover_panel(),
    ]
    return html.Div(
        className="map-page",
        children=[
            html.Aside(className="sidebar", children=sidebar),
            html.Div(className="map-main", children=html.Div(
                className="map-graph map-frame",
                children=[
                    html.Div(id=HOST, className="map-scatter"),  # assets/map_scatter.js adds the canvas
                    html.Div("Drawing the map…", className="map-drawing"),
                    html.Div(id="map-legend", className="map-legend"),
                    html.Div(className="map-tools", children=[
                        html.Button("Whole map", id="map-home", className="button button--small",
                                    title="Show the whole map (or double-click it)"),
                        html.Button("PNG", id="map-png", className="button button--small button--secondary",
                                    title="Save the view as a PNG image (points only)"),
                    ]),
                ],
            )),
            dcc.Location(id="map-nav", refresh="callback-nav"),
            dcc.Store(id="map-url-sync"),
            # the scatter's updates (server → browser), how many it drew, and what the pointer did
            dcc.Store(id="map-update"), dcc.Store(id="map-update-applied"),
            dcc.Store(id=f"{HOST}-hovered"), dcc.Store(id=f"{HOST}-clicked"), dcc.Store(id="map-png-saved"),
            # an empty, hidden grid once the map is drawn: AG Grid's code is then loaded and started
            # when a click opens a material page, whose neighbour table comes first (grid_warm_up)
            html.Div(id="map-grid-warm-up", style={"display": "none"}), dcc.Store(id="map-drawn"),
        ],
    )


def _colour_controls(mode: str, elements: list[str], symbol: str | None) -> list:
    """The colour menu, and the element menu of the ``element`` mode (hidden otherwise)."""
    return [
        html.Label("Colour by", htmlFor="map-color", className="field-label"),
        dcc.Dropdown(
            id="map-color",
            options=[{"label": label, "value": key} for key, label in COLOR_MODES.items()],
            value=mode,
            clearable=False,
            searchable=False,
        ),
        html.Div(
            id="map-element-row",
            style=_element_row_style(mode),
            children=[
                html.Label("Element", htmlFor="map-element", className="field-label"),
                dcc.Dropdown(id="map-element", options=elements, value=symbol, clearable=False),
            ],
        ),
    ]


def _search_controls(query: str, found) -> list:
    """The search box, its result (``found``: :func:`search_summary`) and the searched query."""
    return [
        html.Label("Find a material", htmlFor="map-search", className="field-label"),
        html.Div(
            className="search-row",
            children=[
                dcc.Input(id="map-search", type="search", value=query, placeholder="mp-22526 or LiCoO2",
                          debounce=True, className="text-input", autoComplete="off"),
                html.Button("Find", id="map-search-button", className="button", n_clicks=0),
            ],
        ),
        html.Div(found, id="map-search-result", className="search-result"),
        dcc.Store(id="map-highlight", data=query),
    ]


def _hover_panel() -> list:
    """The hovered material's card and its cell in 3D (shown from the first hover on)."""
    return [
        html.Div(id="map-hover", className="hover-card", children=_hover_placeholder()),
        html.Div(
            [dcc.Graph(id="map-preview", config={"displayModeBar": False}, style={"height": f"{PREVIEW_SIZE}px"}),
             html.Div(id="map-preview-legend", className="map-preview__legend")],
            id="map-preview-box", className="map-preview", style={"display": "none"},
        ),
        html.P(
            "Hover a point to preview its unit cell and key properties; click it to open its page. "
            "Scroll to zoom, drag to pan, double-click to see the whole map.",
            className="hint",
        ),
    ]


def _element_row_style(mode: str) -> dict:
    return {} if mode == "element" else {"display": "none"}


def _hover_placeholder():
    return html.Span("Hover over a point to see the material.", className="muted")


def search_summary(atlas, query: str, view: str = DEFAULT_VIEW):
    """What the sidebar says about a search: nothing, no match, or every match as a link
    (at most :data:`MAX_MATCHES`), and which of them the map zoomed onto when they lie
    far apart (:func:`components.map_view.zoom_group`)."""
    if not query:
        return None
    rows = _highlight_rows(atlas, query)
    if not rows:
        return notice(
            [f"Nothing matches {query!r}. Try an id such as ", html.Code("mp-22526"), " or a formula such as ",
             html.Code("LiCoO2"), "."],
            "warning",
        )
    table = atlas.materials
    framed = set(zoom_group(atlas.coordinates_of(view), rows, map_geometry(atlas, view)[0]).tolist())
    partial = len(framed) < len(rows)
    links = []
    for row in rows:
        mid = str(table["material_id"].iat[row])
        mark = [html.Span("◎ ", className="match-list__framed", title="in the zoomed view")] if partial and row in framed else []
        links.append(html.Li([*mark, page_link(mid), " ",
                              html.Span(formula_children(str(table["formula"].iat[row])), className="formula")]))
    more = f" (the first {MAX_MATCHES})" if len(rows) == MAX_MATCHES else ""
    head = "1 material" if len(rows) == 1 else f"{len(rows)} materials"
    lines = [html.P(f"{head} ringed on the map{more}:", className="muted")]
    if partial:
        lines.append(html.P(f"They lie far apart: the map shows the {len(framed)} of them that lie together "
                            "(marked ◎ below). Double-click the map to see them all.", className="hint match-zoom-note"))
    return html.Div([*lines, html.Ul(links, className="match-list")])


def _highlight_rows(atlas, query: str) -> list[int]:
    return atlas.search(query, limit=MAX_MATCHES) if query else []


def search_target(atlas, query: str, view: str = DEFAULT_VIEW) -> tuple[list[int], dict | None]:
    """The rows ``query`` matches (at most :data:`MAX_MATCHES`) and the zoom rectangle that
    frames them on map ``view`` (:func:`components.map_view.zoom_ranges`, in the scatter's
    coordinates), ``None`` when nothing matches or no match is placed."""
    rows = _highlight_rows(atlas, query or "")
    coordinates = atlas.coordinates_of(view)
    extent, frame = map_geometry(atlas, view)
    ranges = zoom_ranges(coordinates, rows, extent=extent)
    return rows, (None if ranges is None else ndc_area(coordinates, ranges, frame))


def whole_update(atlas, mode: str, element: str | None, query: str, view: str = DEFAULT_VIEW) -> dict:
    """The scatter update that draws map ``view`` whole: positions, ``mode``'s colours,
    ``query``'s matches ringed and framed (else the whole map in view)."""
    rows, zoom = search_target(atlas, query, view)
    return scatter_update(HOST, points=scatter_xy(atlas, view), colors=scatter_colors(atlas, mode, element)[0],
                          select=rows, zoom=zoom or "home")


def recolor_update(atlas, mode: str, element: str | None) -> dict:
    """The scatter update that gives the drawn map another colour mode: one byte per point and
    the palette; positions, rings and view stay."""
    return scatter_update(HOST, colors=scatter_colors(atlas, mode, element)[0])


def search_update(atlas, query: str, view: str = DEFAULT_VIEW) -> dict:
    """The scatter update ringing ``query``'s matches and zooming onto them (the view is kept
    when nothing matches)."""
    rows, zoom = search_target(atlas, query, view)
    return scatter_update(HOST, select=rows, zoom=zoom)


@callback(
    Output("map-update", "data"),
    Output("map-legend", "children"),
    Output("map-element-row", "style"),
    Output("map-view-caption", "children"),
    Input("map-color", "value"),
    Input("map-element", "value"),
    Input("map-view", "value"),
    Input("map-home", "n_clicks"),
    State("map-highlight", "data"),
)
def draw_map(mode, element, view, _home, query):
    """First call and another map: the whole map (:func:`whole_update`); a new colour or
    element: only the colours (:func:`recolor_update`); "Whole map": the home view."""
    if ctx.triggered_id == "map-home":
        return scatter_update(HOST, zoom="home"), no_update, no_update, no_update
    atlas = require_map()
    view = view if view in atlas.views else DEFAULT_VIEW
    caption = view_caption(atlas, view)
    legend = scatter_colors(atlas, mode, element)[1]
    if ctx.triggered_id in (None, "map-view"):
        return whole_update(atlas, mode, element, query, view), legend, _element_row_style(mode), caption
    return recolor_update(atlas, mode, element), legend, _element_row_style(mode), caption


@callback(
    Output("map-update", "data", allow_duplicate=True),
    Output("map-search-result", "children"),
    Output("map-highlight", "data"),
    Input("map-search", "value"),
    Input("map-search-button", "n_clicks"),
    State("map-view", "value"),
    prevent_initial_call=True,
)
def search(query, _clicks, view):
    """Ring the materials matching an id or a formula and zoom onto them."""
    atlas = require_map()
    query = (query or "").strip()
    view = view if view in atlas.views else DEFAULT_VIEW
    return search_update(atlas, query, view), search_summary(atlas, query, view), query


@callback(Output("map-grid-warm-up", "children"), Input("map-drawn", "data"), prevent_initial_call=True)
def grid_warm_up(_drawn):
    """After the map's first draw, an empty hidden AG Grid: the browser loads and starts AG Grid
    (its code is fetched on first use) while the user looks at the map, so a click through to a
    material page draws its neighbour table without that wait (about 0.25 s of a first grid in
    Chromium on 2 cores, measured by the material page's helper session)."""
    return dag.AgGrid(id="map-grid-warm-up-grid", rowData=[], columnDefs=[{"field": "material_id"}],
                      style={"height": "1px", "width": "1px"})


def pointed_row(atlas, pointed) -> int | None:
    """The materials-table row the scatter reports (``map-canvas-hovered``: a row;
    ``map-canvas-clicked``: ``{"row": …}``), or ``None`` for anything that is not a row of the map."""
    row = pointed.get("row") if isinstance(pointed, dict) else pointed
    if isinstance(row, bool) or not isinstance(row, (int, float)) or not 0 <= row < len(atlas.materials):
        return None
    return int(row)


@callback(Output("map-nav", "href"), Input(f"{HOST}-clicked", "data"), prevent_initial_call=True)
def open_material(clicked):
    """A click on a point opens that material's page."""
    atlas = require_map()
    row = pointed_row(atlas, clicked)
    if row is None:
        return no_update
    return f"/material/{atlas.materials['material_id'].iat[row]}"


@callback(
    Output("map-hover", "children"),
    Input(f"{HOST}-hovered", "data"),
    State("map-color", "value"),
    State("map-element", "value"),
    prevent_initial_call=True,
)
def describe_hovered(hovered, mode, element):
    """The hovered material: formula, id and the value the colour shows."""
    atlas = require_map()
    row = pointed_row(atlas, hovered)
    if row is None:
        return _hover_placeholder()
    material = atlas.materials.iloc[row]
    return hover_details(material, mode, element)


@callback(
    Output("map-preview", "figure"),
    Output("map-preview-legend", "children"),
    Output("map-preview-box", "style"),
    Input(f"{HOST}-hovered", "data"),
    prevent_initial_call=True,
)
def preview_structure(hovered):
    """The hovered material's unit cell in 3D beside the map (chemiscope's linked view), with
    its element colours; the last one stays while the pointer is off the points, and a
    structure that cannot be drawn hides the box instead of breaking the page."""
    atlas = require_map()
    row = pointed_row(atlas, hovered)
    if row is None:
        raise PreventUpdate
    try:
        structure = atlas.structure(atlas.materials["material_id"].iat[row])
        colors = element_colors(structure)
    except (StructureViewError, ArtifactError, ValueError):
        return no_update, [], {"display": "none"}
    return preview_figure(structure, colors), legend_chips(colors), {}


def hover_details(material, mode: str, element: str | None):
    """The hover card of one material row for the current colour mode: formula, id, the value
    the colour shows, the key properties (:data:`PREVIEW_PROPERTIES`) and a link to its page."""
    mode = parse_mode(mode)
    if mode == "element":
        symbol = element or DEFAULT_ELEMENT
        shown = ("contains " + symbol, "yes" if symbol in str(material.get("elements", "")).split() else "no")
    else:
        fmt = "{:.3f}" if mode in ("formation_energy_per_atom", "band_gap", "density", "e_above_hull") else "{}"
        fmt = "{:.2f}" if mode == "total_magnetization" else fmt
        fmt = "{:.0f}" if mode in ("spacegroup_number", "nelements") else fmt
        shown = (COLOR_MODES[mode], format_value(material.get(mode), fmt))
    mid = str(material["material_id"])
    rows = [(label, value) for label, value in property_rows(material[[c for c in PREVIEW_PROPERTIES if c in material.index]])
            if label != shown[0]]
    return html.Div(
        [
            html.Div([html.Span(formula_children(str(material["formula"])), className="formula"), " ",
                      html.Span(mid, className="badge")], className="hover-card__title"),
            html.Div([html.Span(shown[0] + ": ", className="muted"), shown[1]], className="hover-card__shown"),
            html.Table(html.Tbody([html.Tr([html.Th(label), html.Td(value)]) for label, value in rows]),
                       className="property-table property-table--compact"),
            dcc.Link("Open its page →", href=f"/material/{mid}", className="hover-card__link"),
        ]
    )


clientside_callback(
    ClientsideFunction(namespace="matmapScatter", function_name="apply"),
    Output("map-update-applied", "data"),
    Input("map-update", "data"),
    State("map-update-applied", "data"),
    prevent_initial_call=True,
)

clientside_callback(
    ClientsideFunction(namespace="matmap", function_name="syncMapUrl"),
    Output("map-url-sync", "data"),
    Input("map-color", "value"),
    Input("map-element", "value"),
    Input("map-highlight", "data"),
    Input("map-view", "value"),
)

clientside_callback(
    ClientsideFunction(namespace="matmapScatter", function_name="savePng"),
    Output("map-png-saved", "data"),
    Input("map-png", "n_clicks"),
    prevent_initial_call=True,
)

# the map's first draw, once per page (later updates send no request for the grid warm-up)
clientside_callback(
    "function (applied) { return applied === 1 ? true : window.dash_clientside.no_update; }",
    Output("map-drawn", "data"),
    Input("map-update-applied", "data"),
    prevent_initial_call=True,
)
