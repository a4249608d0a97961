"""``python -m ml evaluate-vae``: the crystal generator measured as in Court et al. (J. Chem.
Inf. Model. 60, 4518, 2020), on the validation split of the VAE's selection, next to the paper.

Measured (paper's value in brackets):

- cell-length MAE, Å [0.06]: |a' − a| averaged over the three lengths, a' read from the
  coordinate channels of the reconstruction from z = μ;
- site earth-mover distance, Å [0.09]: sites of the decoded structure matched one-to-one to the
  true conventional cell's by the Hungarian algorithm (:func:`scipy.optimize.linear_sum_assignment`)
  on periodic distances in the true lattice (fractional coordinates of the decoded sites, so a
  cell-length error does not count twice), the mean matched distance; species are not used for
  the matching (the share of matched pairs with the right species is reported beside it);
- mean |Δ number of sites| [0.198];
- UNet non-zero recall [87 %]: of the voxels of non-zero true species, the share the UNet,
  run on the TRUE density, labels with exactly that species;
- formation-energy MAE, eV/atom [0.102]: the CGCNN predictor on the true structures (its own
  accuracy on this set) and on the reconstructions, against the DFT values;
- validity of random samples [76 %] (z ~ N(0, I), the n samples spread evenly over the 10 deciles)
  and of targeted samples [89 %] (z ~ N(μ_base, 0.5 I) around ``n_bases`` validation materials):
  decoded, and all interatomic distances > 0.5 Å;
- the targeted funnel (valid → same stoichiometry → not in the training set → predicted
  formation energy within 20 % → unique) with counts [≈ 2 % survive].
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ml.generate import FUNNEL_STAGES, Generator, funnel_counts

log = logging.getLogger(__name__)

PAPER = {
    "cell_length_mae": 0.06,
    "site_emd": 0.09,
    "site_count_error": 0.198,
    "unet_nonzero_recall": 0.87,
    "formation_energy_mae_true": 0.102,
    "random_validity": 0.76,
    "targeted_validity": 0.89,
}


def site_emd(true_structure, decoded_structure) -> tuple[float, float]:
    """Earth-mover distance of atom sites, Å, and the share of matched pairs of equal species.

    Sites are matched one-to-one (Hungarian algorithm) on their periodic distances in the true
    lattice, the decoded sites taken at their fractional coordinates; with unequal site counts the
    smaller set is matched completely. Returns ``(mean matched distance, species agreement)``.
    """
    from scipy.optimize import linear_sum_assignment

    distances = true_structure.lattice.get_all_distances(true_structure.frac_coords, decoded_structure.frac_coords)
    rows, cols = linear_sum_assignment(distances)
    same = [true_structure[i].specie == decoded_structure[j].specie for i, j in zip(rows, cols)]
    return float(distances[rows, cols].mean()), float(np.mean(same))


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f} %"


def _num(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def evaluate_vae(dataset: str = "mp2024", model_dir: str | Path | None = None, n_random: int = 1000,
                 n_targeted: int = 1000, n_bases: int = 10, max_val: int | None = None, seed: int = 0,
                 out_dir: Path | None = None, progress: bool = True, generator: Generator | None = None,
                 truth=None) -> dict:
    """Score a trained generator; write ``report.md`` and ``report.json`` to ``out_dir``
    (default ``data/reports/vae/<model>``) and refresh the model card's evaluation section.

    Args:
        generator: an already built :class:`~ml.generate.Generator` (default: loaded from ``model_dir``).
        truth: ``material_ids -> {material_id: Structure}`` giving the true conventional cells
            (default :func:`ml.vae_data.conventional_structures` of the generator's dataset).

    Returns:
        The report: ``metrics`` (ours), ``paper``, ``counts`` (sample sizes), ``funnel``,
        ``markdown`` (the table), ``seconds``.

    Raises:
        FileNotFoundError: no trained generator. ml.vae_data.VAEDataError: no voxel store.
    """
    from ml.settings import get_settings
    from ml.vae_data import conventional_structures
    from ml.vae_train import evaluate_unet, write_vae_model_card

    started = time.time()
    g = generator or Generator.load(model_dir, dataset)
    rng = np.random.default_rng(seed)
    val_rows = np.flatnonzero(g.arrays.split == "val")
    if max_val is not None and len(val_rows) > max_val:
        val_rows = np.sort(rng.choice(val_rows, max_val, replace=False))
    val_ids = [str(m) for m in g.arrays.material_ids[val_rows]]
    bar = tqdm(total=4, desc="evaluate-vae", unit="stage", disable=not progress)

    # UNet on the true densities
    unet_metrics = evaluate_unet(g.unet, g.arrays, val_rows, g.device)
    bar.update(1)

    # reconstructions from z = μ
    recon = g.reconstruct(val_ids)
    truth = truth(val_ids) if truth is not None else dict(conventional_structures(g.dataset, material_ids=val_ids))
    cell_errors, emds, agreements, count_errors = [], [], [], []
    for material_id, crystal, row in zip(val_ids, recon, val_rows):
        cell_errors.append(float(np.abs(np.asarray(crystal.lattice) - g.arrays.lattice[row]).mean()))
        true_structure = truth[material_id]
        if crystal.structure is None:
            count_errors.append(len(true_structure))
            continue
        count_errors.append(abs(len(crystal.structure) - len(true_structure)))
        emd, agree = site_emd(true_structure, crystal.structure)
        emds.append(emd)
        agreements.append(agree)
    metrics: dict[str, float | None] = {
        "cell_length_mae": float(np.mean(cell_errors)),
        "site_emd": float(np.mean(emds)) if emds else None,
        "site_species_agreement": float(np.mean(agreements)) if agreements else None,
        "site_count_error": float(np.mean(count_errors)),
        "reconstruction_exact_site_count": float(np.mean(np.asarray(count_errors) == 0)),
        "reconstruction_validity": float(np.mean([c.valid for c in recon])),
        "unet_nonzero_recall": unet_metrics["nonzero_recall"],
        "unet_occupied_recall": unet_metrics["occupied_recall"],
        "formation_energy_mae_true": None,
        "formation_energy_mae_reconstructed": None,
    }
    dft = g.selection.set_index("material_id").loc[val_ids, "formation_energy_per_atom"].to_numpy(float)
    model = g.predictors.get("formation_energy_per_atom")
    if model is not None:
        predicted_true = np.asarray(model.predict([truth[m] for m in val_ids]), dtype=float)
        metrics["formation_energy_mae_true"] = float(np.mean(np.abs(predicted_true - dft)))
        pairs = [(c.formation_energy_per_atom, e) for c, e in zip(recon, dft) if c.formation_energy_per_atom is not None]
        if pairs:
            metrics["formation_energy_mae_reconstructed"] = float(np.mean([abs(p - e) for p, e in pairs]))
    bar.update(1)

    # random sampling, spread evenly over the deciles
    per_decile = [n_random // 10 + (1 if d < n_random % 10 else 0) for d in range(10)]
    random_crystals = []
    for decile, n in enumerate(per_decile):
        if n:
            random_crystals += g.sample(decile, n, seed=seed + decile)
    metrics["random_validity"] = float(np.mean([c.valid for c in random_crystals])) if random_crystals else None
    bar.update(1)

    # targeted sampling around validation bases
    bases = [str(m) for m in rng.choice(val_ids, min(n_bases, len(val_ids)), replace=False)]
    per_base = max(1, n_targeted // max(len(bases), 1))
    funnel = {"generated": 0, **{s: 0 for s in FUNNEL_STAGES[1:]}}
    targeted = []
    per_base_rows = []
    for i, base in enumerate(bases):
        crystals = g.sample_around(base, 0.5, per_base, seed=seed + 100 + i)
        counts = funnel_counts(crystals, energy_checked="formation_energy_per_atom" in g.predictors)
        per_base_rows.append({"base": base, "formula": g.selection.set_index("material_id").loc[base, "formula"],
                              **counts})
        for key, value in counts.items():
            funnel[key] = None if value is None or funnel[key] is None else funnel[key] + value
        targeted += crystals
    metrics["targeted_validity"] = float(np.mean([c.valid for c in targeted])) if targeted else None
    bar.update(1)
    bar.close()

    counts = {"val": len(val_ids), "reconstructions_decoded": len(emds), "random": len(random_crystals),
              "targeted": len(targeted), "bases": len(bases)}
    report = {"dataset": dataset, "model_dir": str(model_dir or "vae-cpu"), "metrics": metrics, "paper": PAPER,
              "counts": counts, "funnel": funnel, "funnel_per_base": per_base_rows,
              "property_predictor": "formation_energy_per_atom" in g.predictors,
              "seconds": round(time.time() - started, 1)}
    report["markdown"] = report_markdown(report)
    out_dir = Path(out_dir) if out_dir else get_settings().data_dir / "reports" / "vae" / Path(report["model_dir"]).name
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.md").write_text(report["markdown"] + "\n")
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float))
    folder = Path(model_dir) if model_dir and Path(model_dir).is_dir() else get_settings().models_dir / (model_dir or "vae-cpu")
    if (folder / "vae.pt").is_file():
        write_vae_model_card(folder, report)
    return report


def report_markdown(report: dict) -> str:
    """The ours-vs-paper table and the funnel as Markdown."""
    m, p, n = report["metrics"], report["paper"], report["counts"]
    rows = [
        ("cell-length MAE (Å)", _num(m["cell_length_mae"]), _num(p["cell_length_mae"], 2), f"{n['val']} val crystals, z = μ"),
        ("site earth-mover distance (Å)", _num(m["site_emd"]), _num(p["site_emd"], 2),
         f"{n['reconstructions_decoded']} decoded reconstructions"),
        ("matched sites of the right species", _pct(m["site_species_agreement"]), "—", "same pairs"),
        ("mean abs. Δ number of sites", _num(m["site_count_error"]), _num(p["site_count_error"]), f"{n['val']} val crystals"),
        ("reconstructions with the exact site count", _pct(m["reconstruction_exact_site_count"]), "—", f"{n['val']}"),
        ("UNet non-zero recall (true density)", _pct(m["unet_nonzero_recall"]), _pct(p["unet_nonzero_recall"]),
         f"voxels of {n['val']} val crystals"),
        ("UNet occupied recall", _pct(m["unet_occupied_recall"]), "—", "same voxels"),
        ("formation energy MAE, CGCNN on true structures (eV/atom)", _num(m["formation_energy_mae_true"]),
         _num(p["formation_energy_mae_true"]), f"{n['val']} val crystals"),
        ("formation energy MAE, CGCNN on reconstructions (eV/atom)", _num(m["formation_energy_mae_reconstructed"]), "—",
         "valid reconstructions"),
        ("random-sampling validity, z ~ N(0, I)", _pct(m["random_validity"]), _pct(p["random_validity"]),
         f"{n['random']} samples, deciles 0–9 evenly"),
        ("targeted-sampling validity, z ~ N(μ_base, 0.5)", _pct(m["targeted_validity"]), _pct(p["targeted_validity"]),
         f"{n['targeted']} samples around {n['bases']} val bases"),
    ]
    lines = ["| metric | ours | paper | sample |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    f = report["funnel"]
    lines += ["", "Targeted funnel (counts over all bases, each stage within the one before):", "",
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
    return "\n".join(lines)
