"""The periodic table of small maps of ``/elements``: one linked cell per element, its image
rendered and cached by :mod:`ml.service.element_maps`."""

from __future__ import annotations

import base64

from dash import dcc, html

from components.properties import format_value
from ml.service.element_maps import table_position


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,…`` for an ``<img src>``."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def periodic_table(images: dict[str, bytes], counts: dict[str, int]) -> html.Div:
    """A CSS grid of :func:`element_cell` s at their periodic-table positions (18 columns,
    lanthanides and actinides in two rows below); symbols that are not elements are left out."""
    cells = []
    for symbol, count in counts.items():
        try:
            row, column = table_position(symbol)
        except ValueError:
            continue
        cells.append(element_cell(symbol, images[symbol], count, row, column))
    return html.Div(cells, id="element-table", className="element-table")


def element_cell(symbol: str, png: bytes, count: int, row: int, column: int) -> dcc.Link:
    """One element: symbol, count and small map, linking to the map coloured by it."""
    return dcc.Link(
        href=f"/?color=element&element={symbol}",
        className="element-cell",
        id={"type": "element-cell", "symbol": symbol},
        title=f"{symbol}: {count:,} materials; open the map coloured by {symbol}",
        style={"gridRow": row, "gridColumn": column},
        children=[
            html.Div([html.Span(symbol, className="element-cell__symbol"),
                      html.Span(format_value(count, "{:,}"), className="element-cell__count")],
                     className="element-cell__head"),
            html.Img(src=data_uri(png), alt=f"materials containing {symbol}", className="element-cell__map"),
        ],
    )
