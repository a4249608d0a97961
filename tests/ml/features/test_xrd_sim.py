"""The fast XRD simulator (ml.features.xrd_sim) against pymatgen's XRDCalculator, Bragg's law and hand sums."""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from ml.data.datasets import read_jsonl_records
from ml.features.errors import FeaturisationError
from ml.data.structures import crystal_system, parse_cif
from ml.features.xrd import XRDConfig, xrd_pattern
from ml.features.xrd_sim import xrd_pattern_fast, xrd_patterns

CU_KA = 1.54184

# Mirror materials (2–5 elements) picked by space group: per crystal system the first id (sorted)
# with 1–4, 5–20 and 21–60 sites, plus the first ones of 200+ sites.
MIRROR_IDS = {
    "triclinic": ["mp-1065860", "mp-1002571", "mp-1003764", "mp-1196206"],  # 4, 7, 60, 240 sites
    "monoclinic": ["mp-1061823", "mp-1001", "mp-1001825", "mp-1197377"],  # 3, 6, 32, 312
    "orthorhombic": ["mp-1001603", "mp-1001022", "mp-1001787", "mp-1181786"],  # 4, 10, 32, 256
    "tetragonal": ["mp-1002069", "mp-10003", "mp-10006"],  # 4, 12, 32
    "trigonal": ["mp-1001604", "mp-10010", "mp-10080", "mp-1030015"],  # 4, 5, 24, 288
    "hexagonal": ["mp-1001835", "mp-10000", "mp-10056"],  # 4, 6, 48
    "cubic": ["mp-10015", "mp-1001012", "mp-10117", "mp-1196581"],  # 2, 14, 29, 240
}
ALL_IDS = [mid for ids in MIRROR_IDS.values() for mid in ids]


@pytest.fixture(scope="session")
def mirror_structures(mirror: Path) -> dict[str, Structure]:
    records = dict(read_jsonl_records(mirror / "mp2024_structures.jsonl.gz", set(ALL_IDS)))
    assert set(records) == set(ALL_IDS)
    return {mid: parse_cif(cif) for mid, cif in records.items()}


@pytest.fixture(scope="session")
def pymatgen_patterns(mirror_structures) -> dict[str, np.ndarray]:
    """ml.features.xrd.xrd_pattern (pymatgen) of every selected mirror material, computed once."""
    return {mid: xrd_pattern(structure) for mid, structure in mirror_structures.items()}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def assert_same_pattern(ours: np.ndarray, reference: np.ndarray) -> None:
    """Same non-zero bins, same values (float32 rounding), cosine 1."""
    assert ours.shape == reference.shape and ours.dtype == np.float32 and ours.max() == 1.0
    np.testing.assert_array_equal(np.flatnonzero(ours), np.flatnonzero(reference))
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-6)
    assert cosine(ours, reference) > 0.99999


# --------------------------------------------------------------------------- against pymatgen


def test_mirror_selection_covers_every_crystal_system_and_size(mirror: Path, mirror_structures):
    props = pd.read_csv(mirror / "mp2024_properties.csv.gz", usecols=["material_id", "spacegroup_number"])
    spacegroups = props.set_index("material_id")["spacegroup_number"]
    for system, ids in MIRROR_IDS.items():
        assert {crystal_system(spacegroups[mid]) for mid in ids} == {system}
    sizes = [len(mirror_structures[mid]) for mid in ALL_IDS]
    assert min(sizes) == 2 and max(sizes) > 300 and sum(size >= 200 for size in sizes) >= 5


@pytest.mark.parametrize("material_id", ALL_IDS)
def test_equals_pymatgen_on_real_structures(mirror_structures, pymatgen_patterns, material_id):
    assert_same_pattern(xrd_pattern_fast(mirror_structures[material_id]), pymatgen_patterns[material_id])


def test_batch_equals_one_by_one_and_meets_the_targets(mirror_structures, pymatgen_patterns):
    structures = [mirror_structures[mid] for mid in ALL_IDS]
    batch = xrd_patterns(structures)
    assert batch.shape == (len(structures), 5000) and batch.dtype == np.float32
    for row, structure in zip(batch, structures):
        np.testing.assert_array_equal(row, xrd_pattern_fast(structure))
    cosines = [cosine(row, pymatgen_patterns[mid]) for row, mid in zip(batch, ALL_IDS)]
    assert np.mean(cosines) >= 0.999 and min(cosines) >= 0.99


