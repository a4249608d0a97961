"""crystal-toolkit scenes through our one module, on hand-built cells."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from components import structure_view as sv


@pytest.fixture
def nacl() -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def _spheres(scene, name="atoms"):
    part = next(c for c in scene["contents"] if c["name"] == name)
    return [p for c in part["contents"] for p in c.get("positions", [])]


def test_scene_of_rock_salt_has_atoms_bonds_and_cell(nacl):
    before = nacl.copy()
    scene, colors = sv.structure_scene(nacl)
    json.dumps(scene)  # plain JSON: no numpy left
    names = {c["name"] for c in scene["contents"]}
    assert {"atoms", "bonds", "unit_cell", "axes"} <= names
    assert set(colors) == {"Na", "Cl"} and all(c.startswith("#") for c in colors.values())
    # 8 sites plus the image atoms on the faces, edges and corners of the conventional cell
    assert len(_spheres(scene)) == 27
    bonds = next(c for c in scene["contents"] if c["name"] == "bonds")
    assert bonds["contents"], "CrystalNN finds the Na–Cl bonds"
    assert nacl == before  # not modified


def test_atoms_sit_on_the_lattice(nacl):
    scene, _ = sv.structure_scene(nacl)
    positions = np.array(_spheres(scene))
    fractional = positions / 5.64
    np.testing.assert_allclose(fractional * 2, np.round(fractional * 2), atol=1e-6)


def test_scene_without_bonds(nacl):
    scene, _ = sv.structure_scene(nacl, bonds=False)
    assert {"atoms", "unit_cell"} <= {c["name"] for c in scene["contents"]}


def test_visibility_and_empty_scene():
    assert sv.visibility(["bonds"]) == {"bonds": 1, "polyhedra": 0, "unit_cell": 0}
    a, b = sv.empty_scene(), sv.empty_scene()
    a["contents"].append(1)
    assert b["contents"] == [] and sv.EMPTY_SCENE["contents"] == []


def test_view_component_ids_and_defaults():
    view = sv.StructureView("x")
    scene = view.children[0].children
    assert scene.id == sv.StructureView.ids.scene("x")
    assert scene.data == sv.EMPTY_SCENE  # never None: the viewer fails on a null scene
    assert scene.toggleVisibility == sv.visibility(sv.DEFAULT_SHOWN)
    legend = sv.legend_chips({"Na": "#f9dc3c"})
    assert legend[0].children[1] == "Na"
