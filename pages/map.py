"""``/``: every material of the map as one WebGL scatter, coloured, searchable, clickable.

Two maps of the same materials: the crystal-graph embedding (default) and the XRD embedding
(``?view=xrd``), the paper's second t-SNE map; colour modes, search and clicks work on both.

The URL keeps the view: ``?view=xrd``, ``?color=band_gap``, ``?color=element&element=Cu``,
``?highlight=mp-22526`` (an id or a formula). The page writes the URL back with
``history.replaceState`` (``assets/matmap.js``), which changes the address without making
Dash re-render the page, so the 140k coordinates are sent once per visit.

A colour change, a search or the switch to the other map sends only what changes (the base
trace's marker and the small foreground trace; the ring shapes and axis ranges; the other map's
traces) to the ``map-update`` store, and
``matmap.applyMapUpdate`` (``assets/matmap.js``) hands it to ``Plotly.react`` in the browser:
the figure prop is not touched, so Dash does not copy and redraw the whole 140k-point figure
(a ``Patch`` of it cost 2 s in Chromium beside plotly's own 0.05–0.75 s). The figure prop is
set once, at the first paint.
"""

from __future__ import annotations

import dash
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

from components.common import map_update_stores, map_view_selector, missing_page, notice, page_link, register_map_updates
from components.map_colors import COLOR_MODES, DEFAULT_ELEMENT, DEFAULT_MODE, color_layers, parse_mode
from components.map_figure import (
    BASE,
    FOREGROUND,
    base_trace,
    clicked_material_href,
    clicked_row,
    foreground_trace,
    make_map_figure,
    map_update,
    ring_shapes,
    trace_json,
)
from components.map_style import GRAPH_CONFIG
from components.map_view import zoom_group, zoom_ranges
from components.properties import format_value, formula_children, property_rows
from components.state import map_elements, map_or_error, require_map
from components.structure_preview import PREVIEW_SIZE, preview_figure
from components.structure_view import StructureViewError, element_colors, legend_chips
from ml.service import DEFAULT_VIEW, MAP_VIEWS, ArtifactError

dash.register_page(__name__, path="/", name="Map", title="matmap · materials map", order=0)

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
            html.Div(
                className="map-main",
                children=dcc.Loading(
                    dcc.Graph(id="map-graph", config=GRAPH_CONFIG, className="map-graph", clear_on_unhover=True),
                    type="circle",
                    parent_className="map-loading",
                ),
            ),
            dcc.Location(id="map-nav", refresh="callback-nav"),
            dcc.Store(id="map-url-sync"),
            *map_update_stores("map"),  # partial updates, applied by plotly in the browser
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
    framed = set(zoom_group(atlas.coordinates_of(view), rows).tolist())
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


def initial_figure(atlas, mode: str, element: str | None, query: str, view: str = DEFAULT_VIEW):
    """The whole map figure of map ``view``: every material coloured by ``mode``, ``query``'s
    matches ringed."""
    layers = color_layers(atlas.materials, mode, element)
    rows = _highlight_rows(atlas, query or "")
    # no hover text: 141k labels were 4.2 of the figure's 6.6 MB and slowed every redraw; the
    # hover card and the 3D preview beside the map say what is under the pointer
    return make_map_figure(atlas.coordinates_of(view), layers, None, highlight_rows=rows,
                           highlight_name=f"search: {query}", rings_as_shapes=True)


def recolor_update(atlas, mode: str, element: str | None, view: str = DEFAULT_VIEW) -> dict:
    """The map update (:func:`map_update`) that gives the map another colour mode: the base
    trace's marker and legend entry and the whole foreground trace; the coordinates and hover
    text stay in the browser."""
    layers = color_layers(atlas.materials, mode, element)
    base = trace_json(base_trace(atlas.coordinates[:0], None, layers))  # only marker and legend are used
    return map_update(
        traces={BASE: {"marker": base["marker"], "name": base["name"], "showlegend": base["showlegend"]}},
        replace={FOREGROUND: trace_json(foreground_trace(atlas.coordinates_of(view), layers))},
    )


