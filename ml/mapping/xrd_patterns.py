"""The map's stored powder XRD patterns: what the material page draws, written by the build.

Every pattern of the map is the binned, max-normalised pattern of :mod:`ml.features.xrd` (Cu Kα,
2θ 10–110° in 0.02° bins: 5000 bins, about 390 of them non-zero on average), which the build
already simulates for the XRD map (:func:`ml.mapping.build.xrd_map`, cached sparse by
:mod:`ml.data.featurize`). The map folder keeps the non-zero bins in a compressed-sparse-row
layout, row ``i`` of ``materials.parquet`` being material ``i``:

| file | content |
|---|---|
| ``xrd_offsets.npy`` | ``(n_materials + 1,)`` int64: material ``i``'s peaks are ``offsets[i]:offsets[i + 1]`` (empty: no pattern) |
| ``xrd_bins.npy`` | ``(n_peaks,)`` int16 bin index ``b``; the bin's left edge is 2θ = ``two_theta_min + step · b`` degrees |
| ``xrd_intensity.npy`` | ``(n_peaks,)`` float16 intensity, max-normalised (the largest bin of a pattern is 1) |

and ``manifest.json``'s ``xrd_patterns`` entry the grid (``wavelength`` Å, ``two_theta_min``,
``two_theta_max``, ``step`` degrees, ``n_bins``) and the counts. The files are read memory-mapped:
a page visit reads one material's few hundred values. float16 keeps 11 significant bits: a bin
differs from the simulated float32 value by at most 5e-4 of the pattern's maximum. On mp2024 (141,659
materials, 55.7 M non-zero bins) the three files take 224 MB.

Maps built before the patterns were stored get them from the cached features, without simulating
again or rebuilding the map: ``python -m ml build`` on an up-to-date map calls
:func:`add_xrd_patterns` (:func:`migration_command`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ml.features.xrd import XRDConfig
from ml.mapping.format import MANIFEST, MATERIALS, XRD_PATTERN_FILES

log = logging.getLogger(__name__)

#: The manifest entry of the stored patterns.
MANIFEST_KEY = "xrd_patterns"
#: Materials gathered at once when the patterns are laid out (bounds the index arrays' memory).
CHUNK = 8192


def migration_command(dataset: str, model: str) -> str:
    """The command that adds the stored patterns to a map built without them."""
    return f"python -m ml build --dataset {dataset} --model {model}"


@dataclass
class SparsePatterns:
    """Binned XRD patterns of a map's materials in CSR layout (module docstring).

    Attributes:
        offsets: ``(n_materials + 1,)`` int64, non-decreasing, ``offsets[0] == 0``.
        bins: ``(n_peaks,)`` int16 bin indices, each in ``0 … n_bins - 1``.
        intensity: ``(n_peaks,)`` float16 max-normalised intensities.
        config: the grid of the bins.
    """

    offsets: np.ndarray
    bins: np.ndarray
    intensity: np.ndarray
    config: XRDConfig

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_with_pattern(self) -> int:
        """Materials that have a pattern (a non-empty row)."""
        return int(np.count_nonzero(np.diff(self.offsets)))

    def manifest_entry(self) -> dict:
        """The manifest's ``xrd_patterns`` entry: the grid and the counts."""
        return {**asdict(self.config), "n_bins": self.config.n_bins, "n_peaks": int(self.offsets[-1]),
                "n_materials": len(self), "n_with_pattern": self.n_with_pattern}

    def pattern(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The dense pattern of map row ``row``.

        Returns:
            ``(two_theta, intensity)``: the bins' left edges in degrees and the max-normalised
            intensities, both ``(n_bins,)`` (float64, float32).

        Raises:
            ValueError: the material has no stored pattern (it could not be simulated at build time).
        """
        lo, hi = int(self.offsets[row]), int(self.offsets[row + 1])
        if hi == lo:
            raise ValueError("the build could not simulate this material's pattern")
        dense = np.zeros(self.config.n_bins, dtype=np.float32)
        dense[np.asarray(self.bins[lo:hi], dtype=np.int64)] = np.asarray(self.intensity[lo:hi], dtype=np.float32)
        return self.config.two_theta(), dense

    @classmethod
    def from_features(cls, n_materials: int, rows: np.ndarray, pattern_rows: np.ndarray, indptr: np.ndarray,
                      bins: np.ndarray, values: np.ndarray, config: XRDConfig | None = None) -> "SparsePatterns":
        """Lay out the cached sparse patterns (an xrd ``FeatureTable``'s ``indptr``, ``bins``,
        ``values``) in map-row order.

        Args:
            n_materials: rows of the map's materials table.
            rows: ``(m,)`` map rows that have a pattern; ``pattern_rows``: ``(m,)`` their rows in the features.
            indptr: ``(n_patterns + 1,)`` int64; bins: int16 bin indices; values: float32 intensities.
            config: the grid the features were binned on (default :class:`XRDConfig`).

        Raises:
            ValueError: ``rows`` and ``pattern_rows`` differ in length, or a row lies outside the map.
        """
        rows, pattern_rows = np.asarray(rows, dtype=np.int64), np.asarray(pattern_rows, dtype=np.int64)
        if rows.shape != pattern_rows.shape:
            raise ValueError(f"{rows.size} map rows but {pattern_rows.size} pattern rows")
        if rows.size and (rows.min() < 0 or rows.max() >= n_materials):
            raise ValueError(f"map rows must lie in 0 … {n_materials - 1}")
        indptr = np.asarray(indptr, dtype=np.int64)
        lengths = np.zeros(n_materials, dtype=np.int64)
        lengths[rows] = indptr[pattern_rows + 1] - indptr[pattern_rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        source = np.full(n_materials, -1, dtype=np.int64)
        source[rows] = pattern_rows
        out_bins = np.empty(int(offsets[-1]), dtype=np.int16)
        out_values = np.empty(int(offsets[-1]), dtype=np.float16)
        for start in range(0, n_materials, CHUNK):
            chunk = np.arange(start, min(start + CHUNK, n_materials))
            chunk = chunk[lengths[chunk] > 0]
            if chunk.size == 0:
                continue
            take = _ranges(indptr[source[chunk]], lengths[chunk])
            lo, hi = offsets[chunk[0]], offsets[chunk[-1] + 1]
            out_bins[lo:hi] = bins[take]
            out_values[lo:hi] = values[take]
        return cls(offsets=offsets, bins=out_bins, intensity=out_values, config=config or XRDConfig())

    def write(self, folder: Path) -> list[str]:
        """Write the three files into ``folder`` (each under a temporary name, then renamed);
        returns their names."""
        for name, array in zip(XRD_PATTERN_FILES, (self.offsets, self.bins, self.intensity)):
            tmp = Path(folder) / f"{name}.tmp.npy"
            np.save(tmp, array)
            os.replace(tmp, Path(folder) / name)
        return list(XRD_PATTERN_FILES)

    @classmethod
    def read(cls, folder: Path, manifest: dict) -> "SparsePatterns | None":
        """The stored patterns of a map folder, memory-mapped; ``None`` when the map has none
        (built before they were stored).

        Raises:
            ValueError: the files disagree with each other or with the manifest.
        """
        folder = Path(folder)
        entry = manifest.get(MANIFEST_KEY)
        if entry is None or not all((folder / name).is_file() for name in XRD_PATTERN_FILES):
            return None
        offsets, bins, intensity = (np.load(folder / name, mmap_mode="r") for name in XRD_PATTERN_FILES)
        grid = {k: entry[k] for k in ("wavelength", "two_theta_min", "two_theta_max", "step")}
        if len(offsets) != entry["n_materials"] + 1 or len(bins) != len(intensity) or len(bins) != offsets[-1]:
            raise ValueError(f"{folder}: the stored XRD patterns are inconsistent ({len(offsets)} offsets, "
                             f"{len(bins)} bins, {len(intensity)} intensities)")
        return cls(offsets=offsets, bins=bins, intensity=intensity, config=XRDConfig(**grid))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenated index ranges ``starts[i] … starts[i] + lengths[i] - 1``, int64."""
    heads = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - heads, lengths)


