"""Any address no page serves."""

from __future__ import annotations

import dash
from dash import dcc, html

dash.register_page(__name__, path="/404", name="Not found", title="matmap · page not found", nav=False)


def layout(**_):
    """A short message with the way back."""
    return html.Div(
        className="page",
        children=html.Div(
            className="card card--notice",
            children=[
                html.H1("Page not found"),
                html.P(["Go back to the ", dcc.Link("materials map", href="/"), " or ",
                        dcc.Link("locate a structure", href="/locate"), "."]),
            ],
        ),
    )
