"""Tiny voxel stores for the generator's tests, made from hand-built cubic crystals with the real
:func:`ml.generation.voxels.voxelize` on a 16³ grid (no mirror file is read).

Imported by the test modules (``from voxel_store import ...``) like ``tests/app/fixture_map.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pymatgen.core import Lattice, Structure

from ml.generation.voxel_arrays import VoxelArrays
from ml.generation.voxel_data import family_of
from ml.generation.voxels import VoxelConfig, voxelize

G = 16
VOXELS = VoxelConfig(grid_size=G)


def perovskite(a: float, a_site: str, b_site: str, x: str = "O") -> Structure:
    """Cubic ABX3 (Pm-3m): A at the corner, B at the body centre, X at the face centres."""
    return Structure(Lattice.cubic(a), [a_site, b_site, x, x, x],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def b2(a: float, first: str, second: str) -> Structure:
    """The CsCl (B2) structure: one atom at the corner, one at the body centre."""
    return Structure(Lattice.cubic(a), [first, second], [[0, 0, 0], [0.5, 0.5, 0.5]])


def shifted(structure: Structure, shift, order=None) -> Structure:
    """The same atoms moved by a fractional ``shift`` (wrapped into the cell), in another order."""
    order = list(range(len(structure))) if order is None else order
    return Structure(structure.lattice, [structure[i].specie for i in order],
                     np.mod(structure.frac_coords[order] + np.asarray(shift), 1.0))


def rock_salt(a: float, cation: str, anion: str) -> Structure:
    """The NaCl structure, conventional cell (8 sites)."""
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), [cation, anion], [[0, 0, 0], [0.5, 0.5, 0.5]])


def six_crystals() -> dict[str, tuple[Structure, float, str]]:
    """id → (conventional cubic cell, formation energy eV/atom, split): NaCl, CsCl, SrTiO3 and
    FeAl to train on; BaZrO3 and NiAl for validation (Ba, Zr and Ni appear only there)."""
    return {
        "x-1": (b2(4.12, "Cs", "Cl"), -2.1, "train"),
        "x-2": (rock_salt(5.64, "Na", "Cl"), -2.0, "train"),
        "x-3": (perovskite(3.9, "Sr", "Ti"), -3.5, "train"),
        "x-4": (b2(2.9, "Fe", "Al"), -0.3, "train"),
        "x-5": (perovskite(4.0, "Ba", "Zr"), -3.6, "val"),
        "x-6": (b2(3.3, "Ni", "Al"), -0.6, "val"),
    }


def decile_of(energy: float) -> int:
    """A fixed binning of formation energies into deciles 0–9 (0.4 eV/atom wide from −4)."""
    return int(np.clip((energy + 4.0) / 0.4, 0, 9))


def make_store(crystals: dict[str, tuple[Structure, float, str]]) -> tuple[VoxelArrays, pd.DataFrame]:
    """The voxel store and the selection table of ``crystals`` (id → (structure, energy, split)),
    as :func:`ml.generation.voxel_arrays.load_voxel_arrays` and :func:`ml.generation.voxel_data.select_vae_materials` give them."""
    ids = list(crystals)
    samples = [voxelize(crystals[m][0], VOXELS) for m in ids]
    energies = np.array([crystals[m][1] for m in ids])
    deciles = np.array([decile_of(e) for e in energies], dtype=np.int64)
    splits = np.array([crystals[m][2] for m in ids])
    spacegroups = [crystals[m][0].get_space_group_info(symprec=0.1)[1] for m in ids]
    families = np.array([family_of(crystals[m][0].composition, sg) or "" for m, sg in zip(ids, spacegroups)])
    arrays = VoxelArrays(
        material_ids=np.array(ids),
        density=np.stack([s.density for s in samples]).astype(np.float16),
        species=np.stack([s.species for s in samples]),
        lattice=np.stack([s.lattice for s in samples]),
        decile=deciles,
        split=splits,
        family=families,
        n_sites=np.array([len(crystals[m][0]) for m in ids], dtype=np.int64),
        voxel_config=VOXELS,
    )
    selection = pd.DataFrame({
        "material_id": ids,
        "formula": [crystals[m][0].composition.reduced_formula for m in ids],
        "family": families,
        "spacegroup_number": spacegroups,
        "nsites": [len(crystals[m][0]) for m in ids],
        "formation_energy_per_atom": energies,
        "decile": deciles,
        "split": splits,
    })
    return arrays, selection


class TinyDataset:
    """The little a :func:`ml.training.vae.train_vae` and :class:`ml.generation.generative_model.GenerativeModel` read of a
    dataset when the voxel store is given: a name and the material ids (``extra_ids`` are known
    to the dataset but outside the VAE's set)."""

    def __init__(self, arrays: VoxelArrays, extra_ids: tuple[str, ...] = ()) -> None:
        self.name = "tiny"
        self.material_ids = [*map(str, arrays.material_ids), *extra_ids]


def six_crystal_store():
    """``(VoxelArrays, selection table, id → true structure)`` of :func:`six_crystals` (the
    ``store`` fixture of the generation and training tests)."""
    crystals = six_crystals()
    arrays, selection = make_store(crystals)
    return arrays, selection, {m: s for m, (s, _, _) in crystals.items()}
