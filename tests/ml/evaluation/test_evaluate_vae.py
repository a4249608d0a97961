"""The generator evaluation's pure helpers (``ml/evaluation/generator.py``): site matching on periodic
distances, the reconstruction figures of hand-made reconstructions, and the gates at their
boundaries. No network: structures are built by hand."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from ml.evaluation.generator import GATES, RECALL_DISTANCE, check_gates, failure_reasons, reconstruction_metrics, site_match
from ml.generation.generator import GeneratedCrystal


def cscl(a: float = 4.0) -> Structure:
    return Structure(Lattice.cubic(a), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def srtio3(a: float = 3.9) -> Structure:
    return Structure(Lattice.cubic(a), ["Sr", "Ti", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])


def shifted(structure: Structure, shift, order=None) -> Structure:
    """The same atoms moved by a fractional ``shift`` (wrapped into the cell), in another order."""
    order = list(range(len(structure))) if order is None else order
    return Structure(structure.lattice, [structure[i].specie for i in order],
                     np.mod(structure.frac_coords[order] + np.asarray(shift), 1.0))


def test_site_match_of_a_shifted_copy_is_the_shift():
    true = cscl(4.0)
    # every atom moved 0.02 · 4 Å = 0.08 Å along −a, so Cs wraps to x = 0.98; listed in reverse order
    decoded = shifted(true, [-0.02, 0, 0], order=[1, 0])
    distance, recalled = site_match(true, decoded)
    assert distance == pytest.approx(0.08, abs=1e-9)
    assert recalled == 2


def test_site_match_ignores_species_for_matching_but_not_for_recall():
    true = srtio3()
    decoded = true.copy()
    decoded.replace(1, "Zr")  # Ti → Zr on the body centre
    distance, recalled = site_match(true, decoded)
    assert distance == pytest.approx(0.0, abs=1e-9)  # still matched to its own site
    assert recalled == len(true) - 1


def test_site_match_recalls_only_within_half_an_angstrom():
    true = cscl(4.0)
    near = Structure(true.lattice, ["Cs", "Cl"], [[0.1, 0, 0], [0.5, 0.5, 0.5]])  # Cs 0.4 Å away
    far = Structure(true.lattice, ["Cs", "Cl"], [[0.15, 0, 0], [0.5, 0.5, 0.5]])  # Cs 0.6 Å away
    assert 0.4 < RECALL_DISTANCE < 0.6
    assert site_match(true, near) == (pytest.approx(0.2), 2)
    assert site_match(true, far) == (pytest.approx(0.3), 1)


def test_site_match_reads_decoded_sites_in_the_true_cell():
    # a decoded cell 10 % too large with the right fractional positions matches exactly: the
    # cell-length error is scored apart (cell_length_mae)
    true = srtio3(3.9)
    decoded = Structure(Lattice.cubic(4.29), true.species, true.frac_coords)
    assert site_match(true, decoded) == (pytest.approx(0.0, abs=1e-9), len(true))


def test_site_match_with_a_missing_site_matches_the_smaller_set():
    true = srtio3()
    decoded = true.copy()
    decoded.remove_sites([4])
    distance, recalled = site_match(true, decoded)
    assert distance == pytest.approx(0.0, abs=1e-9) and recalled == 4


def _crystal(index: int, structure, a: float) -> GeneratedCrystal:
    return GeneratedCrystal(index, structure, valid=structure is not None, reason=None, lattice=(a, a, a), decile=0,
                            valid_paper=structure is not None)


def test_reconstruction_metrics_of_hand_made_reconstructions():
    truth = [cscl(4.0), srtio3(3.9), srtio3(3.9)]
    wrong_species = srtio3(3.9)
    wrong_species.replace(1, "Zr")
    crystals = [
        _crystal(0, shifted(cscl(4.1), [0.01, 0, 0]), 4.1),  # right atoms, 0.04 Å off, cell 0.1 Å long
        _crystal(1, None, 3.9),  # nothing decoded
        _crystal(2, wrong_species, 3.8),  # right sites, one wrong element, cell 0.1 Å short
    ]
    m = reconstruction_metrics(crystals, truth, np.array([4.0, 3.9, 3.9]))
    assert m["reconstruction_exact"] == pytest.approx(1 / 3)
    assert m["site_count_error"] == pytest.approx((0 + 5 + 0) / 3)  # no structure: all 5 sites missed
    assert m["exact_site_count"] == pytest.approx(2 / 3)
    assert m["cell_length_mae"] == pytest.approx(0.2 / 3)
    assert m["site_emd"] == pytest.approx((0.04 + 0.0) / 2)  # over the decoded ones
    assert m["species_recall"] == pytest.approx((2 + 0 + 4) / (2 + 5 + 5))
    assert m["reconstruction_strict_validity"] == pytest.approx(2 / 3)


def test_gates_pass_at_their_targets_and_fail_just_beyond():
    at_target = {name: target for name, (_, target) in GATES.items()}
    gates = check_gates(at_target)
    assert set(gates) == set(GATES)
    assert all(g["passed"] for g in gates.values())
    for name, (op, target) in GATES.items():
        worse = target - 1e-6 if op == ">=" else target + 1e-6
        gates = check_gates({**at_target, name: worse})
        assert [n for n, g in gates.items() if not g["passed"]] == [name]
        assert gates[name] == {"value": worse, "target": target, "op": op, "passed": False}


def test_a_gate_not_measured_fails():
    at_target = {name: target for name, (_, target) in GATES.items()}
    del at_target["species_recall"]
    gates = check_gates({**at_target, "interpolation_ends_exact": None})
    assert {n for n, g in gates.items() if not g["passed"]} == {"species_recall", "interpolation_ends_exact"}
    assert gates["species_recall"]["value"] is None


def test_failure_reasons_group_the_first_rule_broken_without_the_crystals_own_numbers():
    from ml.evaluation.validity import strict_validity

    distorted = srtio3(3.9)
    distorted.translate_sites([1], [0.06, 0.0, 0.0])  # Ti 0.23 Å off centre: tetragonal, not cubic
    dense = cscl(1.4)  # 0.73 atoms per Å³
    other_formula = Structure(Lattice.cubic(3.8), ["Au", "Cu", "Cu", "Cu"],  # Cu3Au: cubic, but A3B
                              [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    crystals = []
    for i, structure in enumerate([cscl(), distorted, srtio3(), dense, other_formula, None]):
        verdict = strict_validity(structure)
        crystals.append(GeneratedCrystal(index=i, structure=structure, valid=verdict.strict, reason=verdict.reason,
                                         lattice=(4.0, 4.0, 4.0), decile=0))
    reasons = failure_reasons(crystals)
    assert sum(reasons.values()) == 4  # CsCl and SrTiO3 are valid
    assert reasons == {"not cubic": 1, "too dense (atoms per Å³)": 1, "formula not AB, ABX3, X2YZ or XYZ": 1,
                       "no structure decoded": 1}