def add_xrd_patterns(folder: Path, dataset, processes: int | None = None, progress: bool = True) -> Path:
    """Add the stored patterns to a map folder built without them, from the cached XRD features
    (:func:`ml.data.featurize.featurize` finds every shard cached and returns at once; a missing
    shard is simulated), then rewrite ``manifest.json`` (checksums and the ``xrd_patterns``
    entry) atomically. Nothing else of the map changes. About 14 s for mp2024 (141,659
    materials) from the cache.

    Args:
        folder: a complete map folder (``artifact_dir(dataset, model)``).
        dataset: the :class:`ml.data.datasets.Dataset` the map was built from.

    Returns:
        ``folder``.

    Raises:
        FileNotFoundError: ``folder`` holds no map.
    """
    import pandas as pd

    from ml.data.batches import align
    from ml.data.featurize import featurize, load_features

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise FileNotFoundError(f"no map in {folder}")
    featurize(dataset, "xrd", processes=processes, progress=progress)
    features = load_features(dataset, "xrd")
    ids = pd.read_parquet(folder / MATERIALS, columns=["material_id"])["material_id"].to_numpy()
    _, rows, pattern_rows = align(ids, features.material_ids)
    patterns = SparsePatterns.from_features(len(ids), rows, pattern_rows, **features.arrays)
    names = patterns.write(folder)
    record_in_manifest(folder, patterns, names)
    log.info("stored the XRD patterns of %d materials in %s", patterns.n_with_pattern, folder)
    return folder


def record_in_manifest(folder: Path, patterns: SparsePatterns, names: list[str]) -> None:
    """Add ``names`` (files of ``folder``) to the manifest's checksums and the patterns' entry,
    rewriting ``manifest.json`` atomically."""
    from ml.mapping.writer import rewrite_manifest  # the writer imports this module

    rewrite_manifest(folder, {MANIFEST_KEY: patterns.manifest_entry()}, names)
