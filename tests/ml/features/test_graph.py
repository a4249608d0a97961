"""Crystal graphs (ml.features.graph) against pymatgen's neighbour search, and the atom features."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from pymatgen.core import Element, Lattice, Structure

from ml.features.atom_features import MAX_Z, N_ATOM_FEATURES, atom_feature_table, element_features
from ml.features.errors import FeaturisationError
from ml.features.graph import GraphConfig, crystal_graph

BLOCKS = {"group": 19, "period": 7, "electronegativity": 10, "covalent_radius": 10, "valence": 12,
          "ionisation": 10, "affinity": 10, "block": 4, "volume": 10}


def per_atom(graph) -> list[np.ndarray]:
    """Sorted neighbour distances of each atom."""
    return [np.sort(graph.edge_distance[graph.edge_dst == i]) for i in range(len(graph.atomic_numbers))]


def signature(graph) -> Counter:
    """Multiset of (Z, sorted neighbour distances rounded to 1e-4 Å) over the atoms."""
    return Counter(
        (int(z), tuple(np.round(d, 4))) for z, d in zip(graph.atomic_numbers, per_atom(graph))
    )


@pytest.mark.parametrize("name", ["nacl", "cscl", "silicon", "triclinic"])
def test_at_most_12_neighbours_within_the_cutoff(crystals, name):
    graph = crystal_graph(getattr(crystals, name)())
    counts = np.bincount(graph.edge_dst, minlength=len(graph.atomic_numbers))
    assert counts.max() <= 12
    # each of these cells has far more than 12 atoms within 8 Å: exactly 12 are kept
    assert np.all(counts == 12)
    assert graph.edge_distance.max() <= 8.0 and graph.edge_distance.min() > 0.1
    assert graph.edge_src.max() < len(graph.atomic_numbers)


def test_nacl_distances_equal_pymatgen_neighbours(crystals):
    a = 5.64
    structure = crystals.nacl(a)
    graph = crystal_graph(structure)
    for i, neighbours in enumerate(structure.get_all_neighbors(8.0)):
        expected = np.sort([n.nn_distance for n in neighbours])[:12]
        np.testing.assert_allclose(per_atom(graph)[i], expected, rtol=1e-6)
        # 6 unlike nearest neighbours at a / 2, then 6 of the 12 like ones at a / √2
        mine = graph.edge_dst == i
        nearest = mine & np.isclose(graph.edge_distance, a / 2)
        assert nearest.sum() == 6
        assert np.all(graph.atomic_numbers[graph.edge_src[nearest]] != graph.atomic_numbers[i])
        np.testing.assert_allclose(graph.edge_distance[mine & ~nearest], a / np.sqrt(2), rtol=1e-6)


def test_low_symmetry_edges_equal_pymatgen_neighbours(crystals):
    structure = crystals.triclinic()
    graph = crystal_graph(structure)
    for i, neighbours in enumerate(structure.get_all_neighbors(8.0)):
        neighbours = sorted(neighbours, key=lambda n: n.nn_distance)[:12]
        mine = np.flatnonzero(graph.edge_dst == i)
        mine = mine[np.argsort(graph.edge_distance[mine])]
        np.testing.assert_allclose(graph.edge_distance[mine], [n.nn_distance for n in neighbours], rtol=1e-6)
        np.testing.assert_array_equal(graph.edge_src[mine], [n.index for n in neighbours])


@pytest.mark.parametrize("name", ["nacl", "triclinic"])
def test_supercell_keeps_each_atoms_neighbour_distances(crystals, name):
    structure = getattr(crystals, name)()
    unit = signature(crystal_graph(structure))
    supercell = signature(crystal_graph(structure * (2, 2, 2)))
    assert supercell == Counter({key: 8 * count for key, count in unit.items()})


def test_cutoff_binds_in_a_sparse_cell():
    # simple cubic, a = 7 Å: 6 neighbours at 7 Å, the next shell (9.9 Å) is beyond 8 Å
    graph = crystal_graph(Structure(Lattice.cubic(7.0), ["Po"], [[0, 0, 0]]))
    np.testing.assert_allclose(graph.edge_distance, np.full(6, 7.0), rtol=1e-6)
    # a = 9 Å: no neighbour at all, the atom is still a node
    lonely = crystal_graph(Structure(Lattice.cubic(9.0), ["Po"], [[0, 0, 0]]))
    assert len(lonely.atomic_numbers) == 1 and len(lonely.edge_src) == 0


def test_smaller_cutoff_and_neighbour_count(crystals):
    graph = crystal_graph(crystals.nacl(5.64), GraphConfig(cutoff=3.0, max_neighbors=4))
    assert np.all(np.bincount(graph.edge_dst) == 4)
    np.testing.assert_allclose(graph.edge_distance, 2.82, rtol=1e-6)


def test_disordered_structure_is_refused():
    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(FeaturisationError, match="disordered"):
        crystal_graph(disordered)


def test_other_unusable_structures_are_refused(crystals):
    with pytest.raises(FeaturisationError, match="closer than 0.1"):
        crystal_graph(Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.005, 0, 0]]))
    with pytest.raises(FeaturisationError, match="limit"):
        crystal_graph(crystals.nacl(), GraphConfig(max_sites=4))
    with pytest.raises(ValueError):
        GraphConfig(cutoff=0)


# --------------------------------------------------------------------------- atom features


def test_feature_table_shape_and_padding_row():
    table = atom_feature_table()
    assert table.shape == (MAX_Z + 1, N_ATOM_FEATURES) == (101, 92)
    assert table.dtype == np.float32
    assert not table[0].any()
    assert sum(BLOCKS.values()) == 92


def test_every_element_has_nine_one_hot_blocks():
    table = atom_feature_table()[1:]
    assert set(np.unique(table)) <= {0.0, 1.0}
    sums = np.stack([block.sum(axis=1) for block in np.split(table, np.cumsum(list(BLOCKS.values()))[:-1], axis=1)], 1)
    assert sums.shape == (100, 9)
    assert sums.max() == 1  # at most one bin per block
    assert np.all(table.sum(axis=1) <= 9)
    # group, period and block are known for every element
    names = list(BLOCKS)
    for known in ("group", "period", "block"):
        assert np.all(sums[:, names.index(known)] == 1), known


def block(vector: np.ndarray, name: str) -> int:
    """Index of the hot bin of block ``name``."""
    start = sum(list(BLOCKS.values())[: list(BLOCKS).index(name)])
    part = vector[start : start + BLOCKS[name]]
    assert part.sum() == 1
    return int(np.argmax(part))


@pytest.mark.parametrize(
    "symbol, group, period, spdf",
    [("H", 1, 1, "s"), ("O", 16, 2, "p"), ("Fe", 8, 4, "d"), ("Cs", 1, 6, "s")],
)
def test_known_elements(symbol, group, period, spdf):
    vector = element_features(Element(symbol).Z)
    assert block(vector, "group") == group - 1
    assert block(vector, "period") == period - 1
    assert block(vector, "block") == "spdf".index(spdf)


def test_h_o_fe_differ_and_electronegativity_orders():
    table = atom_feature_table()
    h, o, fe, cs = table[1], table[8], table[26], table[55]
    assert not np.array_equal(h, o) and not np.array_equal(o, fe) and not np.array_equal(h, fe)
    # Pauling: Cs 0.79 < Fe 1.83 < O 3.44
    assert block(cs, "electronegativity") < block(fe, "electronegativity") < block(o, "electronegativity")
    # Fe has 8 valence electrons (group 8); O 6 (group 16 − 10)
    assert block(fe, "valence") == 7 and block(o, "valence") == 5


def test_lanthanide_goes_to_the_f_block_group():
    ce = element_features(58)
    assert block(ce, "group") == 18 and block(ce, "block") == 3 and block(ce, "period") == 5


@pytest.mark.parametrize("z", [0, 101, -3])
def test_atomic_number_out_of_range(z):
    with pytest.raises(ValueError):
        element_features(z)


@pytest.mark.parametrize("symbol", ["Xx", "Q", "Zz"])
def test_placeholder_species_are_refused_by_type(symbol):
    # pymatgen gives a DummySpecies an atomic number from a string hash: positive or negative
    # by run, so a range check on Z refused it in one run and overflowed int16 in another
    from pymatgen.core.periodic_table import DummySpecies

    species = DummySpecies(symbol)
    for z in (species.Z, -abs(species.Z), 7):
        structure = Structure(Lattice.cubic(4.0), [species, "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(DummySpecies, "Z", property(lambda self, z=z: z))
            with pytest.raises(FeaturisationError, match=f"'{symbol}', which is not a chemical element"):
                crystal_graph(structure)


def test_elements_beyond_fermium_are_named():
    structure = Structure(Lattice.cubic(4.0), ["Og", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(FeaturisationError, match=r"element Og \(Z = 118\) is beyond Z = 100"):
        crystal_graph(structure)


def test_an_implausibly_dense_cell_is_refused_before_the_neighbour_search():
    # a mistyped cell length (0.05 Å instead of 5 Å) would put millions of images within 8 Å
    structure = Structure(Lattice.orthorhombic(0.05, 5.0, 5.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    with pytest.raises(FeaturisationError, match="atoms per Å³, more than any crystal"):
        crystal_graph(structure)
