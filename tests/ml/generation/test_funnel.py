"""The targeted-generation funnel (``ml/generation/funnel.py``) on hand-made generated crystals."""

from __future__ import annotations

from exact_model import StubEnergy, exact_model
from ml.generation.funnel import FUNNEL_STAGES, funnel_counts
from ml.generation.records import GeneratedCrystal


def test_funnel_stages(store):
    _, _, structures = store
    generator = exact_model(store, {"formation_energy_per_atom": StubEnergy(0.0)})
    base = "x-3"  # SrTiO3, −3.5 eV/atom, a training formula

    def crystal(i, structure, energy, valid=True):
        return GeneratedCrystal(i, structure, valid, None if valid else "x", (4.0, 4.0, 4.0), 0,
                                formation_energy_per_atom=energy)

    ca_ti_o3 = structures["x-3"].copy()
    ca_ti_o3.replace_species({"Sr": "Ca"})
    crystals = [
        crystal(0, None, None, valid=False),  # invalid
        crystal(1, structures["x-1"], -3.5),  # valid, another stoichiometry (1:1)
        crystal(2, structures["x-3"], -3.5),  # the base's 1:1:3, but a training formula
        crystal(3, structures["x-5"], -1.0),  # novel (BaZrO3 only in validation), energy too far
        crystal(4, ca_ti_o3, -3.3),  # novel, within 20 %, the first CaTiO3
        crystal(5, ca_ti_o3.copy(), -3.6),  # the same formula again: not unique
    ]
    counts = generator.apply_funnel(crystals, base)
    assert [c.funnel_stage for c in crystals] == ["invalid", "valid", "same_stoichiometry", "novel", "unique",
                                                 "energy_within_20pct"]
    assert counts == {"generated": 6, "valid": 5, "same_stoichiometry": 4, "novel": 3, "energy_within_20pct": 2,
                      "unique": 1}
    assert funnel_counts(crystals, energy_checked=False)["unique"] is None
    # without a formation-energy predictor the funnel stops at "novel"
    no_energy = exact_model(store)
    assert no_energy.apply_funnel(crystals, base) == {"generated": 6, "valid": 5, "same_stoichiometry": 4,
                                                      "novel": 3, "energy_within_20pct": None, "unique": None}
    assert max(FUNNEL_STAGES.index(c.funnel_stage) for c in crystals) == FUNNEL_STAGES.index("novel")
