"""The XRD figure builder."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from components import xrd


def pattern():
    two_theta = 10 + 0.02 * np.arange(5000)
    intensity = np.zeros(5000)
    intensity[[1000, 1600, 3000]] = [1.0, 0.4, 0.25]  # peaks at 30°, 42°, 70°
    return two_theta, intensity


def test_plots_the_pattern_with_units_on_the_axes():
    figure = xrd.make_xrd_figure(*pattern(), title="NaCl")
    (line,) = figure.data
    assert len(line.x) == 5000 and float(line.y.max()) == 1.0
    peaks = line.x[np.flatnonzero(line.y)]
    np.testing.assert_allclose(peaks, [30.0, 42.0, 70.0], atol=1e-4)
    assert figure.layout.xaxis.title.text == "2θ (°)"
    assert figure.layout.yaxis.title.text == "intensity (max = 1)"
    assert "NaCl" in figure.layout.title.text and "1.54184 Å" in figure.layout.title.text
    assert tuple(figure.layout.xaxis.range) == (10.0, pytest.approx(10 + 0.02 * 4999))


def test_shape_mismatch_is_an_error():
    two_theta, intensity = pattern()
    with pytest.raises(ValueError, match="differ"):
        xrd.make_xrd_figure(two_theta, intensity[:10])


def test_style_defaults_are_never_mutated():
    before = copy.deepcopy(xrd.XRD_STYLE)
    figure = xrd.make_xrd_figure(*pattern(), style={"line": {"color": "red", "width": 3}})
    figure.layout.xaxis.title.text = "changed"
    figure.data[0].line.color = "blue"
    assert xrd.XRD_STYLE == before
