"""``/generate``: the latent explorer of the voxel VAE (Court et al. 2020).

Two modes over the VAE's crystals (cubic AB alloys, ABX3 perovskites, Heusler and half-Heusler
compounds): **interpolate** decodes the straight latent path between two compounds, step by
step; **generate around** samples latent vectors around one compound under a formation-energy
decile and runs the targeted funnel. Decoding is a Dash background callback (progress, cancel),
through the torch-free facade :mod:`ml.service.explorer`. The result lives on the server
(:func:`ml.service.generated.save_result`); the session store keeps its token and the key of
the inputs it was made from, and forgets it as soon as an input changes. Any generated
structure can be shown in 3D, downloaded as a CIF (all of them as a zip) and placed on the
materials map (:meth:`ml.service.LoadedMap.locate`).

URL parameters preset the inputs: ``/generate?around=mp-…`` (generate around that compound),
``/generate?a=mp-…&b=mp-…`` (a path).
"""

from __future__ import annotations

import json

import dash
import numpy as np
from dash import Input, Output, State, callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from components.background import progress_job_options
from components.common import missing_page, notice
from components.generate_form import VIEW_ID, compound_options, generate_page, unavailable_card
from components.latent_explorer import (
    compound_label,
    funnel_view,
    gates_view,
    grid_column_defs,
    grid_records,
    make_path_figure,
    session_entry,
    step_summary,
    surviving_rows,
)
from components.located import place_cif_result, result_card
from components.map_figure import make_neighbors_map_figure
from components.map_image import map_image
from components.state import building_note, is_loading, map_or_error
from components.structure_view import (
    StructureView,
    StructureViewError,
    empty_scene,
    legend_chips,
    structure_scene,
)
from ml.service import explorer
from ml.service.building import VOXEL_STORE
from ml.service.generated import cif_name, cif_zip, load_result, save_result, structure_of

dash.register_page(__name__, path="/generate", name="Generate", title="matmap · latent explorer", order=4)

PLACE_K = 10


def layout(around: str | None = None, a: str | None = None, b: str | None = None, **_):
    """The controls of both modes and the result; a message with the command to run when no
    generator is trained or its voxel store is missing."""
    page = generate_page(around=around, a=a, b=b)
    if is_loading() and not explorer.loaded():  # the server's start-up loads it (components.state)
        return missing_page("The server is loading the map and the crystal generator.", page)
    problem = explorer.unavailable()
    if problem is None:
        gates = gates_view(explorer.evaluation_summary())
        if gates is not None:
            page.children.insert(2, gates)
        warning = explorer.quality_warning()
        if warning is not None:  # under the title
            page.children.insert(1, notice(warning, "warning", id="generate-quality"))
        return page
    building = building_note(VOXEL_STORE)  # ./run.sh builds the voxel store in the background
    shown = [notice(building, "info", id="generate-building")] if building else []
    return html.Div([*shown, unavailable_card(problem), html.Div(page, hidden=True)], className="page")


# --------------------------------------------------------------------------- inputs


def inputs_key(mode, a, b, steps, base, variance, decile, n) -> str:
    """A text naming the inputs of ``mode`` (a result is valid only for its key)."""
    if mode == "interpolate":
        values = {"mode": mode, "a": a, "b": b, "steps": steps}
    else:
        values = {"mode": mode, "base": base, "variance": variance, "decile": decile, "n": n}
    return json.dumps(values, sort_keys=True)


def _search_options(search, value):
    """Dropdown options: the VAE set's matches of the typed text, and the current value."""
    try:
        rows = explorer.search(search) if search else []
    except explorer.ExplorerUnavailable:
        return []
    options = [{"label": compound_label(row), "value": row["material_id"]} for row in rows]
    if value and value not in {o["value"] for o in options}:
        options = compound_options(value) + options
    return options


for _dropdown in ("generate-a", "generate-b", "generate-base"):
    callback(Output(_dropdown, "options"), Input(_dropdown, "search_value"), State(_dropdown, "value"))(_search_options)


@callback(
    Output("generate-result", "data", allow_duplicate=True),
    Input("generate-mode", "value"),
    Input("generate-a", "value"),
    Input("generate-b", "value"),
    Input("generate-steps", "value"),
    Input("generate-base", "value"),
    Input("generate-variance", "value"),
    Input("generate-decile", "value"),
    Input("generate-n", "value"),
    State("generate-result", "data"),
    prevent_initial_call="initial_duplicate",
)
def inputs_changed(mode, a, b, steps, base, variance, decile, n, entry):
    """Forget a result made from other inputs (kept while they stay the same)."""
    if entry and entry.get("key") != inputs_key(mode, a, b, steps, base, variance, decile, n):
        return None
    raise PreventUpdate


# --------------------------------------------------------------------------- decoding


