"""``/elements``: the map once per element, laid out as a periodic table.

Each cell shows a small server-rendered image of the whole map with the materials containing
that element in red (:mod:`components.element_maps`, cached on disk per map) and their count;
a click opens the big map coloured by that element (``/?color=element&element=Fe``).
"""

from __future__ import annotations

import dash
from dash import dcc, html

from components.common import missing_page
from components.element_maps import (
    ElementImageStyle,
    cached_element_maps,
    data_uri,
    table_position,
)
from components.properties import format_value
from components.state import map_or_error, memo
from ml.settings import get_settings

dash.register_page(__name__, path="/elements", name="Elements", title="matmap · elements", order=3)

STYLE = ElementImageStyle()


def layout(**_):
    """The periodic table of small maps."""
    atlas, error = map_or_error()
    if atlas is None:
        return missing_page(error, html.Div(id="element-table"))
    maps = memo(atlas, "element-maps", lambda a: cached_element_maps(a.materials, a.coordinates, a.manifest,
                                                                     get_settings().cache_dir, STYLE))
    return html.Div(
        className="page elements-page",
        children=[
            html.H1("Elements on the map"),
            html.P(
                f"Each small map shows all {len(atlas):,} materials; those containing the element are red "
                "(darker where more of them lie), the rest grey. The number is how many materials contain it. "
                "Click an element to open the map coloured by it.",
                className="lead",
            ),
            periodic_table(maps.images, maps.counts),
        ],
    )


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
