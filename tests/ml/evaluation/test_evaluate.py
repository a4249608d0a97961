"""The evaluation report (ml.evaluation.evaluate, ml.evaluation.report, ml.evaluation.neighbors, ml.evaluation.probes,
ml.evaluation.descriptors) on small synthetic data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from ml.descriptors.compute import DescriptorTable
from ml.evaluation.descriptors import CGCNN_LATENT, OURS, DescriptorStatus, aligned
from ml.evaluation.neighbors import (
    concept_fraction,
    fractions_table,
    is_cuprate,
    is_li_tm_oxide,
    neighbor_lists,
)
from ml.evaluation.probes import FLOOR, run_probes
from ml.evaluation.report import NOT_COMPUTED, write_report
from ml.evaluation.evaluate import comparison_sets


def table(name: str, ids, values=None, coverage="test") -> DescriptorTable:
    ids = np.asarray(ids, dtype=str)
    values = np.arange(len(ids), dtype=np.float32)[:, None] if values is None else values
    return DescriptorTable(name, ids, np.asarray(values, dtype=np.float32), "euclidean", coverage)


def test_concept_predicates():
    assert is_cuprate(["Hg", "Ba", "Ca", "Cu", "O"]) and not is_cuprate(["Cu", "S"]) and not is_cuprate(["La", "O"])
    assert is_li_tm_oxide(["Li", "Co", "O"]) and is_li_tm_oxide(["Li", "Ni", "Mn", "O"])
    assert not is_li_tm_oxide(["Li", "Al", "O"]) and not is_li_tm_oxide(["Li", "Co", "S"]) and not is_li_tm_oxide(["Na", "Co", "O"])
    elements = {"a": "Cu O Y Ba", "b": "Cu S", "c": "Cu O", "d": "Li Co O"}
    assert concept_fraction(["a", "b", "c", "d"], elements, "cuprate") == 0.5
    with pytest.raises(ValueError):
        concept_fraction([], elements, "cuprate")


def test_neighbor_lists_and_fractions_mark_uncovered_queries():
    # 1-d descriptor: mp-22601 at 0, cuprates nearby, others far
    ids = ["mp-22601", "c1", "c2", "x1", "x2"]
    ours = table("cmml", ids, [[0], [1], [2], [10], [11]])
    partial = table("ewald", ["c1", "x1", "x2"])
    lists = neighbor_lists({"cmml": ours, "ewald": partial}, ["mp-22601"], k=2)
    assert lists["mp-22601"]["cmml"] == ["c1", "c2"]
    assert "not covered" in lists["mp-22601"]["ewald"]
    elements = {"c1": "Cu O Ba", "c2": "Cu O Sr", "x1": "Na Cl", "x2": "K Br", "mp-22601": "Hg Ba Ca Cu O"}
    fractions = fractions_table(lists, elements).set_index("descriptor")
    assert fractions.loc["cmml", "fraction"] == 1.0 and fractions.loc["cmml", "k"] == 2
    assert np.isnan(fractions.loc["ewald", "fraction"])


def test_aligned_keeps_only_materials_every_descriptor_covers():
    statuses = {
        "a": DescriptorStatus("a", "A", table("a", ["m1", "m2", "m3", "m4"]), ""),
        "b": DescriptorStatus("b", "B", table("b", ["m4", "m2"], [[40.0], [20.0]]), ""),
        "c": DescriptorStatus("c", "C", None, "not computed yet"),
    }
    features, mask = aligned(statuses, ["m1", "m2", "m3", "m4"])
    assert mask.tolist() == [False, True, False, True]
    assert set(features) == {"a", "b"}
    np.testing.assert_array_equal(features["b"][:, 0], [20.0, 40.0])  # rows follow the requested order
    np.testing.assert_array_equal(features["a"][:, 0], [1.0, 3.0])
    assert statuses["c"].coverage.startswith("not computed")


def test_comparison_sets_restrict_to_common_coverage():
    ids = [f"m{i}" for i in range(10)]
    descriptors = {
        OURS: DescriptorStatus(OURS, "ours", table(OURS, ids), ""),
        CGCNN_LATENT: DescriptorStatus(CGCNN_LATENT, "cgcnn", table(CGCNN_LATENT, ids), ""),
        "ewald": DescriptorStatus("ewald", "ewald", table("ewald", ids[:6]), ""),
        "chgnet": DescriptorStatus("chgnet", "chgnet", table("chgnet", ids[3:]), ""),
        "crystalnn": DescriptorStatus("crystalnn", "cnn", None, "not computed"),
    }
    ctx = SimpleNamespace(materials=pd.DataFrame({"material_id": ids}), descriptors=descriptors,
                          artifacts=SimpleNamespace(dataset="toy"))
    sets = {len(s["material_ids"]): s for s in comparison_sets(ctx)}
    assert sets[10]["descriptors"] == [OURS, CGCNN_LATENT]
    assert sets[6]["descriptors"] == [OURS, CGCNN_LATENT, "ewald"]
    assert sets[7]["descriptors"] == [OURS, CGCNN_LATENT, "chgnet"]
    assert sorted(sets[3]["material_ids"]) == ["m3", "m4", "m5"]
    assert sets[3]["descriptors"] == [OURS, CGCNN_LATENT, "ewald", "chgnet"]
    assert all("crystalnn" not in s["descriptors"] for s in sets.values())
    # a baseline computed for every material joins the comparison on all of them
    descriptors["sine_coulomb"] = DescriptorStatus("sine_coulomb", "sine", table("sine_coulomb", ids), "")
    sets = {len(s["material_ids"]): s for s in comparison_sets(ctx)}
    assert sets[10]["descriptors"] == [OURS, CGCNN_LATENT, "sine_coulomb"]
    assert sets[6]["descriptors"] == [OURS, CGCNN_LATENT, "ewald", "sine_coulomb"]


def test_probes_an_informative_descriptor_beats_the_floor_and_noise():
    rng = np.random.default_rng(0)
    n = 600
    density = rng.uniform(1, 10, n)
    system = np.where(density > 5, "cubic", "monoclinic")
    materials = pd.DataFrame({"split": np.where(np.arange(n) < 450, "train", "test"), "density": density,
                              "crystal_system": system})
    features = {"informative": np.c_[density + 0.05 * rng.normal(size=n), rng.normal(size=n)],
                "noise": rng.normal(size=(n, 2))}
    targets = {"density": ("regression", "g/cm³"), "crystal_system": ("classification", None)}
    result = run_probes(features, materials, train_cap=200, targets=targets).set_index(["target", "descriptor"])
    assert (result["n_train"] == 200).all() and (result["n_test"] == 150).all()
    assert result.loc[("density", "informative"), "score"] < 0.3 * result.loc[("density", FLOOR), "score"]
    assert result.loc[("density", "noise"), "score"] > 0.8 * result.loc[("density", FLOOR), "score"]
    assert result.loc[("crystal_system", "informative"), "score"] > 0.95
    assert result.loc[("crystal_system", "noise"), "score"] < 0.7


def fake_results() -> dict:
    descriptors = {
        "cmml": {"label": "ours", "coverage": "10 materials (all)", "available": True},
        "cgcnn_formation_energy": {"label": "CGCNN", "coverage": "10 materials (all)", "available": True},
        "crystalnn": {"label": "crystalnn", "coverage": "not computed: run it", "available": False},
    }
    lists = {"mp-22601": {"cmml": ["a", "b"], "cgcnn_formation_energy": "query not covered by cgcnn_formation_energy"},
             "mp-541449": {"cmml": ["b", "a"], "cgcnn_formation_energy": ["a", "b"]}}
    summary = [{"descriptor": d, "size": s, "mean": m, "std": 0.05, "repeats": 10}
               for d, m in (("cmml", 0.8), ("cgcnn_formation_energy", 0.7)) for s in (10, 100)]
    probe_rows = [{"target": "density", "kind": "regression", "unit": "g/cm³", "metric": "MAE", "n_train": 8,
                   "n_test": 2, "descriptor": d, "score": s} for d, s in ((FLOOR, 1.0), ("cmml", 0.5), ("cgcnn_formation_energy", 0.4))]
    return {
        "descriptors": descriptors,
        "retrieval": {"split": "test", "n_candidates": 100, "model": "m", "topk": {str(k): k / 10 for k in range(1, 11)}},
        "neighbors": {"k": 2, "lists": lists, "formula_of": {"a": "CuO", "b": "NaCl", "mp-22601": "HgBa2Ca2Cu3O8"},
                      "fractions": [{"query": "mp-22601", "concept": "cuprate", "descriptor": "cmml", "fraction": 0.5, "k": 2},
                                    {"query": "mp-22601", "concept": "cuprate", "descriptor": "cgcnn_formation_energy",
                                     "fraction": None, "k": 0}]},
        "concepts": {"repeats": 10, "sizes": [10, 100], "comparisons": [
            {"set": "all toy", "n_pool": 10, "n_positive": 5, "n_groups": 8, "summary": summary},
            {"set": "tiny", "skipped": "0 superconductors"}]},
        "probes": {"train_cap": 8, "comparisons": [{"set": "all toy", "rows": probe_rows}]},
    }


def test_report_renders_with_a_descriptor_not_computed(tmp_path):
    path = write_report(tmp_path, "toy", "m", fake_results())
    text = path.read_text()
    assert "`crystalnn` | crystalnn | not computed: run it" in text
    assert text.count(NOT_COMPUTED) >= 4  # descriptor table, fractions, concept table, neighbour lists
    assert "query not covered" in text
    assert "0.800 ± 0.050 (10)" in text and "skipped (0 superconductors)" in text
    assert "**0.400**" in text  # the best probe is marked
    assert "`cmml` 0.800, `cgcnn_formation_energy` 0.700. Ours is ahead of `cgcnn_formation_energy`." in text
    assert (tmp_path / "retrieval.png").stat().st_size > 0 and (tmp_path / "concepts.png").stat().st_size > 0


def test_descriptor_table_gives_cost_and_says_which_cover_a_subset_only():
    from ml.evaluation.report import _descriptors_section

    cost = {"seconds_per_structure": 1.25, "source": "measured: 600 materials, 2 processes, 375 s",
            "whole_dataset_hours": 24.6, "cores": 2}
    text = "\n".join(_descriptors_section({
        "cmml": {"label": "ours", "coverage": "10 materials (all of toy)", "available": True, "cost": None,
                 "whole_dataset": True},
        "sine_coulomb": {"label": "sine", "coverage": "10 materials (toy)", "available": True,
                         "cost": {**cost, "seconds_per_structure": 0.02, "whole_dataset_hours": 0.4}, "whole_dataset": True},
        "crystalnn": {"label": "CrystalNN", "coverage": "4 materials (sample)", "available": True, "cost": cost,
                      "whole_dataset": False},
    }))
    assert "| `crystalnn` | CrystalNN | 4 materials (sample) | 1.250 (measured: 600 materials, 2 processes, 375 s) | ≈ 24.6 h |" in text
    assert "| `cmml` | ours | 10 materials (all of toy) | with the map | – |" in text
    assert "Not computed for the whole dataset here: `crystalnn` (cost above)" in text  # sine covers all
    assert "--ids-from all" in text


def test_reading_says_where_ours_wins_and_loses():
    from ml.evaluation.report import _standing

    at = pd.DataFrame({"descriptor": ["chgnet", "cmml", "ewald", "sine_coulomb"], "mean": [0.9, 0.8, 0.7, 0.803]})
    assert _standing(at) == " Ours is ahead of `ewald`; level with `sine_coulomb`; behind `chgnet`."
    assert _standing(at[at["descriptor"] != "cmml"]) == ""  # ours not compared on this set


def test_report_renders_before_any_step_ran(tmp_path):
    text = write_report(tmp_path, "toy", "m", {}).read_text()
    for step in ("retrieval", "neighbors", "concepts", "probes"):
        assert f"Step `{step}`: {NOT_COMPUTED}" in text
