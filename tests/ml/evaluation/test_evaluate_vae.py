"""The generator evaluation's pure helpers (``ml/evaluation/generator.py``): the reconstruction
figures of hand-made reconstructions, and the gates at their boundaries. No network: structures
are built by hand (the site matching itself is tested in ``test_sites.py``)."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from ml.evaluation.generator import GATES, check_gates, failure_reasons, reconstruction_metrics
from ml.generation.records import GeneratedCrystal
from voxel_store import b2, perovskite, shifted


def cscl(a: float = 4.0) -> Structure:
    return b2(a, "Cs", "Cl")


def srtio3(a: float = 3.9) -> Structure:
    return perovskite(a, "Sr", "Ti")


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
