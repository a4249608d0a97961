"""``/elements``: the map once per element, laid out as a periodic table.

Each cell shows a small server-rendered image of the whole map with the materials containing
that element in red (:mod:`ml.service.element_maps`, cached on disk per map) and their count;
a click opens the big map coloured by that element (``/?color=element&element=Fe``).
"""

from __future__ import annotations

import dash
from dash import html

from components.common import missing_page
from components.element_maps import periodic_table
from components.state import map_or_error, memo
from ml.service.element_maps import ElementImageStyle, element_maps

dash.register_page(__name__, path="/elements", name="Elements", title="matmap · elements", order=3)

STYLE = ElementImageStyle()


def layout(**_):
    """The periodic table of small maps."""
    atlas, error = map_or_error()
    if atlas is None:
        return missing_page(error, html.Div(id="element-table"))
    maps = memo(atlas, "element-maps", lambda a: element_maps(a, STYLE))
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