@pytest.mark.parametrize("name", ["nacl", "cscl", "silicon", "polonium", "triclinic"])
def test_equals_pymatgen_on_hand_built_crystals(crystals, name):
    structure = getattr(crystals, name)()
    assert_same_pattern(xrd_pattern_fast(structure), xrd_pattern(structure))


@pytest.mark.parametrize(
    "config",
    [
        XRDConfig(wavelength=0.71073, two_theta_min=5.0, two_theta_max=60.0, step=0.01),  # Mo Kα
        XRDConfig(two_theta_min=30.0, two_theta_max=150.0, step=0.1),
    ],
)
def test_equals_pymatgen_on_other_grids(crystals, mirror_structures, config):
    for structure in (crystals.triclinic(), mirror_structures["mp-10080"]):
        assert_same_pattern(xrd_pattern_fast(structure, config), xrd_pattern(structure, config))


def test_partial_occupancies_vacancies_and_ions_equal_pymatgen(crystals):
    alloy = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.3}], [[0, 0, 0]])  # 20 % vacancies
    mixed = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), [{"Na": 0.7, "K": 0.3}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    ions = crystals.nacl()
    ions.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    for structure in (alloy, mixed, ions):
        assert_same_pattern(xrd_pattern_fast(structure), xrd_pattern(structure))


def test_debye_waller_factors_equal_pymatgen(crystals):
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    from ml.features.xrd import bin_peaks

    factors = {"Na": 1.2, "Cl": 0.7}
    peaks = XRDCalculator(CU_KA, debye_waller_factors=factors).get_pattern(
        crystals.nacl(), scaled=False, two_theta_range=(10, 110)
    )
    expected = bin_peaks(np.array(peaks.x), np.array(peaks.y))
    assert_same_pattern(xrd_pattern_fast(crystals.nacl(), debye_waller_factors=factors), expected)
    # thermal motion damps the high-angle lines relative to the low ones
    plain = xrd_pattern_fast(crystals.nacl())
    assert expected[-1000:].max() < plain[-1000:].max()


# --------------------------------------------------------------------------- physics


def test_first_peaks_of_simple_cubic_follow_braggs_law_with_hand_intensities(crystals):
    a = 3.0
    # (hkl) with h²+k²+l² = n below 2θ = 110°, and the number of (hkl) giving each n
    ns = np.array([1, 2, 3, 4, 5, 6, 8, 9, 10])
    multiplicity = np.array([6, 12, 8, 6, 24, 24, 12, 30, 24])
    d = a / np.sqrt(ns)
    two_theta = np.degrees(2 * np.arcsin(CU_KA / (2 * d)))  # λ = 2 d sin θ
    assert two_theta[0] == pytest.approx(29.78, abs=0.01) and two_theta[-1] < 110

    pattern = xrd_pattern_fast(crystals.polonium(a))
    bins = np.floor((two_theta - 10.0) / 0.02).astype(int)
    np.testing.assert_array_equal(np.flatnonzero(pattern), bins)

    # I = m f(s)² (1 + cos² 2θ) / (sin² θ cos θ), f from pymatgen's coefficient file
    coeff = np.array(
        json.loads(
            (resources.files("pymatgen.analysis.diffraction") / "atomic_scattering_params.json").read_text()
        )["Po"]
    )
    s2 = (1 / (2 * d)) ** 2
    f = 84 - 41.78214 * s2 * (coeff[:, 0] * np.exp(-np.outer(s2, coeff[:, 1]))).sum(axis=1)
    theta = np.radians(two_theta / 2)
    intensity = multiplicity * f**2 * (1 + np.cos(2 * theta) ** 2) / (np.sin(theta) ** 2 * np.cos(theta))
    np.testing.assert_allclose(pattern[bins], intensity / intensity.max(), rtol=1e-5)


def test_face_centred_cubic_extinctions(crystals):
    """NaCl: (hkl) all even or all odd reflect; mixed parity, e.g. (100) and (110), is extinct."""
    a = 5.64
    pattern = xrd_pattern_fast(crystals.nacl(a))

    def bin_of(n: int) -> int:
        return int(np.floor((np.degrees(2 * np.arcsin(CU_KA * np.sqrt(n) / (2 * a))) - 10) / 0.02))

    assert pattern[bin_of(3)] > 0 and pattern[bin_of(4)] > 0 and pattern[bin_of(8)] > 0  # 111, 200, 220
    assert pattern[bin_of(1)] == 0 and pattern[bin_of(2)] == 0 and pattern[bin_of(5)] == 0  # 100, 110, 210
    assert np.argmax(pattern) == bin_of(4)  # (200): Na and Cl in phase


def test_same_crystal_in_other_cells_gives_the_same_pattern(crystals):
    """A supercell and a strongly skewed (unimodular, LLL-reduced inside) cell of one crystal."""
    reference = xrd_pattern_fast(crystals.triclinic())
    supercell = crystals.triclinic().make_supercell([2, 1, 3])
    skewed = crystals.triclinic().make_supercell([[1, 7, 0], [0, 1, 5], [0, 0, 1]])
    assert max(skewed.lattice.abc) > 30
    for structure in (supercell, skewed):
        np.testing.assert_allclose(xrd_pattern_fast(structure), reference, atol=2e-6)
    assert_same_pattern(xrd_pattern_fast(skewed), xrd_pattern(skewed))


def test_input_is_not_modified(crystals):
    structure = crystals.triclinic()
    before = structure.as_dict()
    xrd_patterns([structure, structure])
    assert structure.as_dict() == before


# --------------------------------------------------------------------------- memory and devices


def test_chunked_computation_equals_the_default(mirror_structures):
    structure = mirror_structures["mp-1197377"]  # 312 sites
    np.testing.assert_array_equal(
        xrd_pattern_fast(structure, chunk_entries=1000), xrd_pattern_fast(structure)
    )


def test_torch_backend_equals_numpy(crystals, mirror_structures):
    pytest.importorskip("torch")
    structures = [crystals.triclinic(), mirror_structures["mp-10056"]]
    np.testing.assert_allclose(xrd_patterns(structures, device="cpu"), xrd_patterns(structures), atol=1e-6)


def test_cuda_backend_equals_numpy(crystals):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    np.testing.assert_allclose(
        xrd_pattern_fast(crystals.triclinic(), device="cuda"), xrd_pattern_fast(crystals.triclinic()), atol=1e-6
    )


# --------------------------------------------------------------------------- degenerate input


def test_one_atom_cell_too_small_to_diffract_raises():
    # d_max = a = 0.8 Å < λ / (2 sin 55°) = 0.94 Å: no reflection below 2θ = 110°
    with pytest.raises(FeaturisationError, match="no XRD reflection"):
        xrd_pattern_fast(Structure(Lattice.cubic(0.8), ["Cu"], [[0, 0, 0]]))


def test_huge_cell_is_refused_at_once():
    huge = Structure(Lattice.cubic(200.0), ["Cu"], [[0, 0, 0]])  # ~2e7 reflections
    start = time.perf_counter()
    with pytest.raises(FeaturisationError, match="too large"):
        xrd_pattern_fast(huge)
    assert time.perf_counter() - start < 1.0


def test_reflection_cap_is_a_parameter(crystals):
    with pytest.raises(FeaturisationError, match="too large"):
        xrd_pattern_fast(crystals.nacl(), max_reflections=100)


@pytest.mark.parametrize(
    ("structure", "message"),
    [
        (Structure(Lattice.cubic(4.0), ["Es"], [[0, 0, 0]]), "no X-ray scattering coefficients for Es"),
        (Structure(Lattice.cubic(4.0), [], []), "no sites"),
        (Structure(Lattice([[1, 0, 0], [2, 0, 0], [0, 0, 1]]), ["Cu"], [[0, 0, 0]]), "degenerate"),
        (
            Structure(Lattice.cubic(4.0), ["Cu"], [[0, 0, 0]], site_properties={f"U{i}_cif": [0.01] for i in
                                                                                  (11, 22, 33, 23, 13, 12)}),
            "anisotropic",
        ),
    ],
    ids=["no-coefficients", "empty", "flat-cell", "U_cif"],
)
def test_input_that_cannot_be_simulated_raises(structure, message):
    with pytest.raises(FeaturisationError, match=message):
        xrd_pattern_fast(structure)


def test_batch_errors_name_the_structure_or_leave_zeros(crystals):
    bad = Structure(Lattice.cubic(0.8), ["Cu"], [[0, 0, 0]])
    with pytest.raises(FeaturisationError, match=r"structure 1 \(Cu\): no XRD reflection"):
        xrd_patterns([crystals.nacl(), bad])
    out = xrd_patterns([crystals.nacl(), bad, crystals.cscl()], on_error="zeros")
    assert not out[1].any() and out[0].max() == 1.0 and out[2].max() == 1.0
    with pytest.raises(ValueError):
        xrd_patterns([crystals.nacl()], on_error="skip")
