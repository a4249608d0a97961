"""Crystal-encoder forward pass on CPU: the Gaussian expansion with subnormal tails (before)
against ours with exact zeros (now), same run, same model, same batches.

    python bench/embed.py [--batches 8] [--rounds 3] [--threads 2]

Loads the committed full map model (``data/models/cmml-full/model.pt``) and ``--batches`` batches
of 512 crystal graphs from the mp2024 graph cache (the first feature shards, each a random
slice of mp2024; ``./run.sh`` builds them, or ``python -m ml featurize --dataset mp2024 --kind
graph``). Rounds alternate between:

- before: ``GaussianDistance`` as the plain ``exp(−(d − μ)² / σ²)``; float32 gives subnormal
  numbers for exponents −87 … −103, and x86 CPUs compute with those in microcode;
- now (:class:`ml.models.cgcnn.GaussianDistance`): exponents below −80 give exactly 0.

Both run the same :class:`ml.models.cgcnn.CGCNNConv` (its in-place edge sums are in both),
through the build's own :func:`ml.mapping.embed.embed_crystals` (its batching, ~12 ms a batch,
is in both figures).
Prints ms per batch of each way, their ratio, the share of the expansion's values that are
subnormal before, and the largest difference between the two ways' embeddings (0 expected: the
dropped values are below float32's resolution of every sum they enter).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data.batches import GraphStore  # noqa: E402
from ml.data.datasets import get_dataset  # noqa: E402
from ml.data.featurize import load_features  # noqa: E402
from ml.data.shard_cache import n_shards_for  # noqa: E402
from ml.mapping.embed import embed_crystals  # noqa: E402
from ml.models import cgcnn  # noqa: E402
from ml.models.cmml import load_model  # noqa: E402

MODEL = Path(__file__).resolve().parents[1] / "data" / "models" / "cmml-full" / "model.pt"


def plain_expansion(self, distance: torch.Tensor) -> torch.Tensor:
    """The textbook expansion, subnormal tails included (the reference)."""
    return torch.exp(-((distance[:, None] - self.centres) ** 2) / self.width**2)


def _forward(model, graphs: GraphStore, n: int) -> tuple[np.ndarray, float]:
    """Embeddings of the first ``n`` crystals as the map build computes them
    (:func:`ml.mapping.embed.embed_crystals`, batches of 512) and the ms per batch."""
    began = time.perf_counter()
    out = embed_crystals(model, graphs, np.arange(n))
    return out, (time.perf_counter() - began) / -(-n // 512) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8, help="batches of 512 crystals")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (before, now)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (the build uses all cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load before: {os.getloadavg()}")
    dataset = get_dataset("mp2024")
    per_shard = len(dataset) / n_shards_for(len(dataset))
    n_shards = min(n_shards_for(len(dataset)), int(np.ceil(512 * args.batches / per_shard)) + 1)
    graphs = GraphStore(load_features(dataset, "graph", shards=range(n_shards)))
    n = min(len(graphs), 512 * args.batches)
    model, _ = load_model(MODEL)
    ours = cgcnn.GaussianDistance.forward

    distances = torch.from_numpy(graphs.edge_distance[: graphs.edge_offsets[n]])
    with torch.inference_mode():
        plain = plain_expansion(model.crystal.expand, distances)
    tiny = torch.finfo(torch.float32).tiny
    subnormal = float(((plain > 0) & (plain < tiny)).float().mean())
    print(f"{n} crystals in {-(-n // 512)} batches, {len(distances):,} edges; "
          f"{subnormal:.2%} of the plain expansion's values are subnormal")

    times: dict[str, list[float]] = {"before": [], "now": []}
    results = {}
    _forward(model, graphs, min(n, 512))  # warm-up
    for _ in range(args.rounds):
        for way, forward in (("before", plain_expansion), ("now", ours)):
            cgcnn.GaussianDistance.forward = forward
            try:
                results[way], ms = _forward(model, graphs, n)
            finally:
                cgcnn.GaussianDistance.forward = ours
            times[way].append(ms)
    for way, values in times.items():
        print(f"{way:7s} ms per batch of 512: " + " ".join(f"{v:7.1f}" for v in values))
    before, now = np.median(times["before"]), np.median(times["now"])
    difference = float(np.abs(results["before"] - results["now"]).max())
    print(f"embed bench ratio_now_over_before={now / before:.2f} before_ms={before:.0f} now_ms={now:.0f} "
          f"max_abs_difference={difference:.3g} load={os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
