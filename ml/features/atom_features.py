"""The 92-dimensional CGCNN atom features, built from pymatgen's element data.

Xie & Grossman (PRL 120, 145301, 2018), table S1, one-hot encode nine element properties.
We rebuild the table from :mod:`pymatgen.core.periodic_table` rather than ship CGCNN's
``atom_init.json``. Each block below is one-hot (all zeros where pymatgen has no value):

| block | categories | binning |
|---|---|---|
| group | 19 | groups 1–18, plus one category for the f-block (La–Lu, Ac–Lr), which have no group |
| period | 7 | rows 1–7 |
| electronegativity (Pauling) | 10 | 10 equal bins on [0.5, 4.0] |
| covalent radius (Å) | 10 | 10 equal bins on [0.25, 2.50] |
| valence electrons | 12 | 1–12: groups 1–12 give the group number, groups 13–18 give group − 10, f-block 3 |
| first ionisation energy (eV) | 10 | 10 equal bins of log10(E) on [log10 3.5, log10 25] (1.3–3.3 in ln, as CGCNN) |
| electron affinity (eV) | 10 | 10 equal bins on [−3, 3.7] |
| block | 4 | s, p, d, f |
| atomic volume (cm³/mol) | 10 | 10 equal bins of ln(V) on [1.5, 4.3] (molar volume) |

19 + 7 + 10 + 10 + 12 + 10 + 10 + 4 + 10 = 92. CGCNN counts 18 groups and 9 rows; we fold
its two extra rows (lanthanides, actinides) into the f-block group category instead.
Values outside a range go to the nearest end bin.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache

import numpy as np

N_ATOM_FEATURES = 92
MAX_Z = 100  #: features are tabulated for Z = 1 … 100; row 0 is all zeros (padding)

_F_BLOCK_GROUP = 19


def _one_hot(index: int | None, size: int) -> np.ndarray:
    out = np.zeros(size, dtype=np.float32)
    if index is not None:
        out[min(max(index, 0), size - 1)] = 1.0
    return out


def _binned(value: float | None, low: float, high: float, bins: int) -> np.ndarray:
    if value is None or not math.isfinite(value):
        return np.zeros(bins, dtype=np.float32)
    index = int((value - low) / (high - low) * bins)
    return _one_hot(index, bins)


def _group(element) -> int:
    if element.block == "f":
        return _F_BLOCK_GROUP
    return int(element.group)


def element_features(z: int) -> np.ndarray:
    """The 92-d feature vector of element ``z`` (shape ``(92,)``, float32).

    Raises:
        ValueError: ``z`` outside 1 … 100.
    """
    if not 1 <= z <= MAX_Z:
        raise ValueError(f"atomic number must be in 1..{MAX_Z}, got {z}")
    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    el = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = _group(el)
        valence = 3 if group == _F_BLOCK_GROUP else (group if group <= 12 else group - 10)
        electronegativity = el.X if el.X and el.X > 0 else None
        covalent = CovalentRadius.radius.get(el.symbol)
        ionisation = el.ionization_energies[0] if el.ionization_energies and el.ionization_energies[0] else None
        try:
            affinity = float(el.electron_affinity)
        except (TypeError, ValueError, KeyError):
            affinity = None
        volume = el.molar_volume
        volume = float(volume) if volume else None
    parts = [
        _one_hot(group - 1, 19),
        _one_hot(int(el.row) - 1, 7),
        _binned(electronegativity, 0.5, 4.0, 10),
        _binned(covalent, 0.25, 2.50, 10),
        _one_hot(valence - 1, 12),
        _binned(math.log10(ionisation) if ionisation else None, math.log10(3.5), math.log10(25.0), 10),
        _binned(affinity, -3.0, 3.7, 10),
        _one_hot("spdf".index(el.block), 4),
        _binned(math.log(volume) if volume else None, 1.5, 4.3, 10),
    ]
    vector = np.concatenate(parts)
    assert vector.shape == (N_ATOM_FEATURES,)
    return vector


@lru_cache(maxsize=1)
def atom_feature_table() -> np.ndarray:
    """Features of every element indexed by atomic number, shape ``(101, 92)``; row 0 is zeros."""
    table = np.zeros((MAX_Z + 1, N_ATOM_FEATURES), dtype=np.float32)
    for z in range(1, MAX_Z + 1):
        table[z] = element_features(z)
    return table
