"""Placing one CIF: the three threaded steps with all cores against one thread, one run.

``python -m ml locate`` and the Locate page embed one structure (torch), search its
neighbours (faiss, exact L2) and place it with openTSNE's ``transform``, twice (crystal and
XRD maps). Each library spreads its work over every core by default, and the pickled t-SNE
state keeps the ``n_jobs=-1`` it was fitted with. This script times each step as it was
(all cores) and as ml.mapping.locate / ml.mapping.artifacts now run it (one thread), alternating the two on
every round so that other jobs on the machine slow both alike, and checks that the results
agree (the t-SNE placement to 1e-5 of the map's extent: the thread count may change its
rounding; the search and the encoders to float32 rounding):

- t-SNE: ``transform`` of one point with the unpickled state against
  :func:`ml.mapping.locate.load_tsne`'s, on a map of ``--n`` synthetic clustered 128-d points fitted
  by :func:`ml.mapping.build.fit_tsne` (12,000 by default: above 10,000 the build uses FFT
  gradients and Annoy neighbours, as for mp2024), or on a built map's ``tsne.pkl`` (``--map``);
- faiss: one exact search among ``--n-index`` random 128-d vectors (141,659 like mp2024);
- torch: crystal and XRD encoders of the committed model on one 64-atom NaCl supercell.

Prints the median seconds of each and, as its last line::

    locate threads tsne_ratio=<all cores / one> faiss_ratio=<…> torch_ratio=<…> load=<1-min load average>

Usage: PYTHONPATH=. .venv/bin/python bench/locate_threads.py [--n 12000] [--map data/artifacts/mp2024/cmml-cpu] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def bench_tsne(pickle_path: Path, query: np.ndarray, rounds: int) -> tuple[float, float]:
    """Median seconds of one ``transform`` as unpickled and after :func:`ml.mapping.locate.load_tsne`."""
    from ml.mapping.locate import load_tsne

    times: dict[str, list[float]] = {"all": [], "one": []}
    placed = {}
    for _ in range(rounds):
        for mode in times:
            if mode == "all":
                with open(pickle_path, "rb") as handle:
                    embedding = pickle.load(handle)
            else:
                embedding = load_tsne(pickle_path)
            seconds, xy = _timed(lambda: np.asarray(embedding.transform(query)))
            times[mode].append(seconds)
            placed.setdefault(mode, xy)
    extent = float(np.ptp(np.asarray(embedding), axis=0).max())
    moved = float(np.abs(placed["all"] - placed["one"]).max())
    print(f"t-SNE placement: largest difference between the two {moved:.2g} (map extent {extent:.0f})")
    assert moved <= 1e-5 * extent, placed
    return float(np.median(times["all"])), float(np.median(times["one"]))


def bench_faiss(n_index: int, rounds: int) -> tuple[float, float]:
    """Median seconds of one exact search with faiss' default threads and with
    :meth:`ml.mapping.knn.ExactL2Index.search` (one thread for one query)."""
    from ml.mapping.knn import ExactL2Index

    rng = np.random.default_rng(0)
    index = ExactL2Index.build(rng.normal(size=(n_index, 128)).astype(np.float32))
    query = rng.normal(size=(1, 128)).astype(np.float32)
    times: dict[str, list[float]] = {"all": [], "one": []}
    found = {}
    for _ in range(rounds * 4):
        for mode, search in (("all", index.faiss_index.search), ("one", index.search)):
            seconds, result = _timed(lambda: search(query, 11))
            times[mode].append(seconds)
            found.setdefault(mode, result[1])
    assert np.array_equal(found["all"], found["one"])
    return float(np.median(times["all"])), float(np.median(times["one"]))


def bench_torch(rounds: int) -> tuple[float, float] | None:
    """Median seconds of both encoders on one structure with torch's default threads and on one."""
    import torch
    from pymatgen.core import Lattice, Structure

    from ml.data.batches import GraphStore
    from ml.models.cmml import load_model
    from ml.mapping.embed import embed_crystals
    from ml.features.graph import crystal_graph
    from ml.threads import torch_threads
    from ml.settings import REPO_ROOT

    path = REPO_ROOT / "data" / "models" / "cmml-cpu" / "model.pt"
    if not path.is_file():
        return None
    model, _ = load_model(path)
    model.eval()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    store = GraphStore.from_graphs([crystal_graph(nacl * (2, 2, 2))])
    pattern = torch.zeros(1, 5000)
    pattern[0, ::97] = 1.0

    def embed():
        with torch.inference_mode():
            return embed_crystals(model, store), model.xrd(pattern).numpy()

    times: dict[str, list[float]] = {"all": [], "one": []}
    out = {}
    for _ in range(rounds * 2):
        for mode in times:
            if mode == "all":
                seconds, result = _timed(embed)
            else:
                with torch_threads(1):
                    seconds, result = _timed(embed)
            times[mode].append(seconds)
            out.setdefault(mode, result)
    np.testing.assert_allclose(out["all"][0], out["one"][0], rtol=1e-5, atol=1e-6)
    return float(np.median(times["all"])), float(np.median(times["one"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=12_000, help="synthetic map size (without --map)")
    parser.add_argument("--map", type=Path, default=None, help="a built map folder: use its tsne.pkl")
    parser.add_argument("--n-index", type=int, default=141_659, help="faiss index size")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        if args.map is not None:
            pickle_path = args.map / "tsne.pkl"
            dim = np.load(args.map / "embeddings.npy", mmap_mode="r").shape[1]
            query = np.asarray(np.load(args.map / "embeddings.npy", mmap_mode="r")[:1], dtype=np.float64) + 0.01
            print(f"t-SNE state: {pickle_path} ({dim}-d)")
        else:
            from ml.mapping.build import fit_tsne

            centres = rng.normal(size=(40, 128)) * 3
            points = centres[rng.integers(0, 40, args.n)] + rng.normal(size=(args.n, 128))
            seconds, fitted = _timed(lambda: fit_tsne(points, progress=False))
            print(f"fitted t-SNE of {args.n} synthetic points in {seconds:.0f} s (n_jobs=-1, as the build)")
            pickle_path = Path(tmp) / "tsne.pkl"
            pickle_path.write_bytes(pickle.dumps(fitted))
            query = (centres[3] + rng.normal(size=128)).reshape(1, -1)
        tsne = bench_tsne(pickle_path, query, args.rounds)
    faiss_times = bench_faiss(args.n_index, args.rounds)
    torch_times = bench_torch(args.rounds)
    for name, (all_cores, one) in (("t-SNE transform", tsne), ("faiss search", faiss_times),
                                    *((("torch encoders", torch_times),) if torch_times else ())):
        print(f"{name:16s} all cores {all_cores * 1000:8.1f} ms   one thread {one * 1000:8.1f} ms   "
              f"ratio {all_cores / one:5.1f}")
    torch_ratio = f"{torch_times[0] / torch_times[1]:.1f}" if torch_times else "n/a"
    print(f"locate threads tsne_ratio={tsne[0] / tsne[1]:.1f} faiss_ratio={faiss_times[0] / faiss_times[1]:.1f} "
          f"torch_ratio={torch_ratio} load={os.getloadavg()[0]:.2f} cores={os.cpu_count()}")


if __name__ == "__main__":
    main()
