"""Views of the latent explorer (``/generate``, titled "Latent explorer"): the generated-structure
table, the properties-along-the-path figure, the funnel, the quality gates and the search options.

A *result* is what :func:`ml.service.explorer.interpolate` / :func:`ml.service.explorer.sample_around` return
(rows with CIF text: up to a few MB for 1,000 samples). The service keeps it on the server
(:func:`ml.service.generated.save_result`) and the page's session store holds only its token,
its inputs and a summary (:func:`session_entry`), so the browser's session storage stays small.
"""

from __future__ import annotations

import plotly.graph_objects as go
from dash import html

from components.properties import formula_children
from ml.service.explorer import ABSOLUTE_GATES

#: Columns of the generated-structure grid (a row's ``cif`` is never sent to it).
GRID_COLUMNS = ["index", "t", "formula", "valid", "a", "formation_energy_per_atom", "funnel_stage", "reason"]
HEADERS = {"index": "#", "t": "t", "formula": "formula", "valid": "valid", "a": "cell length a (Å)",
           "formation_energy_per_atom": "predicted E form (eV/atom)", "funnel_stage": "funnel stage",
           "reason": "why invalid"}
#: The funnel of targeted generation, in order, with what each stage means.
FUNNEL_LABELS = {
    "generated": "generated",
    "valid": "valid (parses, 2–40 sites, no two atoms closer than 0.5 Å, cubic, a family's formula)",
    "same_stoichiometry": "same stoichiometry as the base",
    "novel": "novel (formula not among the training crystals)",
    "energy_within_20pct": "predicted formation energy within 20 % of the base's",
    "unique": "unique formula",
}
#: Stages a candidate must reach to count as surviving, deepest first (the funnel's end).
SURVIVING = ("unique", "novel")
def session_entry(result: dict, token: str, key: str) -> dict:
    """What the page's session store keeps of a result: token, the inputs' key, a summary."""
    rows = result["rows"]
    return {"token": token, "key": key, "mode": result["mode"], "inputs": result["inputs"], "n": len(rows),
            "n_valid": sum(bool(r["valid"]) for r in rows), "funnel": result["funnel"],
            "energy_checked": result["energy_checked"]}


# --------------------------------------------------------------------------- table


def grid_records(rows: list[dict]) -> list[dict]:
    """The grid's rows (:data:`GRID_COLUMNS`, no CIF text) with ``row_id``, the row's index as
    text (AG Grid's row id, given back by a clicked cell)."""
    return [{"row_id": str(row["index"]), **{column: row.get(column) for column in GRID_COLUMNS}} for row in rows]


def grid_column_defs(mode: str) -> list[dict]:
    """AG Grid columns for a result of ``mode`` (``t`` only on a path)."""
    defs = []
    for column in GRID_COLUMNS:
        if column == "t" and mode != "interpolate":
            continue
        spec = {"field": column, "headerName": HEADERS[column]}
        if column in ("a", "formation_energy_per_atom", "t"):
            decimals = 2 if column == "t" else 3
            spec.update(type="numericColumn", filter="agNumberColumnFilter",
                        valueFormatter={"function": f"params.value == null ? '—' : d3.format('.{decimals}f')(params.value)"})
        elif column == "index":
            spec.update(width=70, maxWidth=80, pinned="left", type="numericColumn")
        elif column == "valid":
            spec.update(cellDataType=False, valueFormatter={"function": "params.value ? 'yes' : 'no'"}, width=90)
        else:
            spec.update(filter="agTextColumnFilter")
        defs.append(spec)
    return defs


def surviving_rows(rows: list[dict], energy_checked: bool) -> list[dict]:
    """The candidates at the funnel's end: ``unique`` when a formation-energy predictor ran,
    else ``novel`` (the funnel stops there)."""
    stage = SURVIVING[0] if energy_checked else SURVIVING[1]
    return [row for row in rows if row.get("funnel_stage") == stage]


# --------------------------------------------------------------------------- views


def funnel_view(funnel: dict, energy_checked: bool) -> html.Div:
    """The funnel counts as a list of bars (stage, count, share of the generated)."""
    total = max(int(funnel.get("generated") or 0), 1)
    items = []
    for stage, label in FUNNEL_LABELS.items():
        count = funnel.get(stage)
        share = 0 if count is None else count / total
        items.append(html.Li(
            className="funnel__stage" + (" funnel__stage--skipped" if count is None else ""),
            **{"data-stage": stage},
            children=[
                html.Span(label, className="funnel__label"),
                html.Span("—" if count is None else f"{count:,}", className="funnel__count"),
                html.Span(className="funnel__bar", style={"width": f"{100 * share:.1f}%"}),
            ],
        ))
    note = None if energy_checked else html.P(
        "No formation-energy predictor is trained (python -m ml train-property), so the funnel stops at "
        "'novel' and energies show as —.", className="hint")
    return html.Div([html.Ol(items, className="funnel"), note], className="funnel-view")


