"""The key of the map page's scatter, drawn in HTML over the map's corner (regl-scatterplot
draws points only): what each colour means for the chosen colour mode.

Built from the same :class:`components.map_colors.ColorLayers` as the plotly maps' legends
and colour bars, so every map of matmap names a colour alike: a chip per named layer
("contains O (52,110)", "no data (12)"), a chip per category (number of elements, crystal
system, SuperCon label), or a colour ramp between the scale's ends for a property, with its
unit in the title ("band gap (eV)").
"""

from __future__ import annotations

from dash import html

from components.map_colors import ColorLayers
from components.map_points import PointColors, marker_palette, scale_colors

#: Colours the property ramp is drawn with (a CSS gradient through them).
RAMP_STOPS = 9


def _chip(color: str, label: str):
    return html.Span([html.Span(className="chip__dot", style={"background": color}), label], className="chip")


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _scale_key(marker: dict):
    """A colour bar of a plotly marker as HTML: chips per category, or a ramp with its two ends."""
    bar = marker["colorbar"]
    title = html.Div(bar["title"]["text"], className="map-legend__title")
    if bar.get("tickvals") is not None:
        _, palette, _ = marker_palette(marker, 0)
        return [title, html.Div([_chip(c, str(t)) for c, t in zip(palette, bar["ticktext"])], className="map-legend__chips")]
    stops = scale_colors(marker["colorscale"], RAMP_STOPS)
    ramp = html.Div(className="map-legend__ramp", style={"background": f"linear-gradient(to right, {', '.join(stops)})"})
    ends = html.Div([html.Span(_number(float(marker["cmin"]))), html.Span(_number(float(marker["cmax"])))],
                    className="map-legend__ends")
    return [title, ramp, ends]


def map_legend(layers: ColorLayers, colors: PointColors) -> list:
    """The key's children for ``layers`` as the scatter draws them (``colors``: its
    :func:`components.map_points.point_colors`): the named single-colour layers, then the
    colour scale when the mode has one."""
    named = []
    if layers.base_name and isinstance(layers.base_marker.get("color"), str):
        named.append(_chip(colors.palette[0], layers.base_name))
    if layers.foreground_name and isinstance(layers.foreground_marker.get("color"), str):
        named.append(_chip(colors.palette[colors.top[0]], layers.foreground_name))
    children = [html.Div(named, className="map-legend__chips")] if named else []
    if "colorbar" in layers.scale_marker:
        children += _scale_key(layers.scale_marker)
    return children
