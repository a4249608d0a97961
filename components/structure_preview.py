"""A light 3D preview of a crystal for the map's hover card: one plotly ``Scatter3d`` of the
atoms of the unit cell (with their periodic images on the cell's faces, edges and corners) and
the cell's twelve edges, in crystal-toolkit's VESTA colours.

Why not the full viewer (:class:`components.structure_view.StructureView`) here: its
``CrystalToolkitScene`` throws on unmount ("Cannot read properties of null (reading
'domElement')") when the map page is left right after a hover, and a hover should cost no
bonding analysis. The material page, one click away, keeps the full viewer with bonds and
polyhedra.
"""

from __future__ import annotations

import itertools

import numpy as np
import plotly.graph_objects as go

#: Cells with more sites than this are previewed without their periodic images.
MAX_IMAGE_SITES = 200
#: Size of the square preview, px.
PREVIEW_SIZE = 220
#: The cell's 12 edges as pairs of corner indices (corners are the 8 points of {0, 1}³ in order).
_CORNERS = np.array(list(itertools.product((0, 1), repeat=3)), dtype=float)
_EDGES = [(i, j) for i, j in itertools.combinations(range(8), 2) if np.abs(_CORNERS[i] - _CORNERS[j]).sum() == 1]


def preview_sites(structure, tolerance: float = 1e-3) -> tuple[np.ndarray, list[str]]:
    """Cartesian positions (Å) ``(m, 3)`` and element symbols of the atoms drawn: every site
    wrapped into the cell, plus its images at fractional coordinate 1 where it lies on a face
    (at 0 within ``tolerance``), as a crystallographer draws a unit cell. Disordered sites are
    drawn as their majority species. Cells over :data:`MAX_IMAGE_SITES` sites get no images."""
    frac = np.mod(np.asarray(structure.frac_coords, dtype=float), 1.0)
    frac[np.isclose(frac, 1.0, atol=tolerance)] = 0.0
    symbols = [max(site.species.items(), key=lambda item: item[1])[0].symbol for site in structure]
    points, labels = [frac], list(symbols)
    if len(structure) <= MAX_IMAGE_SITES:
        on_face = np.abs(frac) < tolerance
        for shift in itertools.product((0, 1), repeat=3):
            shift = np.array(shift)
            if not shift.any():
                continue
            rows = np.flatnonzero(on_face[:, shift.astype(bool)].all(axis=1))
            points.append(frac[rows] + shift)
            labels += [symbols[r] for r in rows]
    cartesian = structure.lattice.get_cartesian_coords(np.concatenate(points))
    return cartesian, labels


def preview_figure(structure, colors: dict[str, str]) -> go.Figure:
    """The preview of a pymatgen ``Structure``: atoms coloured by ``colors`` (``{element:
    "#rrggbb"}``, grey for an element it lacks) and the cell's edges; no axes, orthographic,
    :data:`PREVIEW_SIZE` px square, hover naming each atom's element."""
    positions, symbols = preview_sites(structure)
    corners = structure.lattice.get_cartesian_coords(_CORNERS)
    edges = np.full((3 * len(_EDGES), 3), np.nan)
    for k, (i, j) in enumerate(_EDGES):
        edges[3 * k], edges[3 * k + 1] = corners[i], corners[j]
    figure = go.Figure([
        go.Scatter3d(x=edges[:, 0], y=edges[:, 1], z=edges[:, 2], mode="lines", hoverinfo="skip",
                     line={"color": "#555555", "width": 2}, name="cell", showlegend=False),
        go.Scatter3d(x=positions[:, 0], y=positions[:, 1], z=positions[:, 2], mode="markers", text=symbols,
                     hovertemplate="%{text}<extra></extra>", name="atoms", showlegend=False,
                     marker={"size": 7, "color": [colors.get(s, "#999999") for s in symbols],
                             "line": {"color": "#333333", "width": 1}, "opacity": 1.0}),
    ])
    hidden = {"visible": False, "showbackground": False}
    figure.update_layout(
        height=PREVIEW_SIZE, margin={"l": 0, "r": 0, "t": 0, "b": 0}, paper_bgcolor="rgba(0,0,0,0)",
        scene={"xaxis": hidden, "yaxis": hidden, "zaxis": hidden, "aspectmode": "data",
               "camera": {"projection": {"type": "orthographic"}, "eye": {"x": 1.6, "y": 1.1, "z": 0.9}}},
        uirevision="preview",
    )
    return figure