def run_decoding(mode, a, b, steps, base, variance, decile, n, progress=None) -> tuple:
    """``(session entry, message)`` of decoding with these inputs: the entry (result saved on
    the server) and no message, or no update and a message saying what is wrong."""
    try:
        if mode == "interpolate":
            result = explorer.interpolate(a, b, steps, progress=progress)
        else:
            result = explorer.sample_around(base, variance, n, decile=None if decile in (None, "own") else decile,
                                            progress=progress)
    except explorer.ExplorerUnavailable as error:
        return no_update, notice([str(error), " Run: ", html.Code(error.command)], "error")
    except explorer.ExplorerError as error:
        return no_update, notice(str(error), "error")
    key = inputs_key(mode, a, b, steps, base, variance, decile, n)
    return session_entry(result, save_result(result), key), None


@callback(
    Output("generate-result", "data"),
    Output("generate-message", "children"),
    Input("generate-run", "n_clicks"),
    State("generate-mode", "value"),
    State("generate-a", "value"),
    State("generate-b", "value"),
    State("generate-steps", "value"),
    State("generate-base", "value"),
    State("generate-variance", "value"),
    State("generate-decile", "value"),
    State("generate-n", "value"),
    **progress_job_options("generate", "generate-run"),
    prevent_initial_call=True,
)
def decode(set_progress, n_clicks, mode, a, b, steps, base, variance, decile, n):
    """Decode in a background process, reporting "decoded 40 / 100"."""
    if not n_clicks:
        raise PreventUpdate
    return run_decoding(mode, a, b, steps, base, variance, decile, n,
                        progress=lambda done, total: set_progress((done, total, f"decoded {done} / {total}")))


# --------------------------------------------------------------------------- showing a result


@callback(
    Output("generate-summary", "children"),
    Output("generate-grid", "rowData"),
    Output("generate-grid", "columnDefs"),
    Output("generate-funnel", "children"),
    Output("generate-path-figure", "figure"),
    Output("generate-path-figure", "style"),
    Output("generate-side-title", "children"),
    Output("generate-slider-box", "style"),
    Output("generate-slider", "max"),
    Output("generate-zip-button", "disabled"),
    Input("generate-result", "data"),
    Input("generate-surviving", "value"),
)
def show_result(entry, surviving):
    """The summary, the table, the funnel or the path figure of the session's result."""
    result = load_result((entry or {}).get("token"))
    hidden = {"display": "none"}
    if result is None:
        empty = html.P("Choose the inputs and press Decode.", className="muted")
        return empty, [], no_update, None, {}, hidden, "Along the path", hidden, 2, True
    rows = result["rows"]
    n_valid = sum(bool(r["valid"]) for r in rows)
    if result["mode"] == "interpolate":
        inputs = result["inputs"]
        summary = html.P(f"{len(rows)} steps from {inputs['a']} to {inputs['b']}; {n_valid} decode into valid "
                         "structures.", className="generate-summary__text")
        return (summary, grid_records(rows), grid_column_defs("interpolate"), None, make_path_figure(rows), {},
                "Along the path", {}, len(rows), False)
    shown = surviving_rows(rows, result["energy_checked"]) if "surviving" in (surviving or []) else rows
    inputs = result["inputs"]
    summary = html.P(f"{len(rows)} samples around {inputs['base']} (variance {inputs['variance']:g}); "
                     f"{n_valid} valid, {len(surviving_rows(rows, result['energy_checked']))} surviving the funnel.",
                     className="generate-summary__text")
    return (summary, grid_records(shown), grid_column_defs("around"), funnel_view(result["funnel"],
            result["energy_checked"]), {}, hidden, "Funnel", hidden, 2, False)


@callback(
    Output("generate-selected", "data"),
    Output("generate-slider", "value"),
    Input("generate-slider", "value"),
    Input("generate-grid", "cellClicked"),
    Input("generate-result", "data"),
    State("generate-selected", "data"),
)
def select(step, clicked, entry, selected):
    """The structure to show: the slider's step, a clicked row, or the first of a new result."""
    return choose(ctx.triggered_id, step, clicked, entry, selected)


def choose(trigger, step, clicked, entry, selected) -> tuple:
    """``(generate-selected, slider value)`` after ``trigger`` (the id of the input that changed).
    The slider counts steps from 1, as the step labels and the path figure do; rows from 0."""
    result = load_result((entry or {}).get("token"))
    if result is None:
        return None, 1
    n = len(result["rows"])
    if trigger == "generate-slider":
        index = (step or 1) - 1
    elif trigger == "generate-grid" and str((clicked or {}).get("rowId")).isdigit():
        index = int(clicked["rowId"])
    elif selected is not None and selected.get("token") == entry["token"]:
        index = selected["index"]  # the page shown again: keep the choice
    else:
        index = _first_decoded(result["rows"])
    index = int(np.clip(index or 0, 0, n - 1))
    return {"token": entry["token"], "index": index}, index + 1 if result["mode"] == "interpolate" else no_update


def _first_decoded(rows: list[dict]) -> int:
    return next((r["index"] for r in rows if r.get("valid")), next((r["index"] for r in rows if r.get("cif")), 0))


