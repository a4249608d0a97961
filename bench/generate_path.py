"""One 10-step latent path of the committed generator, as the ``/generate`` page decodes it.

Loads the generator once (as the app does per worker), then times ``--rounds`` decodings of the
path between two compounds (default the issue's VRu mp-1395 → DyAs mp-2627) through
:func:`ml.service.explorer.interpolate`, and each stage of one path on its own: encoding the two ends,
the VAE decoder, the peak decoder, the validity rules and the CGCNN property predictions. The
reference is the first round (cold: property models and caches warming up). Prints, as its last
line::

    generate path median_s=<…> cold_s=<…> target_s=3.0 ratio_to_target=<median / 3> valid=<n of steps> load=<1-min load>

Usage: PYTHONPATH=. .venv/bin/python bench/generate_path.py [--from mp-1395] [--to mp-2627] [--steps 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_S = 3.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="id_from", default="mp-1395")
    parser.add_argument("--to", dest="id_to", default="mp-2627")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import torch

    from ml.service import explorer
    from ml.generation.decode import decode_crystal
    from ml.evaluation.validity import strict_validity

    began = time.perf_counter()
    generator = explorer.generator()
    print(f"load: {time.perf_counter() - began:.2f} s (once per worker)")
    times, result = [], None
    for _ in range(args.rounds):
        began = time.perf_counter()
        result = explorer.interpolate(args.id_from, args.id_to, args.steps)
        times.append(time.perf_counter() - began)
    rows = result["rows"]
    print("path:", " → ".join(r["formula"] or "∅" for r in rows))

    # one path, stage by stage
    stages = {}
    began = time.perf_counter()
    mu, _, deciles = generator.encode_rows(np.array([generator.row_of(args.id_from), generator.row_of(args.id_to)]))
    stages["encode ends"] = time.perf_counter() - began
    t = torch.linspace(0, 1, args.steps)
    z = (1 - t)[:, None] * mu[0][None] + t[:, None] * mu[1][None]
    condition = generator.condition([deciles[0]] * args.steps)
    began = time.perf_counter()
    with torch.inference_mode():
        density, logits, lattice, n_sites = generator.vae.decode(z, condition)
        log_probs = torch.log_softmax(logits, dim=1).numpy()
    stages["VAE decoder"] = time.perf_counter() - began
    began = time.perf_counter()
    structures = [decode_crystal(density[i, 0].numpy(), log_probs[i], float(lattice[i]), generator.vocabulary,
                                 n_sites=int(n_sites[i])) for i in range(args.steps)]
    stages["peak decoder"] = time.perf_counter() - began
    began = time.perf_counter()
    verdicts = [strict_validity(s) for s in structures]
    stages["validity rules"] = time.perf_counter() - began
    valid = [s for s, v in zip(structures, verdicts) if v.strict]
    for name, model in generator.predictors.items():
        began = time.perf_counter()
        if valid:
            model.predict(valid)
        stages[f"CGCNN {name}"] = time.perf_counter() - began
    for name, seconds in stages.items():
        print(f"  {name:28s} {seconds:.3f} s")
    median = float(np.median(times[1:] if len(times) > 1 else times))
    n_valid = sum(bool(r["valid"]) for r in rows)
    print(f"generate path median_s={median:.3f} cold_s={times[0]:.3f} target_s={TARGET_S} "
          f"ratio_to_target={median / TARGET_S:.3f} valid={n_valid}/{len(rows)} load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
