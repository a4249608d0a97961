"""Crystal graphs (CGCNN, Xie & Grossman 2018): atoms as nodes, near neighbours as edges.

:func:`crystal_graph` turns a pymatgen ``Structure`` into plain arrays; the model expands the
distances on Gaussians (:class:`ml.models.cgcnn.GaussianDistance`) and looks the atomic
numbers up in the 92-d feature table (:mod:`ml.features.atom_features`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ml.features.atom_features import MAX_Z
from ml.features.errors import FeaturisationError

#: Atoms per Å³ above which a cell is refused: the densest mp2024 crystals hold 0.23 (iron and
#: cobalt hydrides; diamond 0.18). Bounds the neighbour search of a mistyped cell (a = 0.005 Å),
#: which would otherwise exhaust memory.
MAX_ATOM_DENSITY = 1.0


@dataclass(frozen=True)
class GraphConfig:
    """How edges are chosen.

    Attributes:
        cutoff: neighbour search radius, Å (periodic images included).
        max_neighbors: keep at most this many nearest neighbours per atom (CGCNN's 12).
        max_sites: refuse larger cells (memory guard for uploads).
    """

    cutoff: float = 8.0
    max_neighbors: int = 12
    max_sites: int = 1000

    def __post_init__(self) -> None:
        if self.cutoff <= 0 or self.max_neighbors < 1 or self.max_sites < 1:
            raise ValueError(f"invalid GraphConfig {self}")

    def key(self) -> str:
        """A short stable description used to name feature caches."""
        return "graph-" + "-".join(f"{k}{v}" for k, v in asdict(self).items())


@dataclass(frozen=True)
class CrystalGraph:
    """Arrays of one crystal graph.

    Attributes:
        atomic_numbers: ``(n_atoms,)`` int16.
        edge_src: ``(n_edges,)`` int16, index of the neighbour atom (message source).
        edge_dst: ``(n_edges,)`` int16, index of the centre atom (message target).
        edge_distance: ``(n_edges,)`` float32, Å.
    """

    atomic_numbers: np.ndarray
    edge_src: np.ndarray
    edge_dst: np.ndarray
    edge_distance: np.ndarray


def check_structure(structure, max_sites: int) -> None:
    """Raise :class:`FeaturisationError` for structures the models cannot take.

    Refused: no sites, partial occupancies (disorder; :func:`ml.data.structures.majority_occupant`
    gives an ordered approximation), more than ``max_sites`` sites, placeholder species that
    are no element (pymatgen's ``DummySpecies``, e.g. atom type ``Xx``), elements beyond
    Z = 100 (the atom features stop at fermium), a cell without a finite positive volume,
    more than :data:`MAX_ATOM_DENSITY` atoms per Å³, non-finite coordinates. Overlapping
    atoms are refused by :func:`crystal_graph`.
    """
    from pymatgen.core.periodic_table import DummySpecies

    n = len(structure)
    if n == 0:
        raise FeaturisationError("the structure has no sites")
    if not structure.is_ordered:
        raise FeaturisationError("disordered structure (partial occupancies) is not supported")
    if n > max_sites:
        raise FeaturisationError(f"{n} sites is more than the limit of {max_sites}")
    for site in structure:
        species = site.specie
        if isinstance(species, DummySpecies):
            raise FeaturisationError(
                f"site {site.label or species.symbol} holds {species.symbol!r}, which is not a chemical element "
                "(pymatgen reads an unknown atom type as a placeholder species)"
            )
        if not 1 <= species.Z <= MAX_Z:
            raise FeaturisationError(
                f"element {species.symbol} (Z = {species.Z}) is beyond Z = {MAX_Z}: the model has atom features "
                "up to fermium only"
            )
    volume = structure.lattice.volume if np.isfinite(structure.lattice.matrix).all() else np.nan
    if not (np.isfinite(volume) and volume > 0):
        raise FeaturisationError("the cell has no finite volume (check the cell lengths and angles)")
    if n / volume > MAX_ATOM_DENSITY:
        raise FeaturisationError(
            f"the cell holds {n / volume:.3g} atoms per Å³, more than any crystal (at most about 0.23): check the "
            "cell lengths and angles"
        )
    if not np.isfinite(structure.frac_coords).all():
        raise FeaturisationError("the structure has non-finite atom coordinates")


def crystal_graph(structure, config: GraphConfig = GraphConfig()) -> CrystalGraph:
    """Nodes and edges of ``structure`` as a :class:`CrystalGraph`.

    Edges come from ``Structure.get_neighbor_list(cutoff)``; for each centre atom the
    ``max_neighbors`` nearest are kept (ties broken by order). An isolated atom has no edges.

    Raises:
        FeaturisationError: see :func:`check_structure`, or two atoms closer than 0.1 Å.
    """
    check_structure(structure, config.max_sites)
    centre, neighbour, _images, distance = structure.get_neighbor_list(config.cutoff)
    if len(distance) and distance.min() < 0.1:
        raise FeaturisationError("two atoms are closer than 0.1 Å")
    order = np.lexsort((distance, centre))
    centre, neighbour, distance = centre[order], neighbour[order], distance[order]
    starts = np.searchsorted(centre, centre, side="left")
    rank = np.arange(len(centre)) - starts
    keep = rank < config.max_neighbors
    return CrystalGraph(
        atomic_numbers=np.asarray(structure.atomic_numbers, dtype=np.int16),
        edge_src=neighbour[keep].astype(np.int16),
        edge_dst=centre[keep].astype(np.int16),
        edge_distance=distance[keep].astype(np.float32),
    )
