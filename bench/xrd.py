"""XRD patterns: ml.features.xrd_sim (ours) against pymatgen's XRDCalculator (ml.features.xrd.xrd_pattern), one run.

Both engines get the same structures, drawn with a fixed seed from a dataset, and the same
number of worker processes (each warmed up first, so imports are not timed); they alternate on
slices of the structures so that other jobs on the machine slow both alike. Both run with
one BLAS thread: the reference's small matrix products are 2–3× slower with OpenBLAS's default
threads on a busy machine, and ml.features.xrd_sim limits its own BLAS to one thread anyway, so the
ratio compares the algorithms. Prints per-engine throughput, failures, structures with cosine
< 0.99, peak-position agreement, and as its last line:

    xrd speedup=<ours / pymatgen throughput> mean_cosine=<m> min_cosine=<n> n=<count>

where the cosines are over the structures pymatgen could simulate (a structure only pymatgen
could simulate counts as cosine 0).

Usage: PYTHONPATH=. .venv/bin/python bench/xrd.py [--n 1000] [--dataset mp2024] [--processes 1] [--seed 0]
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: Structures of the current run, shared with forked workers (read-only).
_STRUCTURES: list = []
#: Reference peaks checked for a counterpart in our pattern.
TOP_PEAKS = 10
#: Slices on which the two engines alternate.
ROUNDS = 10


def load_structures(dataset_name: str, n: int, seed: int) -> tuple[list[str], list, dict[str, str]]:
    """``n`` materials drawn with ``seed``: ids, structures, and ``{id: reason}`` of unreadable CIFs."""
    from ml.data.datasets import get_dataset
    from ml.data.structures import CifError, parse_cif

    dataset = get_dataset(dataset_name)
    rng = np.random.default_rng(seed)
    drawn = [dataset.material_ids[i] for i in rng.choice(len(dataset), size=min(n, len(dataset)), replace=False)]
    cifs = dict(dataset.records(set(drawn)))
    ids, structures, unreadable = [], [], {}
    for material_id in drawn:
        try:
            structures.append(parse_cif(cifs[material_id]))
            ids.append(material_id)
        except (CifError, KeyError) as exc:
            unreadable[material_id] = str(exc)
    return ids, structures, unreadable


def _ours(indices: range) -> tuple[np.ndarray, dict[int, str]]:
    """Failures are rows of zeros here; their reasons are asked for after the timing."""
    from ml.features.xrd_sim import xrd_patterns

    return xrd_patterns([_STRUCTURES[i] for i in indices], on_error="zeros"), {}


def _reference(indices: range) -> tuple[np.ndarray, dict[int, str]]:
    from threadpoolctl import threadpool_limits

    from ml.features.xrd import xrd_pattern

    patterns = np.zeros((len(indices), 5000), dtype=np.float32)
    errors = {}
    with threadpool_limits(1, user_api="blas"):
        for row, i in enumerate(indices):
            try:
                patterns[row] = xrd_pattern(_STRUCTURES[i])
            except ValueError as exc:  # FeaturisationError, or pymatgen's own
                errors[i] = str(exc)
    return patterns, errors


ENGINES = {"ours": _ours, "pymatgen": _reference}


def _warm_up() -> None:
    for engine in ENGINES.values():
        engine(range(min(2, len(_STRUCTURES))))


def _call(args: tuple[str, int, int]) -> tuple[int, np.ndarray, dict[int, str]]:
    name, start, stop = args
    patterns, errors = ENGINES[name](range(start, stop))
    return start, patterns, errors


def run_engine(name: str, start: int, stop: int, processes: int, pool) -> tuple[np.ndarray, dict[int, str], float]:
    """Patterns of structures ``start:stop`` by one engine, its errors by position, wall seconds."""
    out = np.zeros((stop - start, 5000), dtype=np.float32)
    errors: dict[int, str] = {}
    start_time = time.perf_counter()
    if pool is None:
        _, out, errors = _call((name, start, stop))
    else:
        step = max(1, -(-(stop - start) // (processes * 4)))
        tasks = [(name, i, min(stop, i + step)) for i in range(start, stop, step)]
        for i, patterns, chunk_errors in pool.imap_unordered(_call, tasks):
            out[i - start : i - start + len(patterns)] = patterns
            errors.update(chunk_errors)
    return out, errors, time.perf_counter() - start_time


def run_interleaved(n: int, processes: int, pool, rounds: int = ROUNDS) -> dict[str, tuple[np.ndarray, dict, float]]:
    """Both engines on the same structures, alternating on ``rounds`` slices so that a change of
    load on the machine (other jobs) hits both alike; patterns, errors and summed seconds per engine."""
    results = {name: (np.zeros((n, 5000), dtype=np.float32), {}, 0.0) for name in ENGINES}
    bounds = np.linspace(0, n, min(rounds, n) + 1).astype(int)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        for name in ENGINES:
            patterns, errors, seconds = run_engine(name, int(start), int(stop), processes, pool)
            out, all_errors, total = results[name]
            out[start:stop] = patterns
            all_errors.update(errors)
            results[name] = (out, all_errors, total + seconds)
    return results


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1), 0.0)


def top_peaks_found(ours: np.ndarray, reference: np.ndarray, k: int = TOP_PEAKS) -> bool:
    """Each of the reference's ``k`` highest bins has a non-zero bin of ours within one bin."""
    top = np.argsort(reference)[::-1][:k]
    top = top[reference[top] > 0]
    padded = np.r_[0.0, ours, 0.0]  # padded[i + 1] = ours[i]
    return bool(np.all((padded[top] > 0) | (padded[top + 1] > 0) | (padded[top + 2] > 0)))


