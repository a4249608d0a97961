"""XRD patterns (ml.features.xrd) against pymatgen's XRDCalculator and Bragg's law."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.analysis.diffraction.xrd import XRDCalculator

from ml.features.errors import FeaturisationError
from ml.features.xrd import XRDConfig, bin_peaks, xrd_pattern

CU_KA = 1.54184
EDGES = np.linspace(10.0, 110.0, 5001)  # 0.02° bins, built independently of XRDConfig


def pymatgen_binned(structure) -> np.ndarray:
    """pymatgen's peaks summed into 0.02° bins with np.histogram, divided by the largest bin."""
    peaks = XRDCalculator(wavelength=CU_KA).get_pattern(structure, scaled=False, two_theta_range=(10, 110))
    counts, _ = np.histogram(peaks.x, bins=EDGES, weights=peaks.y)
    return counts / counts.max()


@pytest.mark.parametrize("name", ["nacl", "cscl", "silicon", "triclinic"])
def test_pattern_equals_independent_binning_of_pymatgen_peaks(crystals, name):
    structure = getattr(crystals, name)()
    pattern = xrd_pattern(structure)
    expected = pymatgen_binned(structure)
    assert pattern.shape == (5000,) and pattern.dtype == np.float32
    assert pattern.max() == 1.0 and pattern.min() == 0.0
    np.testing.assert_array_equal(np.flatnonzero(pattern), np.flatnonzero(expected))
    np.testing.assert_allclose(pattern, expected, atol=1e-6)


def test_first_peaks_of_simple_cubic_follow_braggs_law(crystals):
    a = 3.0
    # (hkl) with h²+k²+l² = n; n = 7 has no integer solution; n ≥ 11 lies beyond 2θ = 110°
    ns = [1, 2, 3, 4, 5, 6, 8, 9, 10]
    bragg = np.degrees(2 * np.arcsin(CU_KA / (2 * a / np.sqrt(ns))))
    assert bragg[0] == pytest.approx(29.78, abs=0.01) and bragg[-1] < 110 < np.degrees(
        2 * np.arcsin(CU_KA / (2 * a / np.sqrt(11)))
    )

    peaks = XRDCalculator(wavelength=CU_KA).get_pattern(crystals.polonium(a), two_theta_range=(10, 110))
    np.testing.assert_allclose(peaks.x, bragg, atol=1e-6)

    pattern = xrd_pattern(crystals.polonium(a))
    expected_bins = np.floor((bragg - 10.0) / 0.02).astype(int)
    np.testing.assert_array_equal(np.flatnonzero(pattern), expected_bins)
    # the two-theta axis the app plots puts every peak in the bin starting just below it
    axis = XRDConfig().two_theta()
    assert np.all(axis[expected_bins] <= bragg) and np.all(bragg < axis[expected_bins] + 0.02)


def test_cscl_first_peak_is_the_100_reflection(crystals):
    a = 4.12
    pattern = xrd_pattern(crystals.cscl(a))
    first = np.flatnonzero(pattern)[0]
    two_theta_100 = np.degrees(2 * np.arcsin(CU_KA / (2 * a)))
    assert first == int((two_theta_100 - 10) // 0.02)
    # (110) is the strongest line of CsCl: Cs and Cl scatter in phase there
    two_theta_110 = np.degrees(2 * np.arcsin(CU_KA / (2 * a / np.sqrt(2))))
    assert np.argmax(pattern) == int((two_theta_110 - 10) // 0.02)


class TestBinPeaks:
    def test_no_peaks_gives_zeros(self):
        out = bin_peaks(np.array([]), np.array([]))
        assert out.shape == (5000,) and not out.any()

    def test_peaks_outside_the_range_are_dropped(self):
        out = bin_peaks(np.array([5.0, 9.999, 110.0, 150.0]), np.array([1.0, 2.0, 3.0, 4.0]))
        assert not out.any()

    def test_range_ends(self):
        out = bin_peaks(np.array([10.0, 109.99]), np.array([1.0, 4.0]))
        assert out[0] == pytest.approx(0.25) and out[-1] == 1.0
        assert np.count_nonzero(out) == 2

    def test_peaks_in_one_bin_add_up_and_max_is_one(self):
        out = bin_peaks(np.array([20.001, 20.019, 30.0]), np.array([1.0, 2.0, 6.0]))
        assert out[500] == pytest.approx(0.5) and out[1000] == 1.0
        assert np.count_nonzero(out) == 2 and out.dtype == np.float32

    def test_other_grid(self):
        config = XRDConfig(two_theta_min=20.0, two_theta_max=30.0, step=0.5)
        out = bin_peaks(np.array([19.0, 20.2, 29.9]), np.array([9.0, 1.0, 2.0]), config)
        assert config.n_bins == 20 and out.shape == (20,)
        np.testing.assert_allclose(out[[0, 19]], [0.5, 1.0])

    def test_bin_of_left_edge_with_float_steps(self):
        # 10 + 0.02 * k is not exact in binary; peaks just inside bin k must still land in k
        config = XRDConfig()
        k = np.arange(0, 5000, 7)
        centres = config.two_theta()[k] + 0.01
        out = bin_peaks(centres, np.ones_like(centres))
        np.testing.assert_array_equal(np.flatnonzero(out), k)


def test_no_reflection_in_range_raises(crystals):
    with pytest.raises(FeaturisationError, match="no XRD reflection"):
        xrd_pattern(crystals.nacl(), XRDConfig(two_theta_min=10.0, two_theta_max=12.0))


def test_invalid_config_raises():
    with pytest.raises(ValueError):
        XRDConfig(two_theta_min=50.0, two_theta_max=40.0)
    with pytest.raises(ValueError):
        XRDConfig(step=0.0)
