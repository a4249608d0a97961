"""Featurisation cost per structure: each CIF parsed twice (before) against once (now), same run.

    python bench/featurize.py [--n 2000] [--rounds 2]

On a slice of mp2024 (feature shard 0: about 2,000 materials, a random sample of the dataset),
in this one process, rounds alternating between the two ways:

- before: the graph pass parses the CIF and computes graph, summary (with spglib and pymatgen's
  density for every material); the XRD pass parses the CIF again and simulates the pattern;
- now (:mod:`ml.data.featurize`): the graph pass parses the CIF once and keeps the cell; it
  computes density and space group only where the properties table lacks them; the XRD pass
  rebuilds the structure from the kept cell.

Prints ms per structure of each pass, the ratios, and checks that both ways give identical graphs,
patterns and (where computed) summaries. Needs the mirror (``MATMAP_MIRROR_DIR``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml.data.datasets import get_dataset  # noqa: E402
from ml.data.featurize import _known_symmetry, graph_features, xrd_features  # noqa: E402
from ml.data.shard_cache import n_shards_for, shard_of  # noqa: E402
from ml.features.graph import GraphConfig  # noqa: E402
from ml.features.xrd import XRDConfig  # noqa: E402


def _timed(fn, items) -> tuple[list, float]:
    """``fn(item)`` for each item (``None`` where it raises) and the seconds per item."""
    out, began = [], time.perf_counter()
    for item in items:
        try:
            out.append(fn(item))
        except Exception:  # noqa: BLE001 — a failing structure fails both ways; compared below
            out.append(None)
    return out, (time.perf_counter() - began) / max(len(items), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="at most this many structures of shard 0")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (before, now)")
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    dataset = get_dataset("mp2024")
    n_shards = n_shards_for(len(dataset))
    records = list(dataset.records({m for m in dataset.material_ids if shard_of(m, n_shards) == 0}))[: args.n]
    known = _known_symmetry(dataset)
    graph_config, xrd_config = GraphConfig(), XRDConfig()
    cifs = [cif for _, cif in records]
    flagged = [(cif, mid not in known) for mid, cif in records]
    times: dict[str, list[float]] = {k: [] for k in ("before: graph", "before: xrd", "now: graph", "now: xrd")}
    for _ in range(args.rounds):
        old_graphs, t = _timed(lambda cif: graph_features(cif, graph_config), cifs)
        times["before: graph"].append(t)
        old_xrd, t = _timed(lambda cif: xrd_features(cif, xrd_config), cifs)
        times["before: xrd"].append(t)
        new_graphs, t = _timed(lambda item: graph_features(item[0], graph_config, symmetry=item[1]), flagged)
        times["now: graph"].append(t)
        cells = [g[2] if g is not None else cif for g, cif in zip(new_graphs, cifs)]  # a failed graph: its CIF
        new_xrd, t = _timed(lambda source: xrd_features(source, xrd_config), cells)
        times["now: xrd"].append(t)
    _check_identical(old_graphs, new_graphs, old_xrd, new_xrd)
    print(f"{len(records)} structures, {args.rounds} alternating rounds, 1 process; "
          f"{sum(not s for _, s in flagged)} with density and space group in the properties table")
    for name, values in times.items():
        print(f"{name:14s} " + "  ".join(f"{v * 1e3:6.2f}" for v in values) + "  ms/structure")
    before = np.array(times["before: graph"]) + np.array(times["before: xrd"])
    now = np.array(times["now: graph"]) + np.array(times["now: xrd"])
    print("graph pass now/before: " + "  ".join(f"{r:.2f}" for r in np.array(times["now: graph"]) /
                                                np.array(times["before: graph"])))
    print("xrd pass now/before:   " + "  ".join(f"{r:.2f}" for r in np.array(times["now: xrd"]) /
                                                np.array(times["before: xrd"])))
    print("both passes now/before: " + "  ".join(f"{r:.2f}" for r in now / before))
    print(f"load after: {os.getloadavg()}")


def _check_identical(old_graphs, new_graphs, old_xrd, new_xrd) -> None:
    """Both ways give the same graphs, patterns, and summaries where the new way computes them."""
    for old, new in zip(old_graphs, new_graphs):
        assert (old is None) == (new is None)
        if old is None:
            continue
        for name in ("atomic_numbers", "edge_src", "edge_dst", "edge_distance"):
            assert np.array_equal(getattr(old[0], name), getattr(new[0], name)), name
        for key, value in new[1].items():
            if value is not None and not (isinstance(value, float) and np.isnan(value)):
                assert old[1][key] == value, key
    for old, new in zip(old_xrd, new_xrd):
        assert (old is None) == (new is None)
        if old is not None:
            assert np.array_equal(old, new)
    print("identical graphs, summaries and patterns")


if __name__ == "__main__":
    main()
