"""Choose the peak decoder's density thresholds (``ml.generation.decode.PEAK_THRESHOLD`` without a
decoded site count, ``ml.generation.decode.CANDIDATE_THRESHOLD`` with one) for a trained generator, on
TRAINING crystals only (the validation split decides the quality gates and is not looked at here).

Reconstructs every ``--every``-th training crystal of the generator's voxel store (z = μ) once,
then decodes the same grids with each threshold, both ways (every maximum above the threshold;
the decoded site count's highest maxima above it), and prints per threshold the mean |Δ sites|,
the share of exact site counts and of exact compositions, and the site-count head's accuracy.
Last lines::

    peak threshold best=<threshold, all maxima> mean_abs_delta_sites=<…> n=<crystals> load=<1-min load>
    candidate threshold best=<threshold, with the site count> mean_abs_delta_sites=<…> exact=<…>

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
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    args = parser.parse_args(argv)

    import torch

    from ml.generation.generative_model import GenerativeModel
    from ml.generation.voxel_data import conventional_structures
    from ml.generation.decode import decode_crystal
    from ml.generation.voxels import VoxelDecodeError

    g = GenerativeModel.load(args.model, args.dataset)
    rows = np.flatnonzero(g.arrays.split == "train")[:: args.every]
    ids = [str(m) for m in g.arrays.material_ids[rows]]
    truth = dict(conventional_structures(g.dataset, material_ids=ids))
    mu, _, deciles = g.encode_rows(rows)
    with torch.inference_mode():  # the grids as GenerativeModel.decode computes them
        density, logits, lattice, n_sites = g.vae.decode(mu.to(g.device), g.condition(deciles).to(g.device))
        density = density[:, 0].float().cpu().numpy()
        log_probs = torch.log_softmax(logits.float(), dim=1).cpu().numpy()
        lattice = lattice.float().cpu().numpy()
        n_sites = n_sites.cpu().numpy()
    true_counts = np.array([len(truth[m]) for m in ids])
    print(f"{len(ids)} training crystals (every {args.every}th); site-count head right for "
          f"{np.mean(n_sites == true_counts):.1%}")
    print(f"{'threshold':>9} {'site count':>10} {'mean |Δ sites|':>15} {'exact count':>12} {'exact composition':>18}")
    results: dict[str, dict[float, tuple[float, float]]] = {"all maxima": {}, "decoded count": {}}
    for threshold in args.thresholds:
        for mode in results:
            errors, exact = [], []
            for i, material_id in enumerate(ids):
                true_structure = truth[material_id]
                count = int(n_sites[i]) if mode == "decoded count" else None
                try:
                    decoded = decode_crystal(density[i], log_probs[i], float(lattice[i]), g.vocabulary, threshold, count)
                except VoxelDecodeError:  # no atom above the threshold: every site missed
                    errors.append(len(true_structure))
                    exact.append(False)
                    continue
                errors.append(abs(len(decoded) - len(true_structure)))
                exact.append(decoded.composition == true_structure.composition)
            results[mode][threshold] = (float(np.mean(errors)), float(np.mean(exact)))
            print(f"{threshold:>9.2f} {mode:>10} {np.mean(errors):>15.3f} {np.mean(np.asarray(errors) == 0):>12.1%} "
                  f"{np.mean(exact):>18.1%}")
    best = min(results["all maxima"], key=lambda t: results["all maxima"][t])
    print(f"peak threshold best={best} mean_abs_delta_sites={results['all maxima'][best][0]:.3f} n={len(ids)} "
          f"load={os.getloadavg()[0]:.2f}")
    best = min(results["decoded count"], key=lambda t: (results["decoded count"][t][0], -results["decoded count"][t][1]))
    print(f"candidate threshold best={best} mean_abs_delta_sites={results['decoded count'][best][0]:.3f} "
          f"exact={results['decoded count'][best][1]:.3f}")


if __name__ == "__main__":
    main()
