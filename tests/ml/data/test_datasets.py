"""The dataset registry: the real mirror, user CIFs, errors, and the mp-api fallback."""

from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from pymatgen.core import Structure

import ml.data.datasets
from ml.data.datasets import (
    DatasetError,
    dataset_name,
    download_from_mp_api,
    get_dataset,
    mirror_dir,
    read_jsonl_records,
    read_supercon_labels,
)
from ml.settings import get_settings


# --------------------------------------------------------------------------- the mirror


def test_mp2024_has_the_documented_materials(mirror):
    dataset = get_dataset("mp2024")
    assert dataset.name == "mp2024" and len(dataset) == 141_659
    assert dataset.properties["nelements"].between(2, 5).all()
    assert len(set(dataset.material_ids)) == len(dataset)
    lco = dataset.properties.loc["mp-22526"]
    assert lco["formula"] == "Li1Co1O2" and lco["spacegroup_number"] == 166 and bool(lco["icsd_origin"])
    assert "mp-1" not in dataset.properties.index  # Cs8, monatomic
    assert dataset.splits().shape == (141_659,)


def test_mp2024_icsd_is_the_experimental_subset(mirror):
    icsd = get_dataset("mp2024-icsd")
    assert len(icsd) == 44_349
    assert icsd.properties["icsd_origin"].eq(True).all()
    assert set(icsd.material_ids) <= set(get_dataset("mp2024").material_ids)


def test_read_jsonl_records_filters_by_id(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    rows = [{"material_id": f"mp-{i}", "cif": f"cif {i}"} for i in (1, 2, 10, 100)]
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(r) + "\n" for r in rows)
    assert list(read_jsonl_records(path, {"mp-10", "mp-1"})) == [("mp-1", "cif 1"), ("mp-10", "cif 10")]
    assert len(list(read_jsonl_records(path, None))) == 4
    plain = tmp_path / "s.jsonl"
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert list(read_jsonl_records(plain, {"mp-100"})) == [("mp-100", "cif 100")]


def test_supercon_labels(tmp_path):
    (tmp_path / "supercon_3dsc.csv").write_text(
        "material_id,supercon_formula,synthetically_doped,tc_kelvin\n"
        "mp-1,A,false,9.5\n"
        "mp-1,A,false,0.0\n"   # the highest direct Tc wins
        "mp-2,B,false,0.0\n"
        "mp-3,C,true,30.0\n"   # only a doped match
        "mp-4,D,true,40.0\n"
        "mp-4,D,false,0.0\n"
    )
    labels = read_supercon_labels(tmp_path)
    assert labels.loc["mp-1", "supercon_label"] == "superconductor" and labels.loc["mp-1", "tc_kelvin"] == 9.5
    assert labels.loc["mp-2", "supercon_label"] == "non-superconductor"
    assert labels.loc["mp-3", "supercon_label"] == "doped match" and np.isnan(labels.loc["mp-3", "tc_kelvin"])
    assert labels.loc["mp-4", "supercon_label"] == "non-superconductor"
    assert read_supercon_labels(tmp_path / "nowhere").empty


# --------------------------------------------------------------------------- user data


def test_user_folder_dataset(cif_folder, crystals):
    sub = cif_folder / "more"
    sub.mkdir()
    (sub / "Po.CIF").write_text(crystals.polonium().to(fmt="cif"))
    (cif_folder / "readme.txt").write_text("not a cif")
    dataset = get_dataset(str(cif_folder))
    assert dataset.name == "user-cifs" == dataset_name(str(cif_folder))
    assert set(dataset.material_ids) == {"NaCl", "CsCl", "Si", "empty", "notes", "broken", "FeNi_disordered", "more/Po"}
    records = dict(dataset.records({"NaCl", "more/Po"}))
    assert set(records) == {"NaCl", "more/Po"}
    assert Structure.from_str(records["NaCl"], fmt="cif").composition.reduced_formula == "NaCl"
    assert dataset.properties.index.name == "material_id" and len(dataset.properties) == len(dataset)


def test_dataset_name_is_idempotent(cif_folder):
    assert dataset_name("mp2024") == "mp2024"
    assert dataset_name(str(cif_folder)) == "user-cifs"
    assert dataset_name(str(cif_folder) + "/") == "user-cifs"
    # a map name is not read as a path again (no "user-user-cifs")
    assert dataset_name("user-cifs") == "user-cifs"


def test_zip_and_single_file_datasets(tmp_path, crystals):
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a/NaCl.cif", crystals.nacl().to(fmt="cif"))
        z.writestr("CsCl.cif", crystals.cscl().to(fmt="cif"))
        z.writestr("notes.txt", "ignored")
    dataset = get_dataset(str(archive))
    assert dataset.name == "user-upload" and sorted(dataset.material_ids) == ["CsCl", "a/NaCl"]
    assert "Cs" in dict(dataset.records())["CsCl"]

    single = tmp_path / "Si.cif"
    single.write_text(crystals.silicon().to(fmt="cif"))
    one = get_dataset(str(single))
    assert one.material_ids == ("Si",) and len(list(one.records())) == 1


def test_unreadable_or_empty_user_data(tmp_path):
    bad_zip = tmp_path / "bad.zip"
    bad_zip.write_bytes(b"this is not a zip")
    with pytest.raises(DatasetError, match="not a readable zip"):
        get_dataset(str(bad_zip))
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(DatasetError, match="no .cif files"):
        get_dataset(str(empty))


