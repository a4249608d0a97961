"""The VAE's voxel store: the selection (:mod:`ml.generation.voxel_data`) voxelised once into
row-aligned arrays, cached under a hash of the data and voxel configurations."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ml.data.datasets import Dataset
from ml.generation.voxel_data import (
    VAEDataConfig,
    VAEDataError,
    _atomic_parquet,
    cache_dir,
    conventional_structures,
    select_vae_materials,
)
from ml.generation.voxels import VoxelConfig, VoxelizationError, voxelize
from ml.settings import get_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VoxelArrays:
    """The voxelised selection, row-aligned (``N`` materials, grid ``G = 32``).

    Attributes:
        material_ids: ``(N,)`` str.
        density: ``(N, G, G, G)`` float16 (read-only memory map when the whole store is loaded).
        species: ``(N, G, G, G)`` uint8 atomic numbers, 0 = empty.
        lattice: ``(N, 3)`` float32 cell lengths, Å.
        decile: ``(N,)`` int64 formation-energy decile 0–9 (condition; see :func:`one_hot_deciles`).
        split: ``(N,)`` ``"train" | "val" | "test"``.
        family: ``(N,)`` family names (:data:`FAMILIES`).
        n_sites: ``(N,)`` int64 number of atoms in each conventional cell (the generative model's
            site-count target).
        voxel_config: the :class:`ml.generation.voxels.VoxelConfig` the grids were made with.
    """

    material_ids: np.ndarray
    density: np.ndarray
    species: np.ndarray
    lattice: np.ndarray
    decile: np.ndarray
    split: np.ndarray
    family: np.ndarray = field(default=None)
    n_sites: np.ndarray = field(default=None)
    voxel_config: VoxelConfig = field(default_factory=VoxelConfig)

    def __len__(self) -> int:
        return len(self.material_ids)


def arrays_dir(dataset: Dataset, data_config: VAEDataConfig | None = None, voxel_config: VoxelConfig | None = None) -> Path:
    """Folder of the voxel arrays of one selection and one voxel configuration."""
    return cache_dir(dataset, data_config) / (voxel_config or VoxelConfig()).key()


def build_voxel_arrays(
    dataset: Dataset,
    data_config: VAEDataConfig | None = None,
    voxel_config: VoxelConfig | None = None,
    progress: bool = True,
) -> Path:
    """Voxelise the whole selection into the array store (built once; selection built if needed).

    Arrays are written to disk-backed ``.npy`` files as they are filled (low memory), then the
    folder is completed atomically by writing ``meta.json`` last.

    Returns:
        The folder holding ``density.npy``, ``species.npy``, ``lattice.npy``, ``decile.npy``,
        ``index.parquet`` and ``meta.json``.

    Raises:
        VAEDataError: the selection is empty; VoxelizationError: a selected cell is not orthogonal.
    """
    voxel_config = voxel_config or VoxelConfig()
    folder = arrays_dir(dataset, data_config, voxel_config)
    if (folder / "meta.json").is_file():
        return folder
    table = select_vae_materials(dataset, data_config, progress=progress)
    if table.empty:
        raise VAEDataError("the VAE selection is empty")
    folder.mkdir(parents=True, exist_ok=True)
    n, g = len(table), voxel_config.grid_size
    started = time.perf_counter()
    density = np.lib.format.open_memmap(folder / "density.npy.tmp", mode="w+", dtype=np.float16, shape=(n, g, g, g))
    species = np.lib.format.open_memmap(folder / "species.npy.tmp", mode="w+", dtype=np.uint8, shape=(n, g, g, g))
    lattice = np.zeros((n, 3), dtype=np.float32)
    row_of = {m: i for i, m in enumerate(table["material_id"])}
    done = 0
    for material_id, structure in tqdm(
        conventional_structures(dataset, data_config), total=n, desc="voxelising", unit="crystal", disable=not progress
    ):
        sample = voxelize(structure, voxel_config)
        i = row_of[material_id]
        density[i], species[i], lattice[i] = sample.density, sample.species, sample.lattice
        done += 1
    if done != n:
        raise VoxelizationError(f"{n - done} selected materials have no stored conventional cell")
    density.flush()
    species.flush()
    del density, species
    os.replace(folder / "density.npy.tmp", folder / "density.npy")
    os.replace(folder / "species.npy.tmp", folder / "species.npy")
    np.save(folder / "lattice.npy", lattice)
    np.save(folder / "decile.npy", table["decile"].to_numpy(np.int64))
    _atomic_parquet(table[["material_id", "split", "family", "nsites"]], folder / "index.parquet")
    meta = {"voxel_config": asdict(voxel_config), "n": n, "seconds": round(time.perf_counter() - started, 1)}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2))
    return folder


def load_voxel_arrays(
    dataset: Dataset | str,
    split: str | None = None,
    data_config: VAEDataConfig | None = None,
    voxel_config: VoxelConfig | None = None,
) -> VoxelArrays:
    """The voxel arrays of a built store, all materials (memory-mapped) or one split (in memory).

    Args:
        dataset: the dataset the store was built from (its cache), or its name: the store the
            build published among the artifacts (:func:`published_store`; no mirror read).
        split: ``"train"``, ``"val"``, ``"test"`` or ``None`` for all.

    Raises:
        VAEDataError: the store is not built (run ``python -m ml vae-data``), or an unknown split.
    """
    voxel_config = voxel_config or VoxelConfig()
    if isinstance(dataset, str):
        folder = published_store(dataset, voxel_config)
        selection_path = folder / "selection.parquet"
    else:
        folder = arrays_dir(dataset, data_config, voxel_config)
        selection_path = cache_dir(dataset, data_config) / "selection.parquet"
        if not (folder / "meta.json").is_file():
            raise VAEDataError(
                f"no VAE voxel arrays for {dataset.name} yet: run `python -m ml vae-data --dataset {dataset.name}`"
            )
    if split not in (None, "train", "val", "test"):
        raise VAEDataError(f"split must be train, val, test or None, got {split!r}")
    index = pd.read_parquet(folder / "index.parquet")
    if "nsites" not in index:  # a store built before the site counts were kept: take them from the selection
        selection = pd.read_parquet(selection_path)
        index["nsites"] = selection.set_index("material_id").loc[index["material_id"], "nsites"].to_numpy()
    rows = slice(None) if split is None else np.flatnonzero(index["split"].to_numpy() == split)

    def take(name: str) -> np.ndarray:
        array = np.load(folder / f"{name}.npy", mmap_mode="r")
        return array if split is None else np.ascontiguousarray(array[rows])

    return VoxelArrays(
        material_ids=index["material_id"].to_numpy(str)[rows],
        density=take("density"),
        species=take("species"),
        lattice=take("lattice"),
        decile=take("decile"),
        split=index["split"].to_numpy(str)[rows],
        family=index["family"].to_numpy(str)[rows],
        n_sites=index["nsites"].to_numpy(np.int64)[rows],
        voxel_config=voxel_config,
    )


# --------------------------------------------------------------------------- the store the app reads


def published_store_dir(dataset: str, voxel_config: VoxelConfig | None = None) -> Path:
    """``<artifacts>/<dataset>/vae_store/<voxel config key>/``: the voxel store the app's
    generative model reads, with the selection table beside the arrays."""
    return get_settings().artifacts_dir / dataset / "vae_store" / (voxel_config or VoxelConfig()).key()


def publish_voxel_store(source: Path, dataset: str, voxel_config: VoxelConfig | None = None) -> Path:
    """Publish the built store ``source`` (an :func:`arrays_dir`; its selection is the parent's
    ``selection.parquet``) as the artifact :func:`published_store_dir`: hard links, so no byte is
    copied (copies across file systems), swapped in whole; returns the folder.

    Raises:
        VAEDataError: ``source`` is not a complete store.
    """
    if not (source / "meta.json").is_file():
        raise VAEDataError(f"{source} is not a complete voxel store (no meta.json)")
    target = published_store_dir(dataset, voxel_config)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in [*sorted(source.glob("*.npy")), source / "index.parquet", source.parent / "selection.parquet",
                 source / "meta.json"]:  # meta.json last: the mark of a complete store
        try:
            os.link(path, tmp / path.name)
        except OSError:  # another file system, or no hard links there
            shutil.copy2(path, tmp / path.name)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def published_store(dataset: str, voxel_config: VoxelConfig | None = None) -> Path:
    """The published store of ``dataset`` (:func:`published_store_dir`). A data folder built before
    stores were published gets it once from the newest complete store of that voxel
    configuration under ``<cache>/vae/<dataset>/`` (found by a folder listing: no mirror read).

    Raises:
        VAEDataError: no store of ``dataset`` is built (the message says the command).
    """
    voxel_config = voxel_config or VoxelConfig()
    folder = published_store_dir(dataset, voxel_config)
    if (folder / "meta.json").is_file():
        return folder
    built = newest_built_store(dataset, voxel_config.key())
    if built is None:
        raise VAEDataError(f"no VAE voxel arrays for {dataset} yet: run `python -m ml vae-data --dataset {dataset}`")
    log.info("publishing the voxel store %s as %s", built, folder)
    return publish_voxel_store(built, dataset, voxel_config)


def newest_built_store(dataset: str, voxel_key: str = "*", cache_dir: Path | None = None) -> Path | None:
    """The most recently built complete voxel store of ``dataset`` in the cache (a folder
    ``<cache>/vae/<dataset>/<selection>/<voxel key>/`` with ``meta.json``), found by a folder
    listing without the mirror; ``voxel_key`` limits it to one voxel configuration. ``None``
    when there is none."""
    root = (cache_dir or get_settings().cache_dir) / "vae" / dataset
    built = sorted(root.glob(f"*/{voxel_key}/meta.json"), key=lambda p: p.stat().st_mtime) if root.is_dir() else []
    return built[-1].parent if built else None


def voxel_store_published(dataset: str, voxel_config: VoxelConfig | None = None) -> bool:
    """Has ``python -m ml vae-data`` written what the app reads for ``dataset``: the published store
    (:func:`published_store_dir`, complete) and the VAE set (:func:`ml.mapping.format.vae_set_path`)?"""
    from ml.mapping.format import vae_set_path

    return (published_store_dir(dataset, voxel_config) / "meta.json").is_file() and vae_set_path(dataset).is_file()
