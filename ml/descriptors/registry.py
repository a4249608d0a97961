"""The registry of baseline descriptors: :class:`DescriptorSpec` (how one is computed, compared
and on which materials) and :data:`DESCRIPTORS`, the five of issue 5 (see :mod:`ml.descriptors.featurisers`)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from ml.descriptors.featurisers import EIGENSPECTRUM_LENGTH, chgnet_feature, crystalnn_fingerprint, ewald_spectrum, sine_coulomb_spectrum


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DescriptorSpec:
    """One descriptor: how it is computed, compared and on which materials.

    Attributes:
        name: registry key.
        label: human-readable name with its source library.
        citation: the paper that defines it.
        metric: the distance used for neighbours (``"euclidean"``: exact L2 with faiss).
        coverage: the set ``python -m ml descriptors`` computes by default (``"mp2024"``,
            ``"mp2024-icsd"`` or ``"sample"``, see :func:`ids_for`), chosen from the measured
            cost by issue 5's rule: the whole dataset where that is affordable on 2 cores
            (hours), else ``mp2024-icsd`` plus the benchmark queries (CrystalNN: the whole set
            would take about 16 h); the set a cache really covers is in its manifest
            (:attr:`DescriptorTable.coverage`, ``MapArtifacts.descriptor_info``).
        dim: vector length.
        config: everything that changes the vectors (hashed into the cache folder name).
        featurize: ``Structure -> (dim,) float32``; ``None`` for ``cmml`` (read from the map).
        seconds_per_structure: one core's seconds per structure (CIF parsing included),
            measured on the otherwise idle 2-core machine with 2 worker processes: ewald,
            sine_coulomb and chgnet on mp2024-icsd (43,936 materials), crystalnn on the
            1,004-material concept sample. :func:`cost_estimate` prefers a cache's own runs.
    """

    name: str
    label: str
    citation: str
    metric: str
    coverage: str
    dim: int
    config: str
    featurize: Callable | None = field(default=None, repr=False)
    seconds_per_structure: float | None = None

    def __post_init__(self) -> None:
        if self.metric != "euclidean":
            raise ValueError(f"{self.name}: unsupported metric {self.metric!r}")
        if self.coverage not in ("mp2024", "mp2024-icsd", "sample"):
            raise ValueError(f"{self.name}: unknown coverage {self.coverage!r}")

    def key(self) -> str:
        """``<name>-<10 hex of SHA-256 of config>``: the cache folder prefix."""
        return f"{self.name}-{hashlib.sha256(self.config.encode()).hexdigest()[:10]}"


_EIGEN_CONFIG = f"eigvalsh sorted by |lambda| descending; primitive cell; pad/cut {EIGENSPECTRUM_LENGTH}"
DESCRIPTORS: dict[str, DescriptorSpec] = {
    spec.name: spec
    for spec in (
        DescriptorSpec(
            "ewald", "Ewald sum matrix eigenspectrum (dscribe)",
            "Faber, Lindmaa, von Lilienfeld, Armiento, Int. J. Quantum Chem. 115, 1094 (2015)",
            "euclidean", "mp2024", EIGENSPECTRUM_LENGTH, "ewald; " + _EIGEN_CONFIG, ewald_spectrum, 0.036,
        ),
        DescriptorSpec(
            "sine_coulomb", "Sine Coulomb matrix eigenspectrum (matminer)",
            "Faber, Lindmaa, von Lilienfeld, Armiento, Int. J. Quantum Chem. 115, 1094 (2015)",
            "euclidean", "mp2024", EIGENSPECTRUM_LENGTH, "sine; " + _EIGEN_CONFIG, sine_coulomb_spectrum, 0.020,
        ),
        DescriptorSpec(
            "crystalnn", "CrystalNN site-fingerprint statistics (matminer; MP similar structures)",
            "Zimmermann, Jain, RSC Adv. 10, 6063 (2020); Pan et al., Inorg. Chem. 60, 1590 (2021)",
            "euclidean", "mp2024-icsd", 244,
            "SiteStatsFingerprint(CrystalNNFingerprint ops, distance_cutoffs=None, x_diff_weight=0; "
            "mean,std_dev,minimum,maximum)", crystalnn_fingerprint, 0.80,
        ),
        DescriptorSpec(
            "chgnet", "CHGNet 0.3.0 crystal feature (mean of the final atom features)",
            "Deng et al., Nat. Mach. Intell. 5, 1031 (2023)",
            "euclidean", "mp2024", 64, "chgnet 0.3.0 crystal_fea task=e / n_atoms", chgnet_feature, 0.055,
        ),
        DescriptorSpec(
            "cmml", "CMML crystal embedding (this map)",
            "Suzuki et al., Mach. Learn.: Sci. Technol. 3, 045034 (2022)",
            "euclidean", "mp2024", 128, "the built map's embeddings.npy",
        ),
    )
}


def get_spec(name: str) -> DescriptorSpec:
    """The spec of ``name``. Raises ValueError for an unknown name (listing the known ones)."""
    try:
        return DESCRIPTORS[name]
    except KeyError:
        raise ValueError(f"unknown descriptor {name!r}; expected one of {', '.join(DESCRIPTORS)}") from None


