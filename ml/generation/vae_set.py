"""The crystal generator's set as a small artifact the app reads: ``data/artifacts/<dataset>/vae_set.parquet``.

The app needs to know which materials the VAE knows (the material page's "Generate around this
compound" link, the search of ``/generate``) without reading the mirror or the voxel store. This
table of :data:`COLUMNS` (one row per crystal of the set, selection order; ~6,600 rows, ~0.2 MB
for mp2024) is written by the steps that build the set (``python -m ml vae-data`` and
``python -m ml train-vae``: :func:`write_vae_set`).

Installs whose voxel store was built before the table existed need no rebuild: the first reader
(:func:`load_vae_set`) derives the table once from what is built (:func:`derive_vae_set`): the
voxel store's ``index.parquet`` (material_id, split, family) and ``decile.npy``, and the
selection's ``selection.parquet`` beside it (formula, formation energy), under
``data/cache/vae/<dataset>/``, found by a folder listing (no mirror needed). It writes the table
where the app reads it from then on.

Imports pandas and numpy only.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ml.mapping.format import vae_set_path

log = logging.getLogger(__name__)

#: Columns of the table: formation energy in eV/atom, ``decile`` its decile 0–9 (the VAE's condition).
COLUMNS = ["material_id", "formula", "family", "decile", "formation_energy_per_atom", "split"]


class VAESetMissing(FileNotFoundError):
    """Neither the table nor a voxel store to derive it from exists.

    Attributes:
        command: the command that builds the set.
    """

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


def write_vae_set(selection: pd.DataFrame, dataset: str, root: Path | None = None) -> Path:
    """Write the :data:`COLUMNS` of ``selection`` (``ml.generation.voxel_data.select_vae_materials``'s
    table, or :func:`derive_vae_set`'s) as the set of ``dataset`` (a registry name), atomically.

    Returns:
        The file written.

    Raises:
        KeyError: a column of :data:`COLUMNS` is missing.
    """
    path = vae_set_path(dataset, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    selection[COLUMNS].reset_index(drop=True).to_parquet(tmp, index=False)
    os.replace(tmp, path)
    return path


def write_vae_set_of(dataset) -> Path:
    """Write the set of ``dataset`` (an ``ml.data.datasets.Dataset``) from its built selection
    (cached; :func:`ml.generation.voxel_data.select_vae_materials` builds it when missing)."""
    from ml.generation.voxel_data import select_vae_materials

    return write_vae_set(select_vae_materials(dataset, progress=False), dataset.name)


def derive_vae_set(dataset: str, cache_dir: Path | None = None) -> pd.DataFrame:
    """The set of ``dataset`` from its built voxel store (module docstring), without the mirror.

    A complete voxel store is a folder ``<cache>/vae/<dataset>/<selection>/<voxel config>/`` with
    ``meta.json``; when a dataset has several (a changed selection or voxel configuration), the
    most recently built one is used, as the last ``vae-data`` / ``train-vae`` built it.

    Returns:
        :data:`COLUMNS`, in the store's row order.

    Raises:
        VAESetMissing: no voxel store of ``dataset`` is built.
    """
    from ml.generation.voxel_arrays import newest_built_store  # here, not at the top: this module stays light to import

    store = newest_built_store(dataset, cache_dir=cache_dir)
    if store is None:
        raise VAESetMissing(f"the VAE set of {dataset} is not selected yet", f"python -m ml vae-data --dataset {dataset}")
    table = pd.read_parquet(store / "index.parquet", columns=["material_id", "split", "family"])
    table["decile"] = np.load(store / "decile.npy")
    selection = pd.read_parquet(store.parent / "selection.parquet", columns=["material_id", "formula",
                                                                             "formation_energy_per_atom"])
    table = table.merge(selection, on="material_id", how="left", validate="one_to_one")
    return table[COLUMNS]


def load_vae_set(dataset: str) -> pd.DataFrame:
    """The set of ``dataset`` (:data:`COLUMNS`): the artifact, else derived once from the voxel
    store and written as the artifact (when the data folder is read-only, kept in memory only and
    said in the log).

    Raises:
        VAESetMissing: neither the artifact nor a voxel store exists.
    """
    path = vae_set_path(dataset)
    if path.is_file():
        return pd.read_parquet(path)
    table = derive_vae_set(dataset)
    try:
        write_vae_set(table, dataset)
        log.info("derived the VAE set of %s (%d crystals) from its voxel store into %s", dataset, len(table), path)
    except OSError as error:
        log.warning("derived the VAE set of %s from its voxel store but could not write %s (%s)", dataset, path, error)
    return table
