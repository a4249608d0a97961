"""Neighbour tables: the AG Grid, its column definitions and the CSV export.

A neighbour table is what :meth:`ml.artifacts.MapArtifacts.neighbors` returns: columns
:data:`ml.artifacts.NEIGHBOR_COLUMNS` (``rank``, ``material_id``, ``formula``, ``distance``)
then property columns. :class:`NeighborPanel` is an All-in-One component: the grid (each id
links to its material page), a "Download CSV" button and the download, wired by one
module-level ``MATCH`` callback that writes the grid's rows in table order, with the units in
the headers and rounded values (:func:`ml.artifacts.table_csv`, as ``python -m ml neighbors``).
"""

from __future__ import annotations

import math

import dash_ag_grid as dag
import pandas as pd
from dash import MATCH, Input, Output, State, callback, dcc, html, no_update

from ml.artifacts import NEIGHBOR_COLUMNS, column_label, table_csv

#: Decimal places shown in the grid per column (the CSV export: ``ml.artifacts.CSV_DECIMALS``).
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
    """The rows of a neighbour table as JSON-ready dicts (NaN -> ``None``, numpy -> Python)."""
    records = []
    for row in table.to_dict("records"):
        clean = {}
        for key, value in row.items():
            if hasattr(value, "item"):
                value = value.item()
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            elif value is pd.NA or value is pd.NaT:
                value = None
            clean[key] = value
        records.append(clean)
    return records


def neighbors_csv(records: list[dict], columns: list[str], units: dict[str, str] | None = None) -> str:
    """CSV text of neighbour ``records`` with ``columns`` in that order, as ``python -m ml
    neighbors`` writes it (:func:`ml.artifacts.table_csv`: units in the headers, ``units``
    overriding the defaults, rounded floats, empty cells for missing values)."""
    return table_csv(pd.DataFrame.from_records(records, columns=columns), units)


def column_defs(columns: list[str]) -> list[dict]:
    """AG Grid column definitions for a neighbour table's ``columns``: headers with units,
    ids rendered as links to ``/material/<id>``, numbers formatted, sortable and filterable."""
    defs = []
    for column in columns:
        header = HEADERS.get(column) or column_label(column)
        spec: dict = {"field": column, "headerName": header, "headerTooltip": column_label(column)}
        if column == "material_id":
            spec.update(cellRenderer="MaterialLink", pinned="left", minWidth=120, filter="agTextColumnFilter")
        elif column == "rank":
            spec.update(width=70, maxWidth=80, pinned="left", filter="agNumberColumnFilter", type="numericColumn")
        elif column == "formula":
            spec.update(minWidth=120, filter="agTextColumnFilter")
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
            :func:`ml.artifacts.table_csv` do not hold (a descriptor's ``distance``).
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


    def __init__(self, aio_id: str, rows: list[dict] | None = None, columns: list[str] | None = None,
                 filename: str = "neighbors.csv", height: str = "420px", units: dict[str, str] | None = None):
        columns = list(columns) if columns else list(NEIGHBOR_COLUMNS)
        super().__init__(
            className="neighbor-panel",
            children=[
                html.Div(
                    className="neighbor-panel__bar",
                    children=[
                        html.Button("Download CSV", id=self.ids.button(aio_id), className="button button--secondary", n_clicks=0),
                        dcc.Download(id=self.ids.download(aio_id)),
                    ],
                ),
                dcc.Store(id=self.ids.meta(aio_id), data=panel_meta(columns, filename, units)),
                dag.AgGrid(
                    id=self.ids.grid(aio_id),
                    rowData=rows or [],
                    columnDefs=column_defs(columns),
                    defaultColDef={"sortable": True, "resizable": True, "filter": True, "minWidth": 90},
                    dashGridOptions={"animateRows": False, "rowHeight": 32, "headerHeight": 36,
                                     "tooltipShowDelay": 300, "enableCellTextSelection": True},
                    getRowId="params.data.material_id",
                    columnSize="autoSize",
                    style={"height": height, "width": "100%"},
                    className="neighbor-grid",
                ),
            ],
        )


def panel_meta(columns: list[str], filename: str, units: dict[str, str] | None = None) -> dict:
    """What the CSV callback needs besides the rows: column order, file name, unit overrides."""
    return {"columns": list(columns), "filename": filename, "units": dict(units or {})}


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
