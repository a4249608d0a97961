"""The VAE's crystals (ml.generation.voxel_data): families, deciles, the cached selection and voxel arrays."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from ml.data.datasets import Dataset, read_mirror_properties
from ml.generation.voxel_arrays import arrays_dir, build_voxel_arrays, load_voxel_arrays
from ml.generation.deciles import assign_deciles, decile_edges, one_hot_deciles
from ml.generation.voxel_data import (
    FAMILIES,
    SELECTION_COLUMNS,
    VAEDataConfig,
    VAEDataError,
    cache_dir,
    classify_structure,
    family_of,
    load_decile_edges,
    select_vae_materials,
    stoichiometry,
)
from ml.generation.roundtrip import roundtrip_report, summarise_roundtrip
from ml.generation.voxels import VoxelConfig, model_input

CONFIG = VAEDataConfig()


def rocksalt_primitive() -> Structure:
    """NaCl's 2-site primitive (fcc) cell: rhombohedral axes, 60° angles."""
    return Structure(Lattice.from_parameters(3.99, 3.99, 3.99, 60, 60, 60), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3() -> Structure:
    return Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]])


def cu2mnal() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.95), ["Cu", "Mn", "Al"], [[0.25, 0.25, 0.25], [0, 0, 0], [0.5, 0.5, 0.5]]
    )


def tinisn() -> Structure:
    """Half-Heusler TiNiSn (F-43m)."""
    return Structure.from_spacegroup(
        "F-43m", Lattice.cubic(5.93), ["Ti", "Ni", "Sn"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.5, 0.5, 0.5]]
    )


def cuau_l10() -> Structure:
    """Tetragonal CuAu (L1_0, P4/mmm): AB but not cubic."""
    return Structure(Lattice.tetragonal(2.80, 3.67), ["Cu", "Au"], [[0, 0, 0], [0.5, 0.5, 0.5]])


# --------------------------------------------------------------------------- families


def test_stoichiometry_reduces_and_sorts():
    assert stoichiometry("Cu8Mn4Al4") == (1, 1, 2)
    assert stoichiometry("SrTiO3") == (1, 1, 3)
    assert stoichiometry("Na4Cl4") == (1, 1)
    assert stoichiometry("Li0.5Fe0.5") == (1, 1)
    with pytest.raises(ValueError):
        stoichiometry("Xx2Yy")


def test_family_needs_both_ratio_and_space_group():
    assert family_of("NaCl", 225) == "binary_AB"
    assert family_of("CsCl", 221) == "binary_AB"
    assert family_of("CuAu", 123) is None  # tetragonal
    assert family_of("SrTiO3", 221) == "perovskite_ABX3"
    assert family_of("SrTiO3", 62) is None  # orthorhombic perovskite
    assert family_of("Cu2MnAl", 225) == "heusler_X2YZ"
    assert family_of("Cu2MnAl", 216) is None  # inverse Heusler: not one of the paper's families
    assert family_of("TiNiSn", 216) == "half_heusler_XYZ"
    assert family_of("NaCl2", 225) is None


@pytest.mark.parametrize(
    "builder, family, nsites",
    [(rocksalt_primitive, "binary_AB", 8), (srtio3, "perovskite_ABX3", 5), (cu2mnal, "heusler_X2YZ", 16),
     (tinisn, "half_heusler_XYZ", 12)],
)
def test_hand_built_crystals_are_classified_in_their_conventional_cubic_cell(builder, family, nsites):
    row = classify_structure(builder(), CONFIG)
    assert row["family"] == family and row["reason"] is None
    assert row["nsites"] == nsites
    frac = np.asarray(row["frac_coords"]).reshape(-1, 3)
    assert frac.shape == (nsites, 3) and np.all((frac >= 0) & (frac < 1))
    expected_a = builder().lattice.abc[0] * (np.sqrt(2) if builder is rocksalt_primitive else 1)
    assert row["lattice_a"] == pytest.approx(expected_a, rel=1e-3)


@pytest.mark.parametrize("builder", [rocksalt_primitive, srtio3, cu2mnal, tinisn])
def test_conventional_cell_is_pymatgens_conventional_standard_structure(builder):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from ml.evaluation.sites import match_sites

    row = classify_structure(builder(), CONFIG)
    ours = Structure(Lattice.cubic(row["lattice_a"]), row["numbers"], np.reshape(row["frac_coords"], (-1, 3)))
    analyzer = SpacegroupAnalyzer(builder(), symprec=CONFIG.symprec, angle_tolerance=CONFIG.angle_tolerance)
    theirs = analyzer.get_conventional_standard_structure()
    assert analyzer.get_space_group_number() == row["spacegroup_number"]
    assert np.allclose(theirs.lattice.abc, ours.lattice.abc)
    assert match_sites(theirs, ours).exact(1e-6)


def test_non_cubic_and_oversized_cells_are_not_selected():
    assert classify_structure(cuau_l10(), CONFIG)["family"] is None
    row = classify_structure(cu2mnal(), VAEDataConfig(max_sites=8))  # its conventional cell has 16 sites
    assert row["family"] is None and "16 > 8" in row["reason"]


def test_config_is_validated_and_keyed():
    with pytest.raises(ValueError):
        VAEDataConfig(families=("spinel",))
    with pytest.raises(ValueError):
        VAEDataConfig(max_sites=0)
    assert VAEDataConfig().key() == VAEDataConfig().key() != VAEDataConfig(max_sites=20).key()


# --------------------------------------------------------------------------- deciles


