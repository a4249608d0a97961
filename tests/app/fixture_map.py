"""A small real map for the app's tests, built by the real pipeline with the committed model.

The first :data:`N_MATERIALS` materials of ``mp2024`` with at most :data:`MAX_SITES` sites
(real CIFs, properties and SuperCon labels from the shared mirror) go through
:func:`ml.mapping.build.build_map` with ``data/models/cmml-cpu/model.pt``: crystal graphs, CMML
embeddings, openTSNE, faiss index. ``LoadedMap.locate`` (:mod:`ml.service`) is the real one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ml.settings import REPO_ROOT

DATASET = "mp2024-fixture"
MODEL = "cmml-cpu"
COMMITTED_MODEL = REPO_ROOT / "data" / "models" / MODEL / "model.pt"
N_MATERIALS = 300
MAX_SITES = 40


def build_fixture_map(data_dir: Path, n: int = N_MATERIALS) -> Path:
    """Build the map of ``n`` small mp2024 materials under ``<data_dir>/artifacts/``.

    Returns:
        The artifact folder ``<data_dir>/artifacts/mp2024-fixture/cmml-cpu``.
    """
    from ml.mapping.build import build_map
    from ml.settings import get_settings

    model_dir = Path(data_dir) / "models" / MODEL
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(COMMITTED_MODEL, model_dir / "model.pt")
    previous = os.environ.get("MATMAP_DATA_DIR")
    os.environ["MATMAP_DATA_DIR"] = str(data_dir)
    get_settings.cache_clear()
    try:
        return build_map(fixture_dataset(n), model=MODEL, processes=1, progress=False)
    finally:
        if previous is None:
            os.environ.pop("MATMAP_DATA_DIR", None)
        else:
            os.environ["MATMAP_DATA_DIR"] = previous
        get_settings.cache_clear()


def fixture_dataset(n: int = N_MATERIALS):
    """The ``mp2024-fixture`` dataset: the first ``n`` mp2024 materials with at most
    :data:`MAX_SITES` sites (an ``ml.data.datasets.Dataset`` reading the mirror)."""
    from ml.data.datasets import get_dataset

    mp2024 = get_dataset("mp2024")
    small = mp2024.properties.index[mp2024.properties["nsites"] <= MAX_SITES][:n]
    subset = mp2024.subset("fixture", set(small))
    assert subset.name == DATASET
    return subset
