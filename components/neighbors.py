"""Neighbour tables: the AG Grid, its column definitions and the CSV export.

A neighbour table is what :meth:`ml.mapping.artifacts.MapArtifacts.neighbors` returns: columns
:data:`ml.mapping.format.NEIGHBOR_COLUMNS` (``rank``, ``material_id``, ``formula``, ``distance``)
then property columns. :class:`NeighborPanel` is an All-in-One component: the grid (each id
links to its material page), a "Columns" chooser, a "Download CSV" button and the download,
wired by module-level ``MATCH`` callbacks. The CSV has every column of the table in table
order, with the units in the headers and rounded values (:func:`ml.mapping.tables.table_csv`, as
``python -m ml neighbors``), whichever columns the grid shows.

The grid fits its width (no horizontal scrolling at a 1400-px window): it shows the id, the
formula, the distance (or score) and the key properties (:data:`DEFAULT_VISIBLE`); the other
columns are one click away in the chooser.
"""

from __future__ import annotations

import dash_ag_grid as dag
import pandas as pd
from dash import MATCH, Input, Output, State, callback, dcc, html, no_update

from ml.service import NEIGHBOR_COLUMNS, column_label, plain_record, table_csv

#: Decimal places shown in the grid per column (the CSV export: ``ml.mapping.tables.CSV_DECIMALS``).
DECIMALS = {
    "distance": 3,
    "formation_energy_per_atom": 3,
    "energy_per_atom": 3,
    "band_gap": 3,
    "total_magnetization": 2,
    "density": 3,
    "e_above_hull": 3,
    "tc_kelvin": 1,
    "score": 3,
}
INTEGER_COLUMNS = {"rank", "spacegroup_number", "nsites", "nelements"}
#: Columns the grid shows until the user picks others (those present in a table); the id,
#: rank, formula and distance / score are always shown.
DEFAULT_VISIBLE = ("formation_energy_per_atom", "band_gap", "crystal_system", "supercon_label")
ALWAYS_VISIBLE = ("rank", "material_id", "formula", "distance", "score")
#: Starting widths of the columns, px (the grid scales them to its width; ``MIN_WIDTHS`` hold).
#: The formula column fits the longest mp2024 formula, ``Sr40Fe18Co2Mo20O120`` (19 characters).
WIDTHS = {"rank": 52, "material_id": 100, "formula": 168, "distance": 84, "score": 80, "crystal_system": 112,
          "supercon_label": 140}
MIN_WIDTHS = {"rank": 48, "material_id": 96, "formula": 160, "distance": 76, "score": 72, "supercon_label": 132}
DEFAULT_WIDTH = 100
DEFAULT_MIN_WIDTH = 72
#: Short grid headers (units kept); the header tooltip gives the full ``column_label``.
HEADERS = {
    "rank": "#",
    "material_id": "material",
    "distance": "distance",
    "formation_energy_per_atom": "E form (eV/atom)",
    "energy_per_atom": "E (eV/atom)",
    "e_above_hull": "E hull (eV/atom)",
    "band_gap": "gap (eV)",
    "total_magnetization": "mag. (μB/cell)",
    "density": "ρ (g/cm³)",
    "spacegroup_number": "space group",
    "crystal_system": "crystal system",
    "supercon_label": "SuperCon",
    "tc_kelvin": "Tc (K)",
    "nelements": "elements",
    "nsites": "sites",
}


def neighbor_records(table: pd.DataFrame) -> list[dict]:
    """The rows of a neighbour table as JSON-ready dicts (:func:`ml.service.plain_record`)."""
    return [plain_record(row) for row in table.to_dict("records")]


def neighbors_csv(records: list[dict], columns: list[str], units: dict[str, str] | None = None) -> str:
    """CSV text of neighbour ``records`` with ``columns`` in that order, as ``python -m ml
    neighbors`` writes it (:func:`ml.mapping.tables.table_csv`: units in the headers, ``units``
    overriding the defaults, rounded floats, empty cells for missing values)."""
    return table_csv(pd.DataFrame.from_records(records, columns=columns), units)