def test_deciles_cut_training_values_into_equal_bins():
    rng = np.random.default_rng(0)
    train = rng.normal(-1.0, 0.8, size=1000)
    edges = decile_edges(train, 10)
    assert edges.shape == (9,) and np.all(np.diff(edges) > 0)
    counts = np.bincount(assign_deciles(train, edges), minlength=10)
    assert counts.min() >= 99 and counts.max() <= 101
    assert assign_deciles([edges[3]], edges)[0] == 4  # an edge value belongs to the upper bin
    assert assign_deciles([-50.0, 50.0], edges).tolist() == [0, 9]  # beyond the training range


def test_one_hot_condition():
    hot = one_hot_deciles([0, 3, 9], 10)
    assert hot.shape == (3, 10) and hot.dtype == np.float32
    assert np.array_equal(hot.argmax(axis=1), [0, 3, 9]) and np.all(hot.sum(axis=1) == 1)
    with pytest.raises(ValueError):
        one_hot_deciles([10], 10)


# --------------------------------------------------------------------------- a slice of the mirror


def mirror_slice(mirror: Path, per_ratio: int) -> Dataset:
    """The first ``per_ratio`` mirror materials of each family stoichiometry (with a formation
    energy, ≤ 40 sites; all among the first ~3,000 ids), CIFs read once into memory."""
    table = read_mirror_properties(mirror)
    table = table[table["nelements"].between(2, 3) & table["formation_energy_per_atom"].notna() & (table["nsites"] <= 40)]
    ratios = {rule.ratio: [] for rule in FAMILIES.values()}
    for material_id, formula in zip(table.index, table["formula"]):
        chosen = ratios.get(stoichiometry(formula))
        if chosen is not None and len(chosen) < per_ratio:
            chosen.append(material_id)
        if all(len(ids) == per_ratio for ids in ratios.values()):
            break
    wanted = {m for ids in ratios.values() for m in ids}
    table = table.loc[[m for m in table.index if m in wanted]]
    cifs = {}
    with gzip.open(mirror / "mp2024_structures.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            if record["material_id"] in wanted:
                cifs[record["material_id"]] = record["cif"]
                if len(cifs) == len(wanted):
                    break

    def read(ids):
        return ((m, cifs[m]) for m in table.index if ids is None or m in ids)

    return Dataset("mp2024-head", tuple(table.index), read, table)


@pytest.mark.integration
def test_selection_voxel_arrays_and_round_trip_on_real_crystals(mirror):
    dataset = mirror_slice(mirror, 40)
    table = select_vae_materials(dataset, progress=False)
    assert list(table.columns[: len(SELECTION_COLUMNS)]) == SELECTION_COLUMNS
    assert len(table) >= 20 and table["family"].nunique() >= 3, table["family"].value_counts()
    assert table["formation_energy_per_atom"].notna().all()
    assert (table["nsites"] <= CONFIG.max_sites).all()
    for _, row in table.iterrows():
        assert family_of(row["formula"], row["spacegroup_number"]) == row["family"]
    train = table[table["split"] == "train"]
    edges = load_decile_edges(dataset)
    assert np.array_equal(edges, decile_edges(train["formation_energy_per_atom"]))
    assert np.array_equal(table["decile"], assign_deciles(table["formation_energy_per_atom"], edges))
    # cached: a second call reads the table back, the parts are kept for resuming
    assert (cache_dir(dataset) / "selection.parquet").is_file()
    assert select_vae_materials(dataset, progress=False).equals(table)

    with pytest.raises(VAEDataError, match="vae-data"):
        load_voxel_arrays(dataset)
    build_voxel_arrays(dataset, progress=False)
    arrays = load_voxel_arrays(dataset)
    n, g = len(table), VoxelConfig().grid_size
    assert arrays.density.shape == (n, g, g, g) and arrays.density.dtype == np.float16
    assert arrays.species.shape == (n, g, g, g) and arrays.species.dtype == np.uint8
    assert np.allclose(arrays.lattice[:, 0], table["lattice_a"], rtol=1e-5)
    assert np.array_equal(arrays.material_ids, table["material_id"])
    assert np.array_equal(arrays.n_sites, table["nsites"]) and arrays.n_sites.dtype == np.int64
    # a store built before the site counts were kept reads them from the selection
    index_path = arrays_dir(dataset) / "index.parquet"
    index = pd.read_parquet(index_path)
    index.drop(columns="nsites").to_parquet(index_path, index=False)
    assert np.array_equal(load_voxel_arrays(dataset).n_sites, table["nsites"])
    index.to_parquet(index_path, index=False)
    # every crystal's species grid holds exactly its elements
    for i in range(n):
        from pymatgen.core import Composition

        elements = {el.Z for el in Composition(table["formula"].iloc[i]).elements}
        assert set(np.unique(arrays.species[i])) - {0} == elements
    train_arrays = load_voxel_arrays(dataset, split="train")
    assert len(train_arrays) == len(train) and set(train_arrays.split) == {"train"}
    assert model_input(train_arrays.density[:4], train_arrays.lattice[:4]).shape == (min(4, len(train)), 4, g, g, g)

    report = roundtrip_report(dataset, progress=False)
    assert len(report) == n
    summary = summarise_roundtrip(report)
    assert summary.loc["all", "same_composition_share"] == 1.0
    assert summary.loc["all", "mean_site_error_A"] < 0.05


def test_cli_needs_a_dataset_with_formation_energies(cif_folder, capsys):
    from ml.cli.main import main

    assert main(["vae-data", "--dataset", str(cif_folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "formation_energy_per_atom" in err[0]