def main(argv: list[str] | None = None) -> None:  # long: one measurement script, its steps in the order they run
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="structures drawn from the dataset")
    parser.add_argument("--dataset", default="mp2024", help="dataset name or CIF folder (ml.data.datasets)")
    parser.add_argument("--processes", type=int, default=1, help="worker processes per engine")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw")
    args = parser.parse_args(argv)

    global _STRUCTURES
    ids, _STRUCTURES, unreadable = load_structures(args.dataset, args.n, args.seed)
    n = len(_STRUCTURES)
    sizes = np.array([len(s) for s in _STRUCTURES])
    print(f"{args.dataset}: {n} structures (seed {args.seed}; {len(unreadable)} unreadable CIFs), "
          f"sites median {np.median(sizes):.0f}, max {sizes.max()}; {args.processes} process(es) per engine")

    pool = None
    if args.processes > 1:
        pool = multiprocessing.get_context("fork").Pool(args.processes, initializer=_warm_up)
        pool.map(time.sleep, [0.0] * args.processes)  # workers started and warmed
    else:
        _warm_up()
    try:
        results = run_interleaved(n, args.processes, pool)
    finally:
        if pool is not None:
            pool.close()
            pool.join()

    ours, _, t_ours = results["ours"]
    reference, reference_errors, t_reference = results["pymatgen"]
    for name, (_, _, seconds) in results.items():
        print(f"{name:>9}: {seconds:8.2f} s  {seconds / n * 1e3:7.2f} ms/structure  {n / seconds:8.1f} structures/s")

    our_failures = set(np.flatnonzero(~ours.any(axis=1)).tolist())
    if our_failures:
        from ml.features.errors import FeaturisationError
        from ml.features.xrd_sim import xrd_pattern_fast

        for i in sorted(our_failures):
            try:
                xrd_pattern_fast(_STRUCTURES[i])
            except FeaturisationError as exc:
                print(f"  ours failed on {ids[i]}: {exc}")
    for i, reason in sorted(reference_errors.items()):
        print(f"  pymatgen failed on {ids[i]}: {reason}")
    only_ours = sorted(set(reference_errors) - our_failures)
    if only_ours:
        print(f"  {len(only_ours)} structure(s) only ours simulated (not compared): {[ids[i] for i in only_ours]}")

    compared = np.array([i for i in range(n) if i not in reference_errors], dtype=int)
    cos = cosines(ours[compared], reference[compared])
    low = compared[cos < 0.99]
    max_diff = np.abs(ours[compared] - reference[compared]).max()
    same_bins = np.mean([np.array_equal(np.flatnonzero(ours[i]), np.flatnonzero(reference[i])) for i in compared])
    strongest = np.mean([abs(int(np.argmax(ours[i])) - int(np.argmax(reference[i]))) <= 1 for i in compared])
    top = np.mean([top_peaks_found(ours[i], reference[i]) for i in compared])
    print(f"compared {len(compared)}: mean cosine {cos.mean():.6f}, min {cos.min():.6f}, max |Δ| {max_diff:.2e}, "
          f"identical non-zero bins {same_bins:.1%}")
    print(f"peak positions: strongest bin within one bin {strongest:.1%}, "
          f"top {TOP_PEAKS} reference peaks all matched within one bin {top:.1%}")
    print(f"cosine < 0.99: {len(low)}" + "".join(
        f"\n  {ids[i]} {_STRUCTURES[i].composition.reduced_formula} ({len(_STRUCTURES[i])} sites): "
        f"cosine {cosines(ours[i : i + 1], reference[i : i + 1])[0]:.4f}" for i in low))

    speedup = t_reference / t_ours  # same structures: throughput ratio = time ratio
    print(f"xrd speedup={speedup:.1f} mean_cosine={cos.mean():.6f} min_cosine={cos.min():.6f} n={len(compared)}")


if __name__ == "__main__":
    main()
