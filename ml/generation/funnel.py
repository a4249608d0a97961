"""Court et al.'s targeted-generation funnel (J. Chem. Inf. Model. 60, 4518, 2020): of the crystals
sampled around a base compound, each stage keeps a subset of the one before: ``valid`` (strict,
:func:`ml.evaluation.validity.strict_validity`) → ``same_stoichiometry`` (the base's integer
ratio, e.g. 1:1:3) → ``novel`` (reduced formula not among the VAE's training crystals) →
``energy_within_20pct`` (CGCNN-predicted formation energy within 20 % of the base's DFT value) →
``unique`` (first of its reduced formula). Without a formation-energy predictor
(``ml.training.property``) the funnel stops at ``novel``.
"""

from __future__ import annotations

from ml.generation.records import GeneratedCrystal

FUNNEL_STAGES = ("invalid", "valid", "same_stoichiometry", "novel", "energy_within_20pct", "unique")


def assign_funnel_stages(crystals: list[GeneratedCrystal], base_formula: str, base_energy: float,
                         training_formulas: frozenset[str], energy_checked: bool) -> dict[str, int | None]:
    """Set each crystal's ``funnel_stage`` relative to a base compound; return the counts
    (:func:`funnel_counts`).

    Args:
        base_formula: the base's formula (its stoichiometry is the target).
        base_energy: the base's DFT formation energy, eV/atom.
        training_formulas: reduced formulas of the VAE's training crystals.
        energy_checked: a formation-energy predictor filled ``formation_energy_per_atom``.
    """
    from ml.generation.voxel_data import stoichiometry

    ratio = stoichiometry(base_formula)
    seen: set[str] = set()
    for crystal in crystals:
        if not crystal.valid:
            crystal.funnel_stage = "invalid"
            continue
        stage = "valid"
        if stoichiometry(crystal.structure.composition) == ratio:
            stage = "same_stoichiometry"
            if crystal.formula not in training_formulas:
                stage = "novel"
                energy = crystal.formation_energy_per_atom
                if energy_checked and energy is not None and abs(energy - base_energy) <= 0.2 * abs(base_energy):
                    stage = "energy_within_20pct"
                    if crystal.formula not in seen:
                        seen.add(crystal.formula)
                        stage = "unique"
        crystal.funnel_stage = stage
    return funnel_counts(crystals, energy_checked=energy_checked)


def funnel_counts(crystals: list[GeneratedCrystal], energy_checked: bool = True) -> dict[str, int | None]:
    """How many crystals reached each stage of the funnel (cumulative): ``{"generated": n,
    "valid": …, "same_stoichiometry": …, "novel": …, "energy_within_20pct": …, "unique": …}``;
    the last two are ``None`` when no formation-energy predictor was available."""
    rank = {s: i for i, s in enumerate(FUNNEL_STAGES)}
    counts: dict[str, int | None] = {"generated": len(crystals)}
    for stage in FUNNEL_STAGES[1:]:
        counts[stage] = sum(rank[c.funnel_stage] >= rank[stage] for c in crystals)
    if not energy_checked:
        counts["energy_within_20pct"] = counts["unique"] = None
    return counts