#: What each quality gate of ``python -m ml evaluate-vae`` measures (validation split).
GATE_LABELS = {
    "random_strict_validity": "random samples strictly valid",
    "reconstruction_exact": "reconstructions with the exact composition",
    "site_count_error": "mean |Δ sites| of reconstructions",
    "cell_length_mae": "cell-length error of reconstructions (Å)",
    "species_recall": "atom sites with the right element",
    "interpolation_ends_exact": "interpolation ends decoding to their own compounds",
    "interpolation_inner_strict_validity": "interpolation steps strictly valid",
    "targeted_strict_validity": "targeted samples strictly valid",
}


def gates_view(summary: dict | None) -> html.Details | None:
    """The generator's quality gates (:func:`ml.service.explorer.evaluation_summary`) as a small
    table: what is measured, our value, the target, passed or not. ``None`` without an evaluation."""
    if not summary:
        return None

    def shown(name, value):
        if value is None:
            return "—"
        return f"{value:.2f}" if name in ABSOLUTE_GATES else f"{100 * value:.1f} %"

    rows = [html.Tr([html.Td(GATE_LABELS.get(name, name)), html.Td(shown(name, gate["value"])),
                     html.Td(f"{gate['op']} {shown(name, gate['target'])}"),
                     html.Td("passed" if gate["passed"] else "not yet",
                             className="badge " + ("badge--ok" if gate["passed"] else "badge--bad"))])
            for name, gate in summary["gates"].items()]
    passed = sum(gate["passed"] for gate in summary["gates"].values())
    return html.Details(className="card generate-gates", id="generate-gates", children=[
        html.Summary(f"Quality of this generator: {passed} of {len(rows)} gates passed on the validation split "
                     "(python -m ml evaluate-vae)"),
        html.Table(className="gates-table", children=[
            html.Thead(html.Tr([html.Th("measured"), html.Th("this model"), html.Th("target"), html.Th("")])),
            html.Tbody(rows)]),
    ])


def step_summary(row: dict) -> html.Div:
    """One generated structure: formula, validity, cell length, predicted formation energy."""
    energy = row.get("formation_energy_per_atom")
    t = row.get("t")
    label = f"step {row['index'] + 1} (t = {t:.2f})" if t is not None else f"sample {row['index']}"
    return html.Div(
        className="step-summary",
        children=[
            html.Strong(label), " ",
            html.Span(formula_children(row.get("formula") or "no structure"), className="formula"),
            html.Span(" valid" if row.get("valid") else f" invalid: {row.get('reason') or 'did not decode'}",
                      className="badge " + ("badge--ok" if row.get("valid") else "badge--bad")),
            html.Span(f"  a = {row['a']:.3f} Å", className="muted"),
            html.Span("  predicted E form " + ("—" if energy is None else f"{energy:.3f} eV/atom"), className="muted"),
        ],
    )


def make_path_figure(rows: list[dict]) -> go.Figure:
    """Cell length a (Å, left axis) and predicted formation energy (eV/atom, right axis) along
    the path; valid steps filled, invalid ones open. ``x`` is the step number (1-based)."""
    steps = [row["index"] + 1 for row in rows]
    symbols = ["circle" if row.get("valid") else "circle-open" for row in rows]
    text = [f"{row.get('formula') or 'no structure'} · {'valid' if row.get('valid') else 'invalid'}" for row in rows]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=steps, y=[row.get("a") for row in rows], name="cell length a (Å)",
                                mode="lines+markers", marker={"symbol": symbols, "size": 9}, text=text,
                                hovertemplate="step %{x}: a = %{y:.3f} Å<br>%{text}<extra></extra>"))
    energies = [row.get("formation_energy_per_atom") for row in rows]
    if any(e is not None for e in energies):
        figure.add_trace(go.Scatter(x=steps, y=energies, name="predicted E form (eV/atom)", yaxis="y2",
                                    mode="lines+markers", marker={"symbol": symbols, "size": 9}, text=text,
                                    hovertemplate="step %{x}: %{y:.3f} eV/atom<br>%{text}<extra></extra>"))
    figure.update_layout(
        margin={"l": 60, "r": 60, "t": 30, "b": 45}, height=320, template="plotly_white",
        legend={"orientation": "h", "y": 1.12},
        xaxis={"title": "step", "dtick": 1 if len(rows) <= 15 else None},
        yaxis={"title": "cell length a (Å)"},
        yaxis2={"title": "E form (eV/atom)", "overlaying": "y", "side": "right", "showgrid": False},
    )
    return figure


def compound_label(row: dict) -> str:
    """Dropdown label of a VAE-set row: ``NaCl · mp-22862 · binary AB``."""
    return f"{row['formula']} · {row['material_id']} · {str(row.get('family') or '').replace('_', ' ')}"


def decile_options() -> list[dict]:
    """The condition's choices: the base's own decile, or 0 (most stable) … 9."""
    options = [{"label": "the base's own decile", "value": "own"}]
    for decile in range(10):
        hint = " (most stable)" if decile == 0 else " (least stable)" if decile == 9 else ""
        options.append({"label": f"decile {decile}{hint}", "value": str(decile)})
    return options
