"""``python -m ml evaluate-vae``: the crystal generator measured on the validation split of the
VAE's selection, beside Court et al. (J. Chem. Inf. Model. 60, 4518, 2020), with the gates that
decide whether the app calls it usable.

Stages, each scored on its own so an error can be traced to where it is made:

- **decoder ceiling** (no network): the true density and species grids of every validation
  crystal through the same peak decoder (:func:`ml.generation.decode.decode_crystal`, the true species
  as certain log-probabilities): how often the representation and decoder alone recover the
  crystal;
- **reconstruction** (z = μ): exact composition and site count, mean |Δ sites| [paper 0.198],
  cell-length MAE [0.06 Å], site earth-mover distance [0.09 Å] and species recall on atom sites
  [87 %, the paper's UNet recall on voxels]: decoded sites are matched one-to-one to the true
  ones by :func:`ml.evaluation.sites.match_sites` (the paper's species-blind Hungarian matching,
  on periodic distances in the true cell); a true site is recalled when its partner lies within
  0.5 Å and has its element;
- **random sampling**: ``n_random`` samples spread evenly over the 10 deciles, from the fitted
  latent prior and from N(0, I) [76 % valid by the paper's rule];
- **interpolation**: ``n_pairs`` random pairs of validation crystals of one family, 10 steps:
  both ends decode to their own compositions; the 8 inner steps are strictly valid;
- **targeted sampling**: z ~ N(μ_base, 0.5 I) around ``n_bases`` validation crystals
  [89 % valid], and the funnel counts;
- **negative control**: the same gates for an untrained model of the same configuration (it
  must fail every one).

Validity is reported by both rules of :mod:`ml.evaluation.validity` (strict, and the paper's); the gates
use the strict one.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ml.evaluation.sites import match_sites
from ml.generation.funnel import FUNNEL_STAGES, funnel_counts
from ml.generation.generative_model import GenerativeModel, model_folder

log = logging.getLogger(__name__)

PAPER = {"cell_length_mae": 0.06, "site_emd": 0.09, "site_count_error": 0.198, "species_recall": 0.87,
         "random_validity": 0.76, "targeted_validity": 0.89}

#: The gates of issue 11: metric → (comparison, target).
GATES = {
    "random_strict_validity": (">=", 0.70),
    "reconstruction_exact": (">=", 0.80),
    "site_count_error": ("<=", 0.20),
    "cell_length_mae": ("<=", 0.10),
    "species_recall": (">=", 0.85),
    "interpolation_ends_exact": (">=", 0.80),
    "interpolation_inner_strict_validity": (">=", 0.70),
    "targeted_strict_validity": (">=", 0.80),
}
def _share(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def reconstruction_metrics(crystals, truth: list, true_lattice: np.ndarray) -> dict:
    """Reconstruction figures of decoded ``crystals`` against the ``truth`` structures (same order)."""
    exact, count_errors, emds, recalled, n_true = [], [], [], 0, 0
    for crystal, true_structure in zip(crystals, truth):
        n_true += len(true_structure)
        if crystal.structure is None:
            exact.append(False)
            count_errors.append(len(true_structure))
            continue
        exact.append(crystal.structure.composition == true_structure.composition)
        count_errors.append(abs(len(crystal.structure) - len(true_structure)))
        match = match_sites(true_structure, crystal.structure)
        emds.append(match.mean_distance)
        recalled += match.n_recalled
    lattice = np.asarray([c.lattice[0] for c in crystals])
    return {"reconstruction_exact": _share(exact), "site_count_error": _share(count_errors),
            "exact_site_count": _share(np.asarray(count_errors) == 0),
            "cell_length_mae": float(np.mean(np.abs(lattice - true_lattice))) if len(crystals) else None,
            "site_emd": _share(emds), "species_recall": recalled / max(n_true, 1),
            "reconstruction_strict_validity": _share(c.valid for c in crystals),
            "reconstruction_paper_validity": _share(c.valid_paper for c in crystals)}


def decoder_ceiling(g: GenerativeModel, rows: np.ndarray, truth: list) -> dict:
    """The peak decoder on the TRUE grids of ``rows`` (no network): exact compositions and site counts."""
    from ml.generation.decode import certain_log_probs, decode_crystal
    from ml.generation.voxels import VoxelDecodeError

    exact, count_errors = [], []
    for row, true_structure in zip(rows, truth):
        log_probs = certain_log_probs(g.lookup[np.asarray(g.arrays.species[row])], len(g.vocabulary))
        try:
            decoded = decode_crystal(np.asarray(g.arrays.density[row], dtype=np.float32), log_probs,
                                     float(g.arrays.lattice[row][0]), g.vocabulary)
        except VoxelDecodeError:
            exact.append(False)
            count_errors.append(len(true_structure))
            continue
        exact.append(decoded.composition == true_structure.composition)
        count_errors.append(abs(len(decoded) - len(true_structure)))
    return {"ceiling_exact": _share(exact), "ceiling_site_count_error": _share(count_errors)}


def failure_reasons(crystals) -> dict[str, int]:
    """How many of ``crystals`` break each strict rule (the first rule broken, in
    :func:`ml.evaluation.validity.strict_validity`'s words without the crystal's own numbers), most common first."""
    counts: dict[str, int] = {}
    for crystal in crystals:
        if crystal.valid:
            continue
        reason = crystal.reason or "invalid"
        if reason.startswith("formula "):
            reason = "formula not AB, ABX3, X2YZ or XYZ"
        elif "atoms per Å³" in reason:
            reason = "too dense (atoms per Å³)"
        elif "sites (allowed" in reason:
            reason = "site count outside the allowed range"
        else:
            reason = reason.split(" (")[0]
        counts[reason] = counts.get(reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def _random(g: GenerativeModel, n: int, prior: str, seed: int) -> list:
    crystals = []
    for decile in range(10):
        count = n // 10 + (1 if decile < n % 10 else 0)
        if count:
            crystals += g.sample(decile, count, seed=seed + decile, prior=prior)
    return crystals


def _family_pairs(g: GenerativeModel, val_rows: np.ndarray, n_pairs: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    families = np.asarray(g.arrays.family)[val_rows]
    ids = np.asarray(g.arrays.material_ids)[val_rows]
    eligible = [f for f in np.unique(families) if (families == f).sum() >= 2]
    weights = np.array([(families == f).sum() for f in eligible], dtype=float)
    pairs = []
    for _ in range(n_pairs if eligible else 0):
        family = eligible[rng.choice(len(eligible), p=weights / weights.sum())]
        a, b = rng.choice(ids[families == family], 2, replace=False)
        pairs.append((str(a), str(b)))
    return pairs


def score_generator(g: GenerativeModel, val_rows: np.ndarray, truth: list, n_random: int, n_targeted: int, n_bases: int,
                    n_pairs: int, seed: int, progress: bool = True) -> dict:
    """Every figure of the module docstring for one generator; returns ``{"metrics", "counts",
    "funnel", "funnel_per_base"}``."""
    rng = np.random.default_rng(seed)
    val_ids = [str(m) for m in g.arrays.material_ids[val_rows]]
    bar = tqdm(total=4, desc="evaluate-vae", unit="stage", disable=not progress)
    recon = g.reconstruct(val_ids)
    metrics = reconstruction_metrics(recon, truth, np.asarray(g.arrays.lattice[val_rows])[:, 0])
    bar.update(1)

    samples = {}
    for prior in (["fitted"] if g.prior is not None else []) + ["normal"]:
        samples[prior] = _random(g, n_random, prior, seed)
        metrics[f"random_{prior}_strict_validity"] = _share(c.valid for c in samples[prior])
        metrics[f"random_{prior}_paper_validity"] = _share(c.valid_paper for c in samples[prior])
        metrics[f"random_{prior}_unique_valid_formulas"] = len({c.formula for c in samples[prior] if c.valid})
    default = "fitted" if g.prior is not None else "normal"
    metrics["random_prior"] = default
    metrics["random_failures"] = failure_reasons(samples[default])
    metrics["random_strict_validity"] = metrics[f"random_{default}_strict_validity"]
    metrics["random_paper_validity"] = metrics[f"random_{default}_paper_validity"]
    bar.update(1)

    pairs = _family_pairs(g, val_rows, n_pairs, rng)
    ends, inner = [], []
    truth_of = dict(zip(val_ids, truth))
    for a, b in pairs:
        path = g.interpolate(a, b, steps=10)
        ends.append(all(c.structure is not None and c.structure.composition == truth_of[m].composition
                        for c, m in ((path[0], a), (path[-1], b))))
        inner += [c.valid for c in path[1:-1]]
    metrics["interpolation_ends_exact"] = _share(ends)
    metrics["interpolation_inner_strict_validity"] = _share(inner)
    bar.update(1)

    bases = [str(m) for m in rng.choice(val_ids, min(n_bases, len(val_ids)), replace=False)]
    per_base = max(1, n_targeted // max(len(bases), 1))
    funnel = {"generated": 0, **{s: 0 for s in FUNNEL_STAGES[1:]}}
    targeted, per_base_rows = [], []
    formulas = g.selection.set_index("material_id")["formula"]
    for i, base in enumerate(bases):
        crystals = g.sample_around(base, 0.5, per_base, seed=seed + 100 + i)
        counts = funnel_counts(crystals, energy_checked="formation_energy_per_atom" in g.predictors)
        per_base_rows.append({"base": base, "formula": formulas.loc[base], **counts})
        for key, value in counts.items():
            funnel[key] = None if value is None or funnel[key] is None else funnel[key] + value
        targeted += crystals
    metrics["targeted_strict_validity"] = _share(c.valid for c in targeted)
    metrics["targeted_paper_validity"] = _share(c.valid_paper for c in targeted)
    metrics["targeted_failures"] = failure_reasons(targeted)
    bar.update(1)
    bar.close()
    counts = {"val": len(val_ids), "random": len(samples[default]), "pairs": len(pairs), "inner_steps": len(inner),
              "targeted": len(targeted), "bases": len(bases)}
    return {"metrics": metrics, "counts": counts, "funnel": funnel, "funnel_per_base": per_base_rows}


def check_gates(metrics: dict) -> dict:
    """``{metric: {"value", "target", "op", "passed"}}`` for every gate of :data:`GATES`."""
    out = {}
    for name, (op, target) in GATES.items():
        value = metrics.get(name)
        passed = value is not None and (value >= target if op == ">=" else value <= target)
        out[name] = {"value": value, "target": target, "op": op, "passed": bool(passed)}
    return out


def evaluate_vae(dataset: str = "mp2024", model_dir: str | Path | None = None, n_random: int = 1000,
                 n_targeted: int = 1000, n_bases: int = 10, max_val: int | None = None, seed: int = 0,
                 out_dir: Path | None = None, progress: bool = True, generator: GenerativeModel | None = None,
                 truth=None, n_pairs: int = 50, negative_control: bool = True) -> dict:
    """Score a trained generator; write ``report.md`` and ``report.json`` to ``out_dir``
    (default ``data/reports/vae/<model>``), and ``metrics.json`` with the model card's evaluation
    section to the model folder (the app reads the gates from it).

    Args:
        generator: an already built :class:`~ml.generation.generative_model.GenerativeModel` (default: loaded from ``model_dir``).
        truth: ``material_ids -> {material_id: Structure}`` giving the true conventional cells
            (default :func:`ml.generation.voxel_data.conventional_structures` of the generator's dataset).
        negative_control: also score an untrained model of the same configuration (a fifth of the samples).

    Returns:
        The report: ``metrics``, ``gates``, ``usable`` (every gate passed), ``paper``, ``counts``,
        ``funnel``, ``control`` (the untrained model's metrics and gates), ``markdown``, ``seconds``.

    Raises:
        FileNotFoundError: no trained generator. ml.generation.voxel_data.VAEDataError: no voxel store.
    """
    from ml.settings import get_settings
    from ml.generation.voxel_data import conventional_structures
    from ml.training.model_card import write_vae_model_card

    started = time.time()
    g = generator or GenerativeModel.load(model_dir, dataset)
    if g.prior is None:
        g.fit_prior(seed=seed)
    rng = np.random.default_rng(seed)
    val_rows = np.flatnonzero(g.arrays.split == "val")
    if max_val is not None and len(val_rows) > max_val:
        val_rows = np.sort(rng.choice(val_rows, max_val, replace=False))
    val_ids = [str(m) for m in g.arrays.material_ids[val_rows]]
    true_cells = truth(val_ids) if truth is not None else dict(conventional_structures(g.dataset, material_ids=val_ids))
    truth_list = [true_cells[m] for m in val_ids]
    scored = score_generator(g, val_rows, truth_list, n_random, n_targeted, n_bases, n_pairs, seed, progress)
    scored["metrics"].update(decoder_ceiling(g, val_rows, truth_list))
    report = {"dataset": dataset if isinstance(dataset, str) else dataset.name,
              "model_dir": str(model_dir or get_settings().generator_model), **scored, "gates": check_gates(scored["metrics"]),
              "paper": PAPER, "property_predictor": "formation_energy_per_atom" in g.predictors}
    report["usable"] = all(gate["passed"] for gate in report["gates"].values())
    if negative_control:
        report["control"] = _negative_control(g, val_rows, truth_list, n_random, n_targeted, n_bases, n_pairs, seed)
    report["seconds"] = round(time.time() - started, 1)
    report["markdown"] = report_markdown(report)
    out_dir = Path(out_dir) if out_dir else get_settings().data_dir / "reports" / "vae" / Path(report["model_dir"]).name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(report["markdown"] + "\n")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    folder = model_folder(model_dir)
    if (folder / "vae.pt").is_file() and (generator is None or model_dir is not None):  # never the default's card from a test
        write_vae_model_card(folder, {k: v for k, v in report.items() if k != "funnel_per_base"})
    return report


def _negative_control(g: GenerativeModel, val_rows, truth_list, n_random, n_targeted, n_bases, n_pairs, seed) -> dict:
    """The gates for an untrained model of ``g``'s configuration (a fifth of the samples)."""
    import copy

    import torch

    from ml.models.vae3d import CondVAE3D

    torch.manual_seed(seed)
    control = copy.copy(g)
    control.vae = CondVAE3D(g.vae.config).to(g.device).eval()
    control.predictors = {}
    control.fit_prior(seed=seed)
    n_val = max(10, len(val_rows) // 5)
    scored = score_generator(control, val_rows[:n_val], truth_list[:n_val],
                             max(10, n_random // 5), max(10, n_targeted // 5), max(1, n_bases // 5),
                             max(2, n_pairs // 5), seed, progress=False)
    return {"metrics": scored["metrics"], "counts": scored["counts"], "gates": check_gates(scored["metrics"])}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def report_markdown(report: dict) -> str:
    """The gates, the figures beside the paper's, and the funnel as Markdown."""
    m, p, n = report["metrics"], report["paper"], report["counts"]
    control = report.get("control")
    lines = ["| gate (validation split) | ours | target | passed | untrained control |", "|---|---|---|---|---|"]
    for name, gate in report["gates"].items():
        value = gate["value"]
        shown = _num(value) if name in ("site_count_error", "cell_length_mae") else _pct(value)
        ctrl = control["gates"][name] if control else None
        ctrl_text = "—" if ctrl is None else (_num(ctrl["value"]) if name in ("site_count_error", "cell_length_mae")
                                              else _pct(ctrl["value"])) + (" (passes!)" if ctrl["passed"] else " (fails)")
        lines.append(f"| {name.replace('_', ' ')} | {shown} | {gate['op']} {gate['target']:g} | "
                     f"{'yes' if gate['passed'] else 'no'} | {ctrl_text} |")
    rows = [
        ("cell-length MAE (Å)", _num(m["cell_length_mae"]), _num(p["cell_length_mae"], 2), f"{n['val']} val crystals, z = μ"),
        ("site earth-mover distance (Å)", _num(m["site_emd"]), _num(p["site_emd"], 2), "decoded reconstructions"),
        ("mean abs. Δ number of sites", _num(m["site_count_error"]), _num(p["site_count_error"]), f"{n['val']} val crystals"),
        ("species recall on atom sites", _pct(m["species_recall"]), _pct(p["species_recall"]) + " (voxels, UNet)",
         "true sites"),
        ("reconstructions: exact composition", _pct(m["reconstruction_exact"]), "—", f"{n['val']}"),
        ("reconstructions: strictly valid / paper's rule", f"{_pct(m['reconstruction_strict_validity'])} / "
         f"{_pct(m['reconstruction_paper_validity'])}", "—", f"{n['val']}"),
        ("decoder on the true grids: exact composition (ceiling)", _pct(m.get("ceiling_exact")), "—", f"{n['val']}"),
        ("random, fitted prior: strictly valid / paper's rule",
         f"{_pct(m.get('random_fitted_strict_validity'))} / {_pct(m.get('random_fitted_paper_validity'))}", "—",
         f"{n['random']} samples, deciles 0–9; {m.get('random_fitted_unique_valid_formulas', '—')} valid formulas"),
        ("random, z ~ N(0, I): strictly valid / paper's rule",
         f"{_pct(m.get('random_normal_strict_validity'))} / {_pct(m.get('random_normal_paper_validity'))}",
         _pct(p["random_validity"]) + " (paper's rule)",
         f"{n['random']} samples; {m.get('random_normal_unique_valid_formulas', '—')} valid formulas"),
        ("interpolation: both ends exact / inner steps strictly valid",
         f"{_pct(m['interpolation_ends_exact'])} / {_pct(m['interpolation_inner_strict_validity'])}", "—",
         f"{n['pairs']} pairs within a family, {n['inner_steps']} inner steps"),
        ("targeted, N(μ_base, 0.5): strictly valid / paper's rule",
         f"{_pct(m['targeted_strict_validity'])} / {_pct(m['targeted_paper_validity'])}",
         _pct(p["targeted_validity"]) + " (paper's rule)", f"{n['targeted']} samples around {n['bases']} val bases"),
    ]
    lines += ["", "| figure | ours | paper | sample |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    for name in ("random", "targeted"):
        failures = m.get(f"{name}_failures") or {}
        if failures:
            listed = "; ".join(f"{reason} {count}" for reason, count in failures.items())
            lines += ["", f"Why {name} samples fail the strict rule (first rule broken): {listed}."]
    f = report["funnel"]
    lines += ["", "Targeted funnel (counts over all bases, each stage within the one before; 'valid' is strict):", "",
              "| generated | valid | same stoichiometry | not in training set | E_f within 20 % | unique |",
              "|---|---|---|---|---|---|",
              "| " + " | ".join("n/a (no predictor)" if f.get(k) is None else str(f[k]) for k in
                               ("generated", "valid", "same_stoichiometry", "novel", "energy_within_20pct", "unique")) + " |"]
    if report.get("funnel_per_base"):
        lines += ["", "| base | formula | valid | same stoich. | novel | E_f ±20 % | unique |", "|---|---|---|---|---|---|---|"]
        for r in report["funnel_per_base"]:
            cells = [str(r.get(k)) if r.get(k) is not None else "n/a" for k in
                     ("valid", "same_stoichiometry", "novel", "energy_within_20pct", "unique")]
            lines.append(f"| {r['base']} | {r['formula']} | " + " | ".join(cells) + " |")
    lines += ["", f"Usable (every gate passed): **{'yes' if report['usable'] else 'no'}**."]
    return "\n".join(lines)
