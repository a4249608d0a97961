"""Choose the peak decoder's density threshold (``ml.vae_decode.PEAK_THRESHOLD``) for a trained
generator, on TRAINING crystals only (the validation split decides the quality gates and is
not looked at here).

Reconstructs every ``--every``-th training crystal of the generator's voxel store (z = μ) once,
then decodes the same grids with each threshold and prints, per threshold, the mean |Δ sites|,
the share of exact site counts and of exact compositions. Last line::

    peak threshold best=<threshold with the smallest mean |Δ sites|> mean_abs_delta_sites=<…> n=<crystals> load=<1-min load>

Usage: PYTHONPATH=. .venv/bin/python bench/peak_threshold.py [--model data/models/vae-cpu] [--every 40]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="generator folder (default: the committed vae-cpu)")
    parser.add_argument("--dataset", default="mp2024")
    parser.add_argument("--every", type=int, default=40, help="take every N-th training crystal")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.2, 0.3, 0.4, 0.5, 0.6])
    args = parser.parse_args(argv)

    import torch

    from ml.generate import Generator
    from ml.vae_data import conventional_structures
    from ml.vae_decode import decode_crystal

    g = Generator.load(args.model, args.dataset)
    rows = np.flatnonzero(g.arrays.split == "train")[:: args.every]
    ids = [str(m) for m in g.arrays.material_ids[rows]]
    truth = dict(conventional_structures(g.dataset, material_ids=ids))
    mu, _, deciles = g.encode_rows(rows)
    with torch.inference_mode():  # the grids as Generator.decode computes them
        density, logits, lattice = g.vae.decode(mu.to(g.device), g._condition(deciles).to(g.device))
        density = density[:, 0].float().cpu().numpy()
        log_probs = torch.log_softmax(logits.float(), dim=1).cpu().numpy()
        lattice = lattice.float().cpu().numpy()
    print(f"{len(ids)} training crystals (every {args.every}th)")
    print(f"{'threshold':>9} {'mean |Δ sites|':>15} {'exact count':>12} {'exact composition':>18}")
    results = {}
    for threshold in args.thresholds:
        errors, exact = [], []
        for i, material_id in enumerate(ids):
            true_structure = truth[material_id]
            try:
                decoded = decode_crystal(density[i], log_probs[i], float(lattice[i]), g.vocabulary, threshold)
            except Exception:  # no atom above the threshold: every site missed
                errors.append(len(true_structure))
                exact.append(False)
                continue
            errors.append(abs(len(decoded) - len(true_structure)))
            exact.append(decoded.composition == true_structure.composition)
        results[threshold] = float(np.mean(errors))
        print(f"{threshold:>9.2f} {np.mean(errors):>15.3f} {np.mean(np.asarray(errors) == 0):>12.1%} {np.mean(exact):>18.1%}")
    best = min(results, key=results.get)
    print(f"peak threshold best={best} mean_abs_delta_sites={results[best]:.3f} n={len(ids)} load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