def default_visible(columns: list[str]) -> list[str]:
    """The columns of ``columns`` the grid shows by default, in table order: the always-shown
    ones and :data:`DEFAULT_VISIBLE`."""
    return [c for c in columns if c in ALWAYS_VISIBLE or c in DEFAULT_VISIBLE]


def optional_columns(columns: list[str]) -> list[str]:
    """The columns of ``columns`` the user may show or hide (all but :data:`ALWAYS_VISIBLE`)."""
    return [c for c in columns if c not in ALWAYS_VISIBLE]


def column_defs(columns: list[str], visible: list[str] | None = None) -> list[dict]:
    """AG Grid column definitions for a neighbour table's ``columns``: headers with units,
    ids rendered as links to ``/material/<id>``, numbers formatted, sortable and filterable,
    widths that let the grid fit its width (:data:`WIDTHS`).

    Args:
        columns: the table's columns, in order.
        visible: the optional columns to show (default: :func:`default_visible`); the
            columns of :data:`ALWAYS_VISIBLE` are always shown, the others get ``hide``.
    """
    shown = set(default_visible(columns) if visible is None else visible) | set(ALWAYS_VISIBLE)
    defs = []
    for column in columns:
        header = HEADERS.get(column) or column_label(column)
        spec: dict = {"field": column, "headerName": header, "headerTooltip": column_label(column),
                      "hide": column not in shown, "width": WIDTHS.get(column, DEFAULT_WIDTH),
                      "minWidth": MIN_WIDTHS.get(column, DEFAULT_MIN_WIDTH)}
        if column == "material_id":
            spec.update(cellRenderer="MaterialLink", pinned="left", filter="agTextColumnFilter")
        elif column == "rank":
            spec.update(maxWidth=72, pinned="left", filter="agNumberColumnFilter", type="numericColumn")
        elif column == "formula":
            spec.update(filter="agTextColumnFilter", tooltipField="formula")
        elif column in DECIMALS:
            spec.update(
                filter="agNumberColumnFilter",
                type="numericColumn",
                valueFormatter={"function": f"params.value == null ? '' : d3.format('.{DECIMALS[column]}f')(params.value)"},
            )
        elif column in INTEGER_COLUMNS:
            spec.update(filter="agNumberColumnFilter", type="numericColumn")
        else:
            spec.update(filter="agTextColumnFilter")
        defs.append(spec)
    return defs


class NeighborPanel(html.Div):
    """All-in-One neighbour grid with a CSV download.

    Args:
        aio_id: unique id of this panel on its page.
        rows: the neighbour table as records (:func:`neighbor_records`); ``None``: empty,
            filled later by a page callback writing ``rowData`` of :meth:`ids.grid`.
        columns: the table's columns in order (default :data:`NEIGHBOR_COLUMNS`).
        filename: name of the downloaded CSV.
        height: CSS height of the grid.
        units: column → unit for the CSV headers where the defaults of
            :func:`ml.mapping.tables.table_csv` do not hold (a descriptor's ``distance``).
        visible: the optional columns shown at first (default: :data:`DEFAULT_VISIBLE`; ``[]``:
            only id, rank, formula and distance, for narrow panels); the chooser shows the rest.
    """

    class ids:
        @staticmethod
        def grid(aio_id: str) -> dict:
            return {"component": "NeighborPanel", "subcomponent": "grid", "aio_id": aio_id}

        @staticmethod
        def meta(aio_id: str) -> dict:
            return {"component": "NeighborPanel", "subcomponent": "meta", "aio_id": aio_id}

        @staticmethod
        def button(aio_id: str) -> dict:
            return {"component": "NeighborPanel", "subcomponent": "button", "aio_id": aio_id}

        @staticmethod
        def download(aio_id: str) -> dict:
            return {"component": "NeighborPanel", "subcomponent": "download", "aio_id": aio_id}

        @staticmethod
        def columns(aio_id: str) -> dict:
            return {"component": "NeighborPanel", "subcomponent": "columns", "aio_id": aio_id}


    def __init__(self, aio_id: str, rows: list[dict] | None = None, columns: list[str] | None = None,
                 filename: str = "neighbors.csv", height: str = "420px", units: dict[str, str] | None = None,
                 visible: list[str] | None = None):
        columns = list(columns) if columns else list(NEIGHBOR_COLUMNS)
        shown = [c for c in (default_visible(columns) if visible is None else visible) if c in optional_columns(columns)]
        super().__init__(
            className="neighbor-panel",
            children=[
                html.Div(
                    className="neighbor-panel__bar",
                    children=[
                        html.Details(
                            className="column-chooser",
                            children=[
                                html.Summary("Columns", className="button button--secondary"),
                                dcc.Checklist(
                                    id=self.ids.columns(aio_id),
                                    options=column_options(columns),
                                    value=shown,
                                    className="column-chooser__list",
                                    inputClassName="column-chooser__input",
                                ),
                            ],
                        ),
                        html.Button("Download CSV", id=self.ids.button(aio_id), className="button button--secondary", n_clicks=0),
                        dcc.Download(id=self.ids.download(aio_id)),
                    ],
                ),
                dcc.Store(id=self.ids.meta(aio_id), data=panel_meta(columns, filename, units)),
                dag.AgGrid(
                    id=self.ids.grid(aio_id),
                    rowData=rows or [],
                    columnDefs=column_defs(columns, shown),
                    defaultColDef={"sortable": True, "resizable": True, "filter": True, "wrapHeaderText": True,
                                   "autoHeaderHeight": True},
                    dashGridOptions={"animateRows": False, "rowHeight": 32, "headerHeight": 36,
                                     "tooltipShowDelay": 300, "enableCellTextSelection": True},
                    getRowId="params.data.material_id",
                    columnSize="responsiveSizeToFit",
                    style={"height": height, "width": "100%"},
                    className="neighbor-grid",
                ),
            ],
        )


