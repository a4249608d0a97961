"""The simulated powder X-ray diffraction pattern as a figure."""

from __future__ import annotations

import copy

import numpy as np
import plotly.graph_objects as go

#: Style defaults; copied with :func:`copy.deepcopy` by :func:`make_xrd_figure`.
XRD_STYLE: dict = {
    "line": {"color": "#1f4e79", "width": 1.2},
    "layout": {
        "margin": {"l": 60, "r": 20, "t": 30, "b": 50},
        "paper_bgcolor": "#ffffff",
        "plot_bgcolor": "#ffffff",
        "height": 300,
        "hovermode": "x",
        "showlegend": False,
        "font": {"family": "Inter, system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        "xaxis": {"title": {"text": "2θ (°)"}, "showgrid": True, "gridcolor": "#eef0f3", "zeroline": False},
        "yaxis": {"title": {"text": "intensity (max = 1)"}, "showgrid": True, "gridcolor": "#eef0f3",
                  "range": [0, 1.05], "zeroline": False},
    },
}


def make_xrd_figure(two_theta: np.ndarray, intensity: np.ndarray, title: str | None = None,
                    wavelength_label: str = "Cu Kα, λ = 1.54184 Å", style: dict | None = None) -> go.Figure:
    """A line plot of a binned XRD pattern.

    Args:
        two_theta: ``(n_bins,)`` 2θ of each bin, degrees (increasing).
        intensity: ``(n_bins,)`` intensities normalised to max 1.
        title: figure title (e.g. the formula); the wavelength is added to it.
        wavelength_label: the radiation, written in the title.
        style: overrides of :data:`XRD_STYLE` (not modified).

    Raises:
        ValueError: the two arrays differ in shape.
    """
    two_theta = np.asarray(two_theta, dtype=np.float64).ravel()
    intensity = np.asarray(intensity, dtype=np.float64).ravel()
    if two_theta.shape != intensity.shape:
        raise ValueError(f"two_theta {two_theta.shape} and intensity {intensity.shape} differ")
    s = copy.deepcopy(XRD_STYLE)
    if style:
        s.update(copy.deepcopy(style))
    figure = go.Figure(
        go.Scatter(
            x=two_theta.astype(np.float32),
            y=intensity.astype(np.float32),
            mode="lines",
            line=s["line"],
            name="XRD",
            hovertemplate="2θ = %{x:.2f}°<br>intensity %{y:.3f}<extra></extra>",
        ),
        layout=s["layout"],
    )
    heading = f"{title} — simulated XRD ({wavelength_label})" if title else f"simulated XRD ({wavelength_label})"
    figure.update_layout(title={"text": heading, "x": 0.01, "font": {"size": 13}})
    if two_theta.size:
        figure.update_xaxes(range=[float(two_theta[0]), float(two_theta[-1])])
    return figure
