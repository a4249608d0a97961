"""Generated-crystal records (``ml/generation/records.py``): the CIFs and the CSV."""

from __future__ import annotations

import csv

import pytest
from pymatgen.core import Structure

from exact_model import exact_model
from ml.generation.records import CSV_COLUMNS, GeneratedCrystal, write_generated


def test_write_generated_writes_the_cifs_and_the_csv(store, tmp_path):
    generator = exact_model(store)
    crystals = generator.interpolate("x-1", "x-2", steps=3)
    crystals.append(GeneratedCrystal(3, None, False, "no atom", (2.0, 2.0, 2.0), 4))
    path = write_generated(crystals, tmp_path / "out")
    lines = path.read_text().splitlines()
    assert lines[0].split(",") == CSV_COLUMNS
    rows = list(csv.DictReader(lines))
    assert [r["formula"] for r in rows] == ["CsCl", "CsCl", "NaCl", ""]
    assert [r["file"] for r in rows] == ["0000.cif", "0001.cif", "0002.cif", ""]
    assert [r["valid"] for r in rows] == ["True", "True", "True", "False"] and rows[3]["reason"] == "no atom"
    assert float(rows[0]["a"]) == pytest.approx(4.12, abs=1e-3) and rows[2]["n_sites"] == "8"
    assert rows[2]["spacegroup_number"] == "225" and float(rows[1]["t"]) == 0.5
    for row in rows[:3]:
        back = Structure.from_file(tmp_path / "out" / row["file"])
        assert back.composition.reduced_formula == row["formula"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.cif")) == ["0000.cif", "0001.cif", "0002.cif"]