def column_options(columns: list[str]) -> list[dict]:
    """The column chooser's options: the optional columns of ``columns``, by their grid header."""
    return [{"label": HEADERS.get(c) or column_label(c), "value": c} for c in optional_columns(columns)]


def panel_meta(columns: list[str], filename: str, units: dict[str, str] | None = None) -> dict:
    """What the CSV callback needs besides the rows: column order, file name, unit overrides."""
    return {"columns": list(columns), "filename": filename, "units": dict(units or {})}


def chosen_columns(columns: list[str], visible: list[str] | None, known: list[str] | None) -> list[str]:
    """The optional columns to show of a table with ``columns``: those the user ticked
    (``visible``) and, among the columns the chooser did not offer before (not in ``known``:
    a page filled the table after its first layout), :data:`DEFAULT_VISIBLE`. In table order."""
    visible, known = set(visible or []), set(known or [])
    return [c for c in optional_columns(columns) if c in visible or (c not in known and c in DEFAULT_VISIBLE)]


@callback(
    Output(NeighborPanel.ids.grid(MATCH), "columnDefs"),
    Output(NeighborPanel.ids.columns(MATCH), "options"),
    Output(NeighborPanel.ids.columns(MATCH), "value"),
    Input(NeighborPanel.ids.columns(MATCH), "value"),
    Input(NeighborPanel.ids.meta(MATCH), "data"),
    State(NeighborPanel.ids.columns(MATCH), "options"),
    prevent_initial_call=True,
)
def choose_columns(visible, meta, options):
    """The grid's columns after a tick in the chooser, or after a page replaced the table
    (``meta``): the table's columns with the chosen optional ones shown."""
    if not meta:
        return no_update, no_update, no_update
    columns = meta["columns"]
    chosen = chosen_columns(columns, visible, [o["value"] for o in options or []])
    return column_defs(columns, chosen), column_options(columns), chosen


@callback(
    Output(NeighborPanel.ids.download(MATCH), "data"),
    Input(NeighborPanel.ids.button(MATCH), "n_clicks"),
    State(NeighborPanel.ids.grid(MATCH), "rowData"),
    State(NeighborPanel.ids.meta(MATCH), "data"),
    prevent_initial_call=True,
)
def download_csv(n_clicks, rows, meta):
    """The grid's rows as a CSV download (rank order, column names with units)."""
    if not n_clicks or not rows or not meta:
        return no_update
    return {"content": neighbors_csv(rows, meta["columns"], meta.get("units")), "filename": meta["filename"], "type": "text/csv"}
