"""The map's hover preview of a crystal (``components/structure_preview.py``) and the map
page's callback that fills it."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from components.structure_preview import MAX_IMAGE_SITES, preview_figure, preview_sites


def rock_salt() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_a_unit_cell_is_drawn_with_the_images_of_its_face_atoms():
    """Conventional rock salt, 8 sites: Na on the corners (1 site → 8 drawn) and face centres
    (3 → 3 + 3 images), Cl on the edge centres (3 → 3 × 4) and the body centre (1): 27 atoms,
    every one inside the cell."""
    structure = rock_salt()
    positions, symbols = preview_sites(structure)
    assert len(structure) == 8 and len(positions) == len(symbols) == 27
    assert symbols.count("Na") == 8 + 3 * 2 and symbols.count("Cl") == 3 * 4 + 1
    frac = structure.lattice.get_fractional_coords(positions)
    assert frac.min() > -1e-9 and frac.max() < 1 + 1e-9
    assert len({tuple(np.round(p, 6)) for p in positions}) == 27  # no atom drawn twice


def test_a_disordered_site_is_drawn_as_its_majority_species_and_big_cells_without_images():
    disordered = Structure(Lattice.cubic(3.0), [{"Fe": 0.7, "Ni": 0.3}], [[0.5, 0.5, 0.5]])
    assert preview_sites(disordered)[1] == ["Fe"]
    big = Structure(Lattice.cubic(30.0), ["H"] * (MAX_IMAGE_SITES + 1),
                    np.random.default_rng(0).random((MAX_IMAGE_SITES + 1, 3)) * 0.9 + 0.05)
    big.append("H", [0, 0, 0])
    assert len(preview_sites(big)[0]) == len(big)


def test_the_figure_draws_the_twelve_cell_edges_and_colours_each_atom():
    figure = preview_figure(rock_salt(), {"Na": "#f9dc3c", "Cl": "#31fc02"})
    cell, atoms = figure.data
    assert np.isnan(np.asarray(cell.x, dtype=float)).sum() == 12  # one break after each edge
    colours = dict(zip(atoms.text, atoms.marker.color))
    assert colours == {"Na": "#f9dc3c", "Cl": "#31fc02"}
    assert figure.layout.scene.camera.projection.type == "orthographic"
    grey = preview_figure(rock_salt(), {})
    assert set(grey.data[1].marker.color) == {"#999999"}  # unknown colours: grey, not an error


def test_the_map_page_previews_the_hovered_material(pages, atlas):
    page = pages["map"]
    row = atlas.row_of("mp-172")
    figure, legend, style = page.preview_structure(row)  # the row the scatter reports
    assert style == {}
    structure = atlas.structure("mp-172")
    assert set(figure.data[1].text) == {el.symbol for el in structure.composition.elements}
    assert len(legend) == len(structure.composition.elements)
    from dash.exceptions import PreventUpdate

    with pytest.raises(PreventUpdate):  # the pointer off the points: the last preview stays
        page.preview_structure(None)
