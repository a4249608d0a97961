"""Small layout pieces shared by the pages: notices, the "no map yet" and "map loading" messages."""

from __future__ import annotations

from dash import MATCH, ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from ml.service import MAP_VIEWS
from ml.service.building import VIEW_ITEMS
from ml.settings import get_settings

#: How often a page shown while the map loads asks whether it is ready, ms.
LOADING_POLL_MS = 1000


def build_command() -> str:
    """The command that builds the map the app serves (dataset from the settings)."""
    return f"python -m ml build --dataset {get_settings().dataset}"


def map_missing(message: str) -> html.Div:
    """What every page shows when the map cannot be loaded: the reason and how to build it."""
    settings = get_settings()
    return html.Div(
        className="card card--notice map-missing",
        children=[
            html.H2("No map to show yet"),
            html.P(message, className="muted"),
            html.P("Build it from the repository root, then reload this page (no restart needed):"),
            html.Pre(html.Code(build_command()), className="command"),
            html.P(
                [
                    "The app reads maps from ",
                    html.Code(str(settings.artifacts_dir)),
                    f" (dataset {settings.dataset!r}, model {settings.model!r}); set ",
                    html.Code("MATMAP_DATA_DIR"), ", ", html.Code("MATMAP_DATASET"), " or ",
                    html.Code("MATMAP_MODEL"), " to serve another.",
                ],
                className="muted",
            ),
        ],
    )


class MapLoadingNotice(html.Div):
    """What every page shows while the server loads the map in the background: a message,
    and a poll (every :data:`LOADING_POLL_MS`) that reloads the page once the map is there.

    All-in-One: a ``dcc.Interval`` asks the server (:func:`loading_finished`), which answers
    on its ``ready`` store once loading has ended; the browser then reloads the page
    (``assets/serving.js``).
    """

    class ids:
        @staticmethod
        def poll(aio_id: str) -> dict:
            return {"component": "MapLoadingNotice", "subcomponent": "poll", "aio_id": aio_id}

        @staticmethod
        def ready(aio_id: str) -> dict:
            return {"component": "MapLoadingNotice", "subcomponent": "ready", "aio_id": aio_id}

    def __init__(self, message: str, aio_id: str = "page"):
        super().__init__(
            className="card card--notice map-loading",
            children=[
                html.H2("Loading the map"),
                html.P(message, className="muted"),
                html.P("The server has just started; this takes a few seconds.", className="hint"),
                dcc.Interval(id=self.ids.poll(aio_id), interval=LOADING_POLL_MS),
                dcc.Store(id=self.ids.ready(aio_id), data=False),
            ],
        )


@callback(
    Output(MapLoadingNotice.ids.ready(MATCH), "data"),
    Input(MapLoadingNotice.ids.poll(MATCH), "n_intervals"),
    prevent_initial_call=True,
)
def loading_finished(_n_intervals):
    """``True`` once this server process is no longer loading the map (loaded, or failed:
    the reloaded page then says why); no update while it is."""
    from components.state import is_loading

    if is_loading():
        raise PreventUpdate
    return True


clientside_callback(
    ClientsideFunction(namespace="matmap_serving", function_name="reloadWhenReady"),
    Output(MapLoadingNotice.ids.poll(MATCH), "disabled"),
    Input(MapLoadingNotice.ids.ready(MATCH), "data"),
    prevent_initial_call=True,
)


def missing_page(message: str, skeleton) -> html.Div:
    """A page without its map: the :func:`map_missing` message (or, while the server loads
    the map at start, :class:`MapLoadingNotice`), and the page's components hidden, so that
    the callbacks Dash validates against the layout still find their ids."""
    from components.state import is_loading

    shown = MapLoadingNotice(message) if is_loading() else map_missing(message)
    return html.Div([shown, html.Div(skeleton, hidden=True)], className="page")


def notice(children, kind: str = "info", **kwargs) -> html.Div:
    """A coloured message box; ``kind`` is ``info``, ``warning`` or ``error``."""
    if kind not in ("info", "warning", "error"):
        raise ValueError(f"unknown notice kind {kind!r}")
    return html.Div(children, className=f"notice notice--{kind}", role="alert" if kind == "error" else None, **kwargs)


def page_link(material_id: str, text: str | None = None) -> dcc.Link:
    """A link to a material's page."""
    return dcc.Link(text or material_id, href=f"/material/{material_id}", className="material-link")


def map_view_selector(component_id: str, views: list[str], value: str, caption_id: str | None = None) -> html.Div:
    """The "Map" radio that switches between a build's maps (:data:`ml.mapping.format.MAP_VIEWS`:
    crystal-graph and XRD embeddings); hidden when the build has only one. A map a background
    build is still adding (:func:`components.state.views_being_built`) is a disabled option
    "… (being built)" with a note under the radio saying where its progress goes; the page shows
    it once written (the server reloads the map). ``caption_id`` adds an empty hint paragraph
    under it for a callback to fill."""
    from components.state import building_note, views_being_built

    coming = [v for v in views_being_built() if v not in views]
    options = [{"label": MAP_VIEWS[v][0], "value": v} for v in views]
    options += [{"label": f"{MAP_VIEWS[v][0]} (being built)", "value": v, "disabled": True} for v in coming]
    notes = [note for note in (building_note(VIEW_ITEMS[v]) for v in coming) if note]
    return html.Div(
        id=f"{component_id}-row",
        style={} if len(options) > 1 else {"display": "none"},
        children=[
            html.Label("Map", htmlFor=component_id, className="field-label"),
            dcc.RadioItems(
                id=component_id,
                options=options,
                value=value,
                className="radio-list",
                inputClassName="radio-list__input",
            ),
            *[html.P(note, className="hint", id=f"{component_id}-building") for note in notes[:1]],
            *([html.P(id=caption_id, className="hint")] if caption_id else []),
        ],
    )


def map_update_stores(prefix: str) -> list:
    """The two stores through which a page changes a drawn map in the browser: ``<prefix>-update``
    (a :func:`components.map_figure.map_update` written by a server callback) and
    ``<prefix>-update-applied`` (how many updates plotly has drawn). Wire them once, at import,
    with :func:`register_map_updates`."""
    return [dcc.Store(id=f"{prefix}-update"), dcc.Store(id=f"{prefix}-update-applied")]


def register_map_updates(prefix: str) -> None:
    """Hand every update written to ``<prefix>-update`` to ``matmap.applyMapUpdate``
    (``assets/matmap.js``: ``Plotly.react`` on the update's graph, without touching the Graph's
    ``figure`` prop, which Dash would copy and redraw whole for a ``Patch``)."""
    clientside_callback(
        ClientsideFunction(namespace="matmap", function_name="applyMapUpdate"),
        Output(f"{prefix}-update-applied", "data"),
        Input(f"{prefix}-update", "data"),
        State(f"{prefix}-update-applied", "data"),
        prevent_initial_call=True,
    )