def search_update(atlas, query: str, view: str = DEFAULT_VIEW) -> dict:
    """The map update (:func:`map_update`) ringing ``query``'s matches (layout shapes,
    :func:`components.map_figure.ring_shapes`: only the layout changes) and zooming onto them
    (the view is kept when nothing matches)."""
    rows = _highlight_rows(atlas, query)
    coordinates = atlas.coordinates_of(view)
    ranges = zoom_ranges(coordinates, rows)
    axes = {} if ranges is None else {"xaxis": {"range": ranges[0], "autorange": False},
                                      "yaxis": {"range": ranges[1], "autorange": False}}
    return map_update(layout={"shapes": ring_shapes(coordinates, rows, f"search: {query}"), **axes})


def view_update(atlas, mode: str, element: str | None, query: str, view: str) -> dict:
    """The map update (:func:`map_update`) that draws map ``view`` in place of the drawn one:
    every trace of :func:`initial_figure` replaced, its rings and its zoom (or its whole view). Applied by
    plotly in the browser as a new figure would be, without Dash's handling of a 3 MB figure prop."""
    figure = initial_figure(atlas, mode, element, query, view).to_plotly_json()
    axes = {axis: {"range": figure["layout"][axis]["range"], "autorange": False} for axis in ("xaxis", "yaxis")}
    return map_update(replace=dict(enumerate(figure["data"])),
                      layout={"shapes": figure["layout"].get("shapes", []), **axes})


@callback(
    Output("map-graph", "figure"),
    Output("map-update", "data"),
    Output("map-element-row", "style"),
    Output("map-view-caption", "children"),
    Input("map-color", "value"),
    Input("map-element", "value"),
    Input("map-view", "value"),
    State("map-highlight", "data"),
)
def draw_map(mode, element, view, query):
    """First call: the whole figure; later calls update the drawn figure: another map
    (:func:`view_update`), a new colour or element (:func:`recolor_update`)."""
    atlas = require_map()
    view = view if view in atlas.views else DEFAULT_VIEW
    caption = view_caption(atlas, view)
    if ctx.triggered_id is None:
        return initial_figure(atlas, mode, element, query, view), no_update, _element_row_style(mode), caption
    if ctx.triggered_id == "map-view":
        return no_update, view_update(atlas, mode, element, query, view), _element_row_style(mode), caption
    return no_update, recolor_update(atlas, mode, element, view), _element_row_style(mode), caption


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


@callback(Output("map-nav", "href"), Input("map-graph", "clickData"), prevent_initial_call=True)
def open_material(click_data):
    """A click on a point opens that material's page."""
    href = clicked_material_href(require_map().materials["material_id"], click_data)
    if href is None:
        return no_update
    return href


@callback(
    Output("map-hover", "children"),
    Input("map-graph", "hoverData"),
    State("map-color", "value"),
    State("map-element", "value"),
    prevent_initial_call=True,
)
def describe_hovered(hover_data, mode, element):
    """The hovered material: formula, id and the value the colour shows."""
    row = clicked_row(hover_data)
    if row is None:
        return _hover_placeholder()
    material = require_map().materials.iloc[row]
    return hover_details(material, mode, element)


@callback(
    Output("map-preview", "figure"),
    Output("map-preview-legend", "children"),
    Output("map-preview-box", "style"),
    Input("map-graph", "hoverData"),
    prevent_initial_call=True,
)
def preview_structure(hover_data):
    """The hovered material's unit cell in 3D beside the map (chemiscope's linked view), with
    its element colours; the last one stays while the pointer is off the points, and a
    structure that cannot be drawn hides the box instead of breaking the page."""
    row = clicked_row(hover_data)
    if row is None:
        raise PreventUpdate
    atlas = require_map()
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


register_map_updates("map")

clientside_callback(
    ClientsideFunction(namespace="matmap", function_name="syncMapUrl"),
    Output("map-url-sync", "data"),
    Input("map-color", "value"),
    Input("map-element", "value"),
    Input("map-highlight", "data"),
    Input("map-view", "value"),
)
