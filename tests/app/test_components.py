"""Neighbour grid and CSV, property table, uploads: plain functions on the fixture map."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dash import no_update

from components import located, neighbors, properties
from ml.mapping.tables import table_csv


def data_url(raw: bytes, mime: str = "application/octet-stream") -> str:
    return f"data:{mime};base64," + base64.b64encode(raw).decode()


# --------------------------------------------------------------------------- neighbours


def test_records_are_json_and_csv_matches_the_cli(atlas):
    material_id = atlas.materials["material_id"].iat[0]
    table = atlas.neighbors(material_id, 20)
    records = neighbors.neighbor_records(table)
    text = json.dumps(records, allow_nan=False)  # NaN became null
    assert len(records) == 20 and list(records[0]) == list(table.columns)
    # the browser sends the rows back as JSON; the CSV is what `python -m ml neighbors` writes
    csv = neighbors.neighbors_csv(json.loads(text), list(table.columns))
    assert csv == table_csv(table)
    header = csv.splitlines()[0]
    assert header.startswith("rank,material_id,formula,distance (embedding units),")
    assert "formation_energy_per_atom (eV/atom)" in header and "density (g/cm³)" in header
    # rounded: no float32 noise such as 3.0000002 in any value
    decimals = [len(v.split(".")[1]) for line in csv.splitlines()[1:] for v in line.split(",") if "." in v
                and v.replace(".", "").replace("-", "").isdigit()]
    assert decimals and max(decimals) <= 4


def test_column_defs_link_ids_and_give_units():
    defs = {d["field"]: d for d in neighbors.column_defs(["rank", "material_id", "formula", "distance", "band_gap", "density"])}
    assert defs["material_id"]["cellRenderer"] == "MaterialLink"
    assert defs["band_gap"]["headerName"] == "gap (eV)" and defs["band_gap"]["headerTooltip"] == "band gap (eV)"
    assert defs["density"]["headerName"] == "ρ (g/cm³)"
    assert "d3.format('.3f')" in defs["distance"]["valueFormatter"]["function"]


def test_grid_shows_the_key_columns_and_hides_the_rest_until_chosen(atlas):
    columns = list(atlas.neighbors("mp-172", 3).columns)
    assert len(columns) == 13
    shown = [d["field"] for d in neighbors.column_defs(columns) if not d["hide"]]
    assert shown == ["rank", "material_id", "formula", "distance", "formation_energy_per_atom", "band_gap",
                     "crystal_system", "supercon_label"]
    # what fits a 1400-px window: the material page gives the grid about 880 px
    assert sum(d["width"] for d in neighbors.column_defs(columns) if not d["hide"]) <= 860
    formula = next(d for d in neighbors.column_defs(columns) if d["field"] == "formula")
    assert formula["minWidth"] >= 160  # "Sr40Fe18Co2Mo20O120", mp2024's longest formula, is 145 px at 13 px
    # ticking a column in the chooser shows it; the always-shown ones cannot be hidden
    defs = neighbors.column_defs(columns, ["density"])
    assert [d["field"] for d in defs if not d["hide"]] == ["rank", "material_id", "formula", "distance", "density"]
    assert [o["value"] for o in neighbors.column_options(columns)] == columns[4:]


def test_column_chooser_keeps_choices_and_offers_new_columns_with_their_defaults():
    table = ["rank", "material_id", "formula", "distance", "band_gap", "density", "crystal_system"]
    # a page filled the table after the first layout (the material page): defaults for the new columns
    assert neighbors.chosen_columns(table, [], known=[]) == ["band_gap", "crystal_system"]
    # the user unticked the band gap and ticked the density; a new k keeps that
    assert neighbors.chosen_columns(table, ["density", "crystal_system"], known=table[4:]) == ["density", "crystal_system"]
    defs, options, value = neighbors.choose_columns(["density"], neighbors.panel_meta(table, "f.csv"),
                                                    neighbors.column_options(table))
    assert value == ["density"] and [o["value"] for o in options] == table[4:]
    assert {d["field"]: d["hide"] for d in defs}["band_gap"] and not {d["field"]: d["hide"] for d in defs}["density"]
    assert neighbors.choose_columns(["density"], None, []) == (no_update, no_update, no_update)


def test_download_csv_callback(atlas):
    table = atlas.neighbors(atlas.materials["material_id"].iat[1], 5)
    meta = neighbors.panel_meta(list(table.columns), "x_neighbors.csv")
    out = neighbors.download_csv(1, neighbors.neighbor_records(table), meta)
    assert out["filename"] == "x_neighbors.csv" and out["content"] == table_csv(table)
    assert neighbors.download_csv(0, [], meta) is no_update
    # a baseline descriptor's panel says its distance is in that descriptor's units
    meta = neighbors.panel_meta(list(table.columns), "x.csv", {"distance": "ewald descriptor units"})
    out = neighbors.download_csv(1, neighbors.neighbor_records(table), meta)
    assert out["content"].startswith("rank,material_id,formula,distance (ewald descriptor units),")


def test_panel_layout_has_its_pattern_ids():
    panel = neighbors.NeighborPanel("p", rows=[{"rank": 1, "material_id": "mp-1"}], filename="f.csv")
    ids = [c.id for c in panel.children if getattr(c, "id", None)]
    assert neighbors.NeighborPanel.ids.grid("p") in ids and neighbors.NeighborPanel.ids.meta("p") in ids
    grid = next(c for c in panel.children if getattr(c, "id", None) == neighbors.NeighborPanel.ids.grid("p"))
    assert grid.rowData == [{"rank": 1, "material_id": "mp-1"}] and grid.getRowId == "params.data.material_id"


# --------------------------------------------------------------------------- properties


def test_property_rows_have_units_and_dashes_for_missing():
    row = pd.Series({"band_gap": 1.23456, "density": np.nan, "icsd_origin": np.bool_(True), "spacegroup_number": 225.0,
                     "crystal_system": "cubic"})
    rows = dict(properties.property_rows(row))
    assert rows == {"Band gap (eV)": "1.235", "Density (g/cm³)": "—", "Space group number": "225",
                    "Crystal system": "cubic", "ICSD origin (experimental)": "yes"}


def test_formula_subscripts_and_mp_links():
    children = properties.formula_children("YBa2Cu3O7")
    assert [c if isinstance(c, str) else c.children for c in children] == ["Y", "Ba", "2", "Cu", "3", "O", "7"]
    assert properties.formula_children("not a formula!") == ["not a formula!"]
    assert properties.external_link("mp-22526").href == "https://next-gen.materialsproject.org/materials/mp-22526"
    assert properties.external_link("my-upload") is None


# --------------------------------------------------------------------------- uploads


def test_decode_upload_refuses_what_is_not_cif_text():
    assert located.decode_upload(data_url(b"data_x\n_cell_length_a 1\n"), 1000).startswith("data_x")
    assert located.decode_upload(data_url("é".encode("latin-1")), 1000) == "é"
    with pytest.raises(located.UploadError, match="empty"):
        located.decode_upload(data_url(b""), 1000)
    with pytest.raises(located.UploadError, match="binary"):
        located.decode_upload(data_url(b"\x89PNG\r\n\x1a\n\x00\x00"), 1000)
    with pytest.raises(located.UploadError, match="limit"):
        located.decode_upload(data_url(b"x" * 5000), 1000)
    with pytest.raises(located.UploadError, match="decoded"):
        located.decode_upload("data:text/plain;base64,@@@@", 1000)


def test_locate_upload_places_a_cif_of_the_map_next_to_itself(atlas):
    material_id = atlas.materials["material_id"].iat[3]
    result = located.locate_upload(atlas, data_url(atlas.cif(material_id).encode()), "own.cif", "1", 10**6, k=5)
    assert result["ok"] and result["message"] is None
    assert result["formula"] == atlas.material(material_id)["formula"]
    assert len(result["rows"]) == 5 and result["columns"][:4] == ["rank", "material_id", "formula", "distance"]
    assert result["rows"][0]["distance"] == pytest.approx(0.0, abs=1e-3)
    json.dumps(result, allow_nan=False)
    points = located.located_points([result, {"key": "2", "ok": False}], atlas.row_of)
    assert len(points) == 1 and len(points[0].neighbor_rows) == 5
    # on the XRD map the same structure lands on its own material's XRD-map position
    own = atlas.coordinates_of("xrd")[atlas.row_of(material_id)]
    (on_xrd,) = located.located_points([result], atlas.row_of, "xrd")
    spread = np.ptp(atlas.coordinates_of("xrd"), axis=0)
    assert np.all(np.abs(np.array([on_xrd.x, on_xrd.y]) - own) < 0.05 * spread)
    assert (on_xrd.x, on_xrd.y) != (points[0].x, points[0].y)
    # a result placed by a build without an XRD map has no XRD position and is left off that map
    assert located.located_points([{**result, "x_xrd": None, "y_xrd": None}], atlas.row_of, "xrd") == []


DISORDERED = (Path(__file__).parent / "data" / "disordered.cif").read_text()
PLACEHOLDER = DISORDERED.split("Fe1 Fe")[0] + "X1 Xx 0 0 0 1\nO1 O 0.5 0.5 0.5 1\n"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"hello, this is not a crystal", "not a CIF"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary"),
        (PLACEHOLDER.encode(), "'Xx', which is not a chemical element"),
        (b"data_HOH\n_chem_comp.id HOH\n_chem_comp.name WATER\n", "chemical-component"),
        (b"", "empty"),
    ],
)
def test_locate_upload_says_why_a_file_is_refused(atlas, raw, reason):
    result = located.locate_upload(atlas, data_url(raw), "bad.cif", "1", 10**6, k=5)
    assert not result["ok"] and reason in result["message"]
    assert reason in json.dumps(located.result_card(result).to_plotly_json(), default=str)


def test_a_disordered_upload_is_placed_and_says_how(atlas):
    result = located.locate_upload(atlas, data_url(DISORDERED.encode()), "FeCoO.cif", "1", 10**6, k=5)
    assert result["ok"] and result["formula"] == "FeO" and len(result["rows"]) == 5
    [note] = [n for n in result["notes"] if "disordered" in n]
    assert "Fe0.5Co0.5O" in note and "placed as FeO, the majority occupant of each site" in note
    json.dumps(result, allow_nan=False)
    card = json.dumps(located.result_card(result).to_plotly_json(), default=str)
    assert "majority occupant of each site" in card and "notice--warning" in card


def test_a_single_element_upload_is_placed_with_a_warning(atlas):
    from pymatgen.core import Lattice, Structure

    silicon = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]]).to(fmt="cif")
    low, high = atlas.materials["nelements"].min(), atlas.materials["nelements"].max()
    assert low >= 2  # the fixture map, like mp2024, has no single-element crystal
    result = located.locate_upload(atlas, data_url(silicon.encode()), "Si.cif", "1", 10**6, k=5)
    assert result["ok"] and result["formula"] == "Si"
    span = f"{low}" if low == high else f"{low} to {high}"
    assert result["notes"] == [f"Si has 1 element, but the map holds only materials with {span} elements: its "
                               "neighbours are the nearest of those, not materials like it"]
    # an ordinary compound of the map has no note
    own = located.locate_upload(atlas, data_url(atlas.cif(atlas.materials["material_id"].iat[3]).encode()), "own.cif",
                                "2", 10**6, k=5)
    assert own["notes"] == []


def test_an_unexpected_failure_is_reported_for_that_file_only(atlas, caplog):
    class Broken:
        def locate(self, text, k):
            raise RuntimeError("model file missing")

    with caplog.at_level(logging.ERROR):
        result = located.locate_upload(Broken(), data_url(b"data_x\n_cell_length_a 1\n"), "a.cif", "1", 10**6, k=5)
    assert not result["ok"] and "model file missing" in result["message"]
    assert "locating a.cif failed" in caplog.text