def test_unknown_name_raises():
    with pytest.raises(DatasetError, match="unknown dataset 'mp2042'"):
        get_dataset("mp2042")


def test_missing_mirror_without_api_key(tmp_path, monkeypatch):
    monkeypatch.setenv("MATMAP_MIRROR_DIR", str(tmp_path / "no-mirror"))
    get_settings.cache_clear()
    with pytest.raises(DatasetError, match="MATMAP_MIRROR_DIR"):
        get_dataset("mp2024")
    with pytest.raises(DatasetError, match="MATMAP_MIRROR_DIR"):
        mirror_dir()


# --------------------------------------------------------------------------- mp-api fallback


class FakeMPRester:
    """Stands in for mp_api.client.MPRester: ``client.materials.summary.search(...)``."""

    calls: list[dict] = []

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key
        self.materials = SimpleNamespace(summary=SimpleNamespace(search=self.search))

    def search(self, **kwargs):
        FakeMPRester.calls.append({"api_key": self.api_key, **kwargs})
        return self.docs()

    @staticmethod
    def docs():
        from pymatgen.core import Lattice

        def doc(mid, structure, theoretical, energy):
            return SimpleNamespace(
                material_id=mid, structure=structure, formation_energy_per_atom=energy,
                energy_per_atom=energy - 3.0, band_gap=1.5, total_magnetization=0.0,
                density=float(structure.density), symmetry=SimpleNamespace(number=225),
                theoretical=theoretical, nsites=len(structure), nelements=len(structure.composition.elements),
            )

        nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        cscl = Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        # given out of order: the files are sorted by id number (mp-22862 before mp-573697)
        return [doc("mp-573697", cscl, True, -2.2), doc("mp-22862", nacl, False, -2.1)]


def test_download_from_mp_api_writes_mirror_files(tmp_path):
    FakeMPRester.calls.clear()
    folder = tmp_path / "mp-api"
    download_from_mp_api(folder, "secret", client_factory=FakeMPRester)
    assert FakeMPRester.calls[0]["api_key"] == "secret"
    assert FakeMPRester.calls[0]["num_elements"] == (2, 5)
    assert {"material_id", "structure"} <= set(FakeMPRester.calls[0]["fields"])
    assert sorted(p.name for p in folder.iterdir()) == ["mp2024_properties.csv.gz", "mp2024_structures.jsonl.gz"]

    table = ml.data.datasets.read_mirror_properties(folder)
    assert list(table.index) == ["mp-22862", "mp-573697"]
    assert table.loc["mp-22862", "formula"] == "Na4Cl4" and table.loc["mp-22862", "nsites"] == 8
    # icsd_origin is "not theoretical"
    assert table.loc["mp-22862", "icsd_origin"] == True  # noqa: E712 (nullable boolean)
    assert table.loc["mp-573697", "icsd_origin"] == False  # noqa: E712
    assert table.loc["mp-573697", "formation_energy_per_atom"] == pytest.approx(-2.2)
    records = dict(read_jsonl_records(folder / "mp2024_structures.jsonl.gz", None))
    assert list(records) == ["mp-22862", "mp-573697"]
    assert Structure.from_str(records["mp-573697"], fmt="cif").composition.reduced_formula == "CsCl"


def test_download_failure_is_a_dataset_error(tmp_path):
    def broken(api_key):
        raise ConnectionError("no route to host")

    with pytest.raises(DatasetError, match="no route to host"):
        download_from_mp_api(tmp_path / "x", "key", client_factory=broken)


@pytest.mark.parametrize("key_variable", ["MATMAP_MP_API_KEY", "MP_API_KEY"])
def test_missing_mirror_with_api_key_downloads_once(tmp_path, monkeypatch, key_variable):
    monkeypatch.setenv("MATMAP_MIRROR_DIR", str(tmp_path / "no-mirror"))
    monkeypatch.setenv(key_variable, "secret")
    get_settings.cache_clear()
    downloads = []

    def fake_download(folder: Path, api_key: str, client_factory=None):
        downloads.append((folder, api_key))
        download_from_mp_api(folder, api_key, client_factory=FakeMPRester)

    monkeypatch.setattr(ml.data.datasets, "download_from_mp_api", fake_download)
    expected = get_settings().cache_dir / "mp-api"
    assert mirror_dir() == expected
    assert downloads == [(expected, "secret")]

    dataset = get_dataset("mp2024")
    assert dataset.material_ids == ("mp-22862", "mp-573697")
    cifs = dict(dataset.records())
    assert Structure.from_str(cifs["mp-22862"], fmt="cif").composition.reduced_formula == "NaCl"
    assert get_dataset("mp2024-icsd").material_ids == ("mp-22862",)  # the non-theoretical one
    assert len(downloads) == 1  # the files are reused, not downloaded again


def test_mirror_is_preferred_over_downloaded_files(mirror, monkeypatch):
    monkeypatch.setenv("MATMAP_MP_API_KEY", "secret")
    get_settings.cache_clear()
    download_from_mp_api(get_settings().cache_dir / "mp-api", "secret", client_factory=FakeMPRester)
    assert mirror_dir() == mirror
