"""The controls and the empty result of ``/generate`` (the latent explorer, ``pages/generate.py``):
what the page shows before any decoding, and the card shown when no generator is ready."""

from __future__ import annotations

import dash_ag_grid as dag
from dash import dcc, html

from components.latent_explorer import compound_label, decile_options, grid_column_defs
from components.map_style import GRAPH_CONFIG
from components.structure_view import StructureView
from ml.service import explorer

#: The id of the 3D structure view (components.structure_view.StructureView) on the page.
VIEW_ID = "generate"
MODES = {"interpolate": "Interpolate between two compounds", "around": "Generate around a compound"}


def unavailable_card(problem: dict) -> html.Div:
    """Why the explorer cannot run and the exact command that fixes it."""
    return html.Div(
        className="card card--notice explorer-missing",
        children=[
            html.H2("The latent explorer is not ready"),
            html.P(problem["message"], className="muted"),
            html.P("Run this from the repository root, then reload this page (no restart needed):"),
            html.Pre(html.Code(problem["command"]), className="command"),
        ],
    )


def compound_options(material_id: str | None) -> list[dict]:
    """The one option of a preset compound dropdown (its label from the VAE set)."""
    if not material_id:
        return []
    try:
        row = explorer.material_row(material_id)
    except explorer.ExplorerUnavailable:
        return []
    return [{"label": compound_label(row), "value": row["material_id"]}] if row else [
        {"label": material_id, "value": material_id}]


def _compound(id_: str, label: str, value: str | None) -> list:
    """A labelled compound dropdown, searched as the user types."""
    return [
        html.Label(label, htmlFor=id_, className="field-label"),
        dcc.Dropdown(id=id_, options=compound_options(value), value=value, placeholder="formula or id, e.g. NaCl or mp-22862",
                     persistence=True, persistence_type="session", className="compound-dropdown"),
    ]


def generate_page(around=None, a=None, b=None) -> html.Div:
    """The controls of both modes (``around``: generate around that id; ``a``, ``b``: a path's
    ends) and the empty result (:func:`_results_skeleton`)."""
    mode = "around" if around else "interpolate"
    return html.Div(
        className="page generate-page",
        children=[
            html.H1("Latent explorer"),
            html.P(["The voxel VAE of Court et al. (2020) learned a latent space of cubic crystals: binary AB alloys, "
                    "ABX3 perovskites, Heusler and half-Heusler compounds. Walk the straight path between two of them, "
                    "or sample new candidates around one. Search by formula or id, or open a compound's page from the ",
                    dcc.Link("map", href="/"), " and follow “Generate around this compound”."], className="lead"),
            html.Section(className="card generate-controls", children=[
                dcc.Tabs(id="generate-mode", value=mode, persistence=True, persistence_type="session", children=[
                    dcc.Tab(label=MODES["interpolate"], value="interpolate", children=html.Div(
                        className="generate-fields", children=[
                            *_compound("generate-a", "First compound", a),
                            *_compound("generate-b", "Second compound", b),
                            html.Label("Steps (both ends included)", htmlFor="generate-steps", className="field-label"),
                            dcc.Input(id="generate-steps", type="number", min=2, max=explorer.MAX_STEPS, step=1,
                                      value=explorer.DEFAULT_STEPS, persistence=True, persistence_type="session",
                                      className="number-input"),
                        ])),
                    dcc.Tab(label=MODES["around"], value="around", children=html.Div(
                        className="generate-fields", children=[
                            *_compound("generate-base", "Compound", around),
                            html.Label("Variance of each latent coordinate", htmlFor="generate-variance",
                                       className="field-label"),
                            dcc.Input(id="generate-variance", type="number", min=0.01, max=explorer.MAX_VARIANCE,
                                      step="any", value=explorer.DEFAULT_VARIANCE, persistence=True,
                                      persistence_type="session", className="number-input"),
                            html.Label("Condition: formation-energy decile", htmlFor="generate-decile",
                                       className="field-label"),
                            dcc.Dropdown(id="generate-decile", options=decile_options(), value="own", clearable=False,
                                         searchable=False, persistence=True, persistence_type="session"),
                            html.Label("Samples", htmlFor="generate-n", className="field-label"),
                            dcc.Input(id="generate-n", type="number", min=1, max=explorer.MAX_SAMPLES, step=1,
                                      value=explorer.DEFAULT_SAMPLES, persistence=True, persistence_type="session",
                                      className="number-input"),
                        ])),
                ]),
                html.Div(className="button-row", children=[
                    html.Button("Decode", id="generate-run", className="button", n_clicks=0),
                    html.Button("Cancel", id="generate-cancel", className="button button--secondary", n_clicks=0,
                                disabled=True),
                ]),
                html.Div(id="generate-progress-box", className="concept-progress", style={"display": "none"}, children=[
                    html.Progress(id="generate-progress", max=1, value=0, className="concept-progress__bar"),
                    html.Span(id="generate-progress-text", className="muted"),
                ]),
                html.Div(id="generate-message", role="status"),
            ]),
            html.Div(id="generate-results", className="generate-results", children=_results_skeleton()),
            dcc.Store(id="generate-result", storage_type="session"),
            dcc.Store(id="generate-selected", storage_type="session"),
        ],
    )


