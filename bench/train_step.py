"""One training step of the map model (CMML) on 2 CPU cores: where the time goes, and what an
embedding width, a thread setting or bfloat16 autocast costs, measured in one run.

A random sample of ``--n`` mp2024 materials is featurised into a temporary data folder (graphs
and XRD patterns, as ``python -m ml train`` sees them). Each variant then runs ``--rounds``
steps of ``--batch`` materials, and each step is split into its phases:

- ``collate``: the graph and pattern batches from the stores (data loading);
- ``crystal``: the CGCNN encoder forward; ``xrd``: the XRD CNN forward;
- ``loss``: the bidirectional triplet loss; ``backward``: the gradients of both encoders;
- ``step``: Adam.

Variants: the ``cpu`` recipe's model (128-d, head 256; the reference) on 2 threads, and on 1;
256-d (head 512) and the paper's 1024-d (head 1024) on 2 threads; 256-d under bfloat16 autocast.
Prints a table of median seconds per phase and, per variant, materials/s and the ratio to the
reference measured in the same run; its last line::

    train_step ref_samples_per_s=<…> <variant>=<ratio> … load=<1-min load average>

Usage: PYTHONPATH=. .venv/bin/python bench/train_step.py [--n 1024] [--batch 256] [--rounds 6]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PHASES = ("collate", "crystal", "xrd", "loss", "backward", "step")


def _sample(n: int, seed: int):
    from ml.data.datasets import get_dataset

    dataset = get_dataset("mp2024")
    ids = np.random.default_rng(seed).choice(np.asarray(dataset.material_ids), n, replace=False)
    return dataset.subset(f"bench{n}", set(ids.tolist()))


def _time_steps(data, width: int, head: int, threads: int, batch: int, rounds: int, bf16: bool) -> dict[str, float]:
    import torch

    from ml.features.atom_features import atom_feature_table
    from ml.models.cmml import CMML
    from ml.training.loss import bidirectional_triplet_loss
    from ml.training.cmml_recipes import _sized

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = CMML(_sized(width, head), torch.from_numpy(atom_feature_table())).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    rows = data.rows("train")
    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {p: [] for p in PHASES}
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    for r in range(rounds + 1):  # the first step warms up and is not counted
        chosen = rng.choice(rows, batch, replace=False)
        t0 = time.perf_counter()
        graphs = data.graphs.batch(data.graph_rows[chosen])
        patterns = data.patterns.batch(data.xrd_rows[chosen])
        t1 = time.perf_counter()
        with autocast:
            crystal = model.crystal(*graphs.inputs())
            t2 = time.perf_counter()
            xrd = model.xrd(patterns)
            t3 = time.perf_counter()
            loss = bidirectional_triplet_loss(crystal.float(), xrd.float(), 1.0, torch.Generator().manual_seed(r))
        t4 = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        t5 = time.perf_counter()
        optimiser.step()
        t6 = time.perf_counter()
        if r:
            for phase, seconds in zip(PHASES, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)):
                times[phase].append(seconds)
    return {p: float(np.median(v)) for p, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="materials featurised (default 1024)")
    parser.add_argument("--batch", type=int, default=256, help="materials per step (the recipes' 256)")
    parser.add_argument("--rounds", type=int, default=6, help="timed steps per variant (default 6)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MATMAP_DATA_DIR"] = tmp
        from ml.settings import get_settings
        from ml.training.cmml import load_training_data

        get_settings.cache_clear()
        began = time.time()
        data = load_training_data(_sample(args.n, args.seed), None, processes=1)
        print(f"featurised {len(data.material_ids)} materials in {time.time() - began:.0f} s")
        variants = {  # name: (width, head, threads, bf16)
            "ref_128d_2threads": (128, 256, 2, False),
            "128d_1thread": (128, 256, 1, False),
            "256d_2threads": (256, 512, 2, False),
            "1024d_2threads": (1024, 1024, 2, False),
            "256d_2threads_bf16": (256, 512, 2, True),
        }
        results = {name: _time_steps(data, w, h, t, args.batch, args.rounds, bf16)
                   for name, (w, h, t, bf16) in variants.items()}
    print(f"{'variant':<22}" + "".join(f"{p:>10}" for p in PHASES) + f"{'total':>10}{'mat/s':>9}")
    speed = {}
    for name, phases in results.items():
        total = sum(phases.values())
        speed[name] = args.batch / total
        print(f"{name:<22}" + "".join(f"{phases[p]:>10.3f}" for p in PHASES) + f"{total:>10.3f}{speed[name]:>9.0f}")
    reference = speed["ref_128d_2threads"]
    ratios = " ".join(f"{name}={speed[name] / reference:.2f}" for name in variants if name != "ref_128d_2threads")
    print(f"train_step ref_samples_per_s={reference:.0f} {ratios} load={os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