def selected_row(selected) -> dict | None:
    """The result row the store ``generate-selected`` points at."""
    return _selection(selected)[1]


def _selection(selected) -> tuple[dict | None, dict | None]:
    """``(result, row)`` the store ``generate-selected`` points at (``None`` where missing)."""
    result = load_result((selected or {}).get("token"))
    if result is None or not 0 <= selected.get("index", -1) < len(result["rows"]):
        return result, None
    return result, result["rows"][selected["index"]]


def _chosen_structure(n_clicks, selected) -> tuple[dict, dict]:
    """``(result, row)`` of a button press on the chosen decoded structure.

    Raises:
        PreventUpdate: no press, nothing chosen, or the chosen row did not decode.
    """
    result, row = _selection(selected)
    if not n_clicks or row is None or not row.get("cif"):
        raise PreventUpdate
    return result, row


@callback(
    Output(StructureView.ids.scene(VIEW_ID), "data"),
    Output(StructureView.ids.legend(VIEW_ID), "children"),
    Output("generate-step", "children"),
    Output("generate-structure-message", "children"),
    Output("generate-cif-button", "disabled"),
    Output("generate-place", "disabled"),
    Input("generate-selected", "data"),
)
def draw_structure(selected):
    """The chosen structure in 3D with its formula, validity, cell length and energy."""
    row = selected_row(selected)
    if row is None:
        return empty_scene(), [], None, None, True, True
    if not row.get("cif"):
        return empty_scene(), [], step_summary(row), notice("Nothing decoded at this point: " + (row.get("reason") or ""),
                                                            "warning"), True, True
    try:
        scene, colors = structure_scene(structure_of(row["cif"]))
    except (StructureViewError, ValueError) as error:
        return empty_scene(), [], step_summary(row), notice(f"The structure cannot be drawn: {error}", "error"), False, False
    return scene, legend_chips(colors), step_summary(row), None, False, False


def _stem(result: dict) -> str:
    """The file-name stem of a result's downloads: ``path_<a>_<b>`` or ``around_<base>``."""
    inputs = result.get("inputs") or {}
    if result.get("mode") == "interpolate":
        return f"path_{inputs.get('a')}_{inputs.get('b')}"
    return f"around_{inputs.get('base')}"


@callback(
    Output("generate-cif-download", "data"),
    Input("generate-cif-button", "n_clicks"),
    State("generate-selected", "data"),
    prevent_initial_call=True,
)
def download_cif(n_clicks, selected):
    """The chosen structure's CIF."""
    result, row = _chosen_structure(n_clicks, selected)
    return {"content": row["cif"], "filename": f"{_stem(result)}_{cif_name(row)}", "type": "chemical/x-cif"}


@callback(
    Output("generate-zip-download", "data"),
    Input("generate-zip-button", "n_clicks"),
    State("generate-result", "data"),
    prevent_initial_call=True,
)
def download_zip(n_clicks, entry):
    """Every decoded structure of the result as CIFs, with the table as CSV, in one zip."""
    result = load_result((entry or {}).get("token"))
    if not n_clicks or result is None:
        raise PreventUpdate
    stem = _stem(result)
    return dcc.send_bytes(cif_zip(result["rows"], stem), f"{stem}.zip")


# --------------------------------------------------------------------------- placing on the map


def place(atlas, row: dict, stem: str) -> dict:
    """The located-result dict (:func:`components.located.place_cif_result`) of one generated row."""
    return place_cif_result(atlas, row["cif"], f"{stem}_{cif_name(row)}", f"generated-{row['index']}", PLACE_K)


@callback(
    Output("generate-placed", "children"),
    Output("generate-place-map", "figure"),
    Output("generate-place-map", "style"),
    Output("generate-place-card", "style"),
    Input("generate-place", "n_clicks"),
    State("generate-selected", "data"),
    prevent_initial_call=True,
)
def place_on_map(n_clicks, selected):
    """Embed the chosen structure with the map's model and show its nearest known materials."""
    result, row = _chosen_structure(n_clicks, selected)
    atlas, error = map_or_error()
    if atlas is None:
        return notice(f"No map to place it on: {error}", "error"), {}, {"display": "none"}, {}
    located = place(atlas, row, _stem(result))
    card = result_card(located)
    if not located["ok"]:
        return card, {}, {"display": "none"}, {}
    rows = [r for r in located["rows"] if r["material_id"] in atlas]
    xy = atlas.coordinates
    figure = make_neighbors_map_figure(
        map_image(atlas, "crystal"), (located["x"], located["y"]), xy[[atlas.row_of(r["material_id"]) for r in rows]],
        np.array([r["distance"] for r in rows]),
        neighbor_text=[f"{r['formula']} · {r['material_id']}" for r in rows],
        neighbor_ids=[r["material_id"] for r in rows], query_label=f"generated {row.get('formula') or ''}")
    return card, figure, {}, {}