def _results_skeleton() -> list:
    """The result's cards, empty until a decoding: structure, path or funnel, table, map."""
    return [
        html.Div(id="generate-summary", children=html.P("Choose the inputs and press Decode.", className="muted")),
        html.Div(className="grid-2", children=[
            html.Section(className="card", children=[
                html.H2("Structure"),
                html.Div(id="generate-slider-box", style={"display": "none"}, children=[
                    html.Label("Step along the path", htmlFor="generate-slider", className="field-label"),
                    dcc.Slider(id="generate-slider", min=1, max=2, step=1, value=1, marks=None,
                               tooltip={"placement": "bottom"}),
                ]),
                html.Div(id="generate-step"),
                dcc.Loading(StructureView(VIEW_ID), type="circle", delay_show=200),
                html.Div(id="generate-structure-message"),
                html.Div(className="button-row", children=[
                    html.Button("Download CIF", id="generate-cif-button", className="button button--secondary",
                                n_clicks=0, disabled=True),
                    html.Button("Place on map", id="generate-place", className="button button--secondary",
                                n_clicks=0, disabled=True),
                    dcc.Download(id="generate-cif-download"),
                ]),
            ]),
            html.Section(className="card", children=[
                html.H2(id="generate-side-title", children="Along the path"),
                html.Div(id="generate-funnel"),
                dcc.Graph(id="generate-path-figure", config={"displaylogo": False}, style={"display": "none"}),
            ]),
        ]),
        html.Section(className="card", children=[
            html.Div(className="section-head", children=[
                html.H2("Generated structures"),
                html.Div(className="button-row", children=[
                    dcc.Checklist(id="generate-surviving", options=[{"label": " surviving candidates only",
                                                                     "value": "surviving"}],
                                  value=[], inline=True),
                    html.Button("Download all CIFs (zip)", id="generate-zip-button", className="button button--secondary",
                                n_clicks=0, disabled=True),
                    dcc.Download(id="generate-zip-download"),
                ]),
            ]),
            html.P("Click a row to show its structure. Cell length from the decoded coordinate channels; formation "
                   "energy predicted by the CGCNN property model where one is trained.", className="hint"),
            dag.AgGrid(id="generate-grid", rowData=[], columnDefs=grid_column_defs("interpolate"),
                       defaultColDef={"sortable": True, "resizable": True, "filter": True, "minWidth": 80},
                       dashGridOptions={"animateRows": False, "rowHeight": 32, "headerHeight": 36},
                       getRowId="params.data.row_id", columnSize="autoSize",
                       style={"height": "360px", "width": "100%"}, className="generate-grid"),
        ]),
        html.Section(className="card", id="generate-place-card", style={"display": "none"}, children=[
            html.H2("On the materials map"),
            dcc.Loading(html.Div(id="generate-placed"), type="circle", delay_show=200),
            dcc.Graph(id="generate-place-map", config=GRAPH_CONFIG,
                      className="neighbor-map", style={"display": "none"}),
        ]),
    ]
