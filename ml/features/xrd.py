"""Powder X-ray diffraction patterns, the periodic view of a crystal (Suzuki et al. 2022).

A pattern is a ``(5000,)`` float32 vector: the peak intensities of pymatgen's
``XRDCalculator`` (Cu Kα, λ = 1.54184 Å) summed into 0.02° bins of 2θ from 10° to 110°, then
divided by the largest bin so that max = 1.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ml.features.errors import FeaturisationError


@dataclass(frozen=True)
class XRDConfig:
    """The pattern grid.

    Attributes:
        wavelength: X-ray wavelength, Å (1.54184 = Cu Kα, pymatgen's ``"CuKa"``).
        two_theta_min, two_theta_max: range of 2θ, degrees.
        step: bin width of 2θ, degrees.
    """

    wavelength: float = 1.54184
    two_theta_min: float = 10.0
    two_theta_max: float = 110.0
    step: float = 0.02

    def __post_init__(self) -> None:
        if not (0 < self.two_theta_min < self.two_theta_max < 180 and self.step > 0 and self.wavelength > 0):
            raise ValueError(f"invalid XRDConfig {self}")

    @property
    def n_bins(self) -> int:
        """Number of bins (5000 by default)."""
        return int(round((self.two_theta_max - self.two_theta_min) / self.step))

    def two_theta(self) -> np.ndarray:
        """Left edges of the bins, degrees, shape ``(n_bins,)``."""
        return self.two_theta_min + self.step * np.arange(self.n_bins)

    def key(self) -> str:
        """A short stable description used to name feature caches."""
        return "xrd-" + "-".join(f"{k}{v}" for k, v in asdict(self).items())


def bin_peaks(two_theta: np.ndarray, intensity: np.ndarray, config: XRDConfig = XRDConfig()) -> np.ndarray:
    """Sum peak ``intensity`` at positions ``two_theta`` (degrees) into bins; max = 1.

    Returns:
        ``(n_bins,)`` float32. All zeros when there is no peak in range.
    """
    pattern = np.zeros(config.n_bins, dtype=np.float64)
    index = np.floor((np.asarray(two_theta) - config.two_theta_min) / config.step).astype(np.int64)
    inside = (index >= 0) & (index < config.n_bins)
    np.add.at(pattern, index[inside], np.asarray(intensity, dtype=np.float64)[inside])
    top = pattern.max()
    if top > 0:
        pattern /= top
    return pattern.astype(np.float32)


def xrd_pattern(structure, config: XRDConfig = XRDConfig()) -> np.ndarray:
    """The binned, max-normalised XRD pattern of ``structure`` from pymatgen's ``XRDCalculator``.

    Returns:
        ``(config.n_bins,)`` float32, max 1.

    Raises:
        FeaturisationError: no reflection falls inside the 2θ range.
    """
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    calculator = XRDCalculator(wavelength=config.wavelength)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            peaks = calculator.get_pattern(
                structure, scaled=False, two_theta_range=(config.two_theta_min, config.two_theta_max)
            )
        except ValueError as exc:  # pymatgen fails to unpack an empty reflection list
            raise FeaturisationError(
                f"no XRD reflection could be computed in the 2θ range "
                f"{config.two_theta_min}–{config.two_theta_max}° ({exc})"
            ) from exc
    pattern = bin_peaks(np.asarray(peaks.x), np.asarray(peaks.y), config)
    if not pattern.any():
        raise FeaturisationError("no XRD reflection in the 2θ range")
    return pattern
