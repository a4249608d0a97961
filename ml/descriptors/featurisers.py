"""Baseline crystal descriptors' featurisers (matmap issue 5): ``Structure -> (dim,) float32``.

| name | vector | source |
|---|---|---|
| ``ewald`` | Ewald sum matrix eigenspectrum, ``(256,)`` (dscribe: eV) | Faber et al., *Int. J. Quantum Chem.* 115, 1094 (2015); dscribe ``EwaldSumMatrix`` |
| ``sine_coulomb`` | sine Coulomb matrix eigenspectrum, ``(256,)`` (Hartree-like, Z²/bohr) | same paper; matminer ``SineCoulombMatrix`` |
| ``crystalnn`` | CrystalNN site fingerprints, min / max / mean / std over sites, ``(244,)`` | Zimmermann & Jain, *RSC Adv.* 10, 6063 (2020); MP "similar structures"; matminer |
| ``chgnet`` | CHGNet 0.3.0 crystal feature per atom (``crystal_fea`` / n atoms), ``(64,)`` | Deng et al., *Nat. Mach. Intell.* 5, 1031 (2023); pip ``chgnet`` |
| ``cmml`` | our crystal-encoder embedding, read from the built map | Suzuki et al. 2022, the map's model (default ``data/models/cmml-full``) |

**Eigenspectra** (``ewald``, ``sine_coulomb``): the matrix of a cell is built on its primitive
cell (pymatgen ``get_primitive_structure``; a supercell otherwise has a different, longer
spectrum); its eigenvalues (``numpy.linalg.eigvalsh``) sorted by decreasing absolute value
(as dscribe's ``permutation="eigenspectrum"``; matminer's ``flatten=True`` leaves them
unsorted) are zero-padded
to :data:`EIGENSPECTRUM_LENGTH` = 256 values, or cut to the 256 largest for the <0.1 % of
mp2024 cells with more sites (99.9th percentile: 224 sites; largest 688). Compared by the
Euclidean norm of the difference of the padded spectra (Rupp et al., *PRL* 108, 058301, 2012),
not standardised: every entry is an energy in the same unit.

**CrystalNN**: the fingerprint and distance of the Materials Project documentation
("Structure similarity", docs.materialsproject.org): ``SiteStatsFingerprint(CrystalNNFingerprint
.from_preset("ops", distance_cutoffs=None, x_diff_weight=0), stats=(mean, std_dev, minimum,
maximum))`` and the plain Euclidean distance between the raw 244-d vectors (MP: < 0.9 means
the same prototype). matminer's ``from_preset("CrystalNNFingerprint_ops")`` differs only in
keeping the default distance cut-offs and stats (mean, std_dev).

**CHGNet / CMML**: no metric from the authors; Euclidean on the raw vectors, as the map does.
"""

from __future__ import annotations

import warnings
from functools import cache

import numpy as np

#: Length of the padded eigenspectra of ``ewald`` and ``sine_coulomb``.
EIGENSPECTRUM_LENGTH = 256


# --------------------------------------------------------------------------- featurisers


def _ase_atoms(structure):
    """A plain periodic ``ase.Atoms`` (no velocities: dscribe 2.1 fails on pymatgen's adaptor
    output with ase ≥ 3.25, "Use only one of momenta and velocities")."""
    import ase

    return ase.Atoms(
        numbers=[site.specie.Z for site in structure],
        positions=structure.cart_coords,
        cell=structure.lattice.matrix,
        pbc=True,
    )


def _pad_spectrum(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues sorted by decreasing absolute value, zero-padded (or cut) to
    :data:`EIGENSPECTRUM_LENGTH`, float32."""
    eigenvalues = np.asarray(eigenvalues)
    ordered = np.real(eigenvalues[np.argsort(-np.abs(eigenvalues), kind="stable")])
    out = np.zeros(EIGENSPECTRUM_LENGTH, dtype=np.float32)
    keep = min(len(ordered), EIGENSPECTRUM_LENGTH)
    out[:keep] = ordered[:keep]
    return out


def _eigenspectrum(structure, matrix: str) -> np.ndarray:
    """Padded eigenspectrum of a matrix descriptor of the primitive cell of ``structure``.

    ``ewald``: dscribe's ``EwaldSumMatrix`` (matminer 0.10 no longer ships one). ``sine``:
    matminer's ``SineCoulombMatrix(flatten=False)`` (dscribe 2.1's ``SineMatrix`` fails with
    ase ≥ 3.25; matminer's own ``flatten=True`` leaves ``np.linalg.eig``'s order unsorted), so
    both matrices are diagonalised here with ``numpy.linalg.eigvalsh`` (they are symmetric).
    """
    primitive = structure.get_primitive_structure()
    if matrix == "ewald":
        from dscribe.descriptors import EwaldSumMatrix

        n_sites = len(primitive)
        square = EwaldSumMatrix(n_atoms_max=n_sites, permutation="none").create(_ase_atoms(primitive))
        square = np.asarray(square, dtype=np.float64).reshape(n_sites, n_sites)
    else:
        from matminer.featurizers.structure import SineCoulombMatrix

        square = np.asarray(SineCoulombMatrix(flatten=False).featurize(primitive)[0], dtype=np.float64)
    return _pad_spectrum(np.linalg.eigvalsh((square + square.T) / 2))


def ewald_spectrum(structure) -> np.ndarray:
    """Ewald sum matrix eigenspectrum of ``structure`` (pymatgen ``Structure``), ``(256,)``."""
    return _eigenspectrum(structure, "ewald")


def sine_coulomb_spectrum(structure) -> np.ndarray:
    """Sine Coulomb matrix eigenspectrum of ``structure`` (pymatgen ``Structure``), ``(256,)``."""
    return _eigenspectrum(structure, "sine")


@cache
def _crystalnn_featurizer():
    from matminer.featurizers.site import CrystalNNFingerprint
    from matminer.featurizers.structure import SiteStatsFingerprint

    site = CrystalNNFingerprint.from_preset("ops", distance_cutoffs=None, x_diff_weight=0)
    return SiteStatsFingerprint(site, stats=("mean", "std_dev", "minimum", "maximum"))


def crystalnn_fingerprint(structure) -> np.ndarray:
    """MP's CrystalNN structure fingerprint of ``structure``, ``(244,)`` (61 site features ×
    mean, std, min, max; dimensionless weights and order parameters in [0, 1])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # CrystalNN warns about missing oxidation states
        return np.asarray(_crystalnn_featurizer().featurize(structure), dtype=np.float32)


@cache
def _chgnet_model():
    from chgnet.model import CHGNet

    return CHGNet.load(model_name="0.3.0", use_device="cpu", verbose=False).eval()


def chgnet_feature(structure) -> np.ndarray:
    """CHGNet 0.3.0's crystal feature of ``structure`` per atom, ``(64,)``: the mean over atoms
    of the final, layer-normalised atom features.

    CHGNet's own ``crystal_fea`` (``predict_structure(task="e", return_crystal_feas=True)``)
    is their *sum* (0.3.0 pools with ``GraphPooling(average=False)`` before its per-atom energy
    MLP), so it grows with the cell; dividing by the number of atoms makes a supercell give
    the same vector."""
    import torch

    from ml.threads import torch_threads

    with torch.inference_mode(), torch_threads(1):
        prediction = _chgnet_model().predict_structure(structure, task="e", return_crystal_feas=True)
    return np.asarray(prediction["crystal_fea"], dtype=np.float32).reshape(-1) / len(structure)


