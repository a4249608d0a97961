"""Few-label concept classification (ml.evaluation.concepts): leakage-free group splits, balanced
draws, and ROC-AUC behaving as it must on toy descriptors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ml.evaluation.concepts import (
    balanced_sample,
    chemical_system,
    concept_pool,
    few_label_auc,
    group_splits,
    summarise,
)


def toy_pool(n_groups: int = 60, per_group: int = 8, seed: int = 0):
    """Labels constant within a chemical system (as superconductivity nearly is), half positive."""
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"sys{g}" for g in range(n_groups)], per_group)
    labels = np.repeat(np.arange(n_groups) % 2, per_group)
    order = rng.permutation(len(groups))
    return labels[order], groups[order], rng


def test_group_splits_never_share_a_chemical_system():
    _labels, groups, _ = toy_pool()
    splits = group_splits(groups, repeats=15, test_size=0.3, seed=3)
    assert len(splits) == 15
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert len(train) + len(test) == len(groups)
        assert 0.2 < len(set(groups[test])) / len(set(groups)) < 0.4


def test_balanced_sample_is_balanced_and_drawn_from_candidates():
    labels, _groups, rng = toy_pool()
    candidates = np.arange(0, len(labels), 2)
    for n in (10, 20, 50):
        chosen = balanced_sample(labels, candidates, n, rng)
        assert len(chosen) == n == len(set(chosen))
        assert labels[chosen].sum() == n // 2
        assert set(chosen) <= set(candidates)
    with pytest.raises(ValueError, match="even"):
        balanced_sample(labels, candidates, 11, rng)
    with pytest.raises(ValueError, match="only"):
        balanced_sample(labels, candidates, len(candidates) + 2, rng)


def test_auc_is_one_for_a_separable_descriptor_and_a_half_for_noise():
    labels, groups, rng = toy_pool()
    separable = np.c_[labels + 0.1 * rng.normal(size=len(labels)), rng.normal(size=(len(labels), 3))]
    noise = rng.normal(size=(len(labels), 4))
    aucs = few_label_auc({"separable": separable, "noise": noise}, labels, groups, sizes=(10, 50), repeats=10, seed=1,
                        n_estimators=25)
    summary = summarise(aucs).set_index(["descriptor", "size"])
    assert (summary["repeats"] == 10).all()
    assert summary.loc[("separable", 10), "mean"] > 0.97
    assert summary.loc[("separable", 50), "mean"] > 0.97
    for n in (10, 50):
        assert abs(summary.loc[("noise", n), "mean"] - 0.5) < 0.1


def test_sizes_too_large_for_the_pool_are_skipped():
    labels, groups, rng = toy_pool(n_groups=10, per_group=2)
    aucs = few_label_auc({"x": rng.normal(size=(len(labels), 2))}, labels, groups, sizes=(4, 400), repeats=3)
    assert len(aucs["x"][400]) == 0 and len(aucs["x"][4]) > 0
    assert summarise(aucs).set_index("size").loc[400, "repeats"] == 0


def test_concept_pool_balances_superconductors_with_unmatched_materials():
    materials = pd.DataFrame({
        "material_id": [f"mp-{i}" for i in range(12)],
        "elements": ["Ba Cu O Y", "Nb Sn", "Mg B", "Fe Se", "Li O", "Na Cl", "K Br", "Si C", "Ga As", "Zn S", "Al N", "Cu O"],
        "supercon_label": ["superconductor"] * 3 + ["non-superconductor", "doped match"] + ["no SuperCon entry"] * 7,
    })
    pool = concept_pool(materials, seed=0)
    assert pool["label"].sum() == 3 and len(pool) == 6
    negatives = set(pool.loc[pool["label"] == 0, "material_id"])
    assert negatives <= set(materials.loc[materials["supercon_label"] == "no SuperCon entry", "material_id"])
    assert "Ba-Cu-O-Y" in set(pool["group"])
    assert chemical_system(["O", "Cu"]) == chemical_system("Cu O") == "Cu-O"
    with pytest.raises(ValueError, match="cannot balance"):
        concept_pool(materials.iloc[:5])
