"""The artifact format of a built map: file names, the map views and table columns the app shows,
errors and folders (reader: :mod:`ml.mapping.artifacts`, writer: :mod:`ml.mapping.writer`).

A map lives in ``data/artifacts/<dataset>/<model>/``:

| file | content |
|---|---|
| ``manifest.json`` | dataset, model, counts, library versions, t-SNE settings, SHA-256 of every file |
| ``materials.parquet`` | one row per material: ``material_id``, ``formula``, ``elements``, ``split``, map coordinates ``x``, ``y`` (crystal-graph map) and ``x_xrd``, ``y_xrd`` (XRD map, NaN without a pattern), and the properties (units in :data:`ml.data.datasets.PROPERTY_UNITS`) |
| ``embeddings.npy`` | crystal-encoder embeddings, ``(n_materials, embedding_dim)`` float32 |
| ``index.faiss`` | exact Euclidean (L2) nearest-neighbour index over the embeddings |
| ``tsne.pkl`` | the fitted openTSNE ``TSNEEmbedding``, for placing new materials (``transform``) |
| ``xrd_embeddings.npy`` | XRD-encoder embeddings, ``(n_materials, embedding_dim)`` float32, NaN rows without a pattern (optional) |
| ``tsne_xrd.pkl`` | the fitted t-SNE of the XRD embeddings (optional) |

The builder (:mod:`ml.mapping.build`) writes the folder under a temporary name and renames it
when complete, so a half-written map is never loaded.
"""

from __future__ import annotations

from pathlib import Path

from ml.settings import get_settings

MANIFEST = "manifest.json"
MATERIALS = "materials.parquet"
EMBEDDINGS = "embeddings.npy"
INDEX = "index.faiss"
TSNE = "tsne.pkl"
STRUCTURES = "structures.sqlite"
XRD_EMBEDDINGS = "xrd_embeddings.npy"
XRD_TSNE = "tsne_xrd.pkl"
REQUIRED_FILES = (MANIFEST, MATERIALS, EMBEDDINGS, INDEX, TSNE)  # plus STRUCTURES (below)

#: Baseline descriptors (:mod:`ml.descriptors`) exported beside the maps of a dataset:
#: ``<artifacts>/<dataset>/descriptors/<name>/`` with ``values.npy`` ``(n, d)`` float32,
#: ``material_ids.npy`` ``(n,)`` str and ``manifest.json`` (label, citation, metric, coverage).
DESCRIPTORS_DIR = "descriptors"
DESCRIPTOR_VALUES = "values.npy"
DESCRIPTOR_IDS = "material_ids.npy"
DESCRIPTOR_MANIFEST = "manifest.json"

#: The maps a build draws: name → (label, x column, y column). Both share the materials
#: table, so every colour mode, search and click works on either.
MAP_VIEWS = {
    "crystal": ("Crystal-graph embedding", "x", "y"),
    "xrd": ("XRD embedding", "x_xrd", "y_xrd"),
}
DEFAULT_VIEW = "crystal"

#: Columns of every neighbour table, before the property columns.
NEIGHBOR_COLUMNS = ["rank", "material_id", "formula", "distance"]
#: Property columns appended to neighbour tables (those present in the map).
NEIGHBOR_PROPERTY_COLUMNS = [
    "formation_energy_per_atom",
    "band_gap",
    "total_magnetization",
    "density",
    "spacegroup_number",
    "crystal_system",
    "nsites",
    "nelements",
    "supercon_label",
]
MAX_NEIGHBORS = 1000
#: "No close match" (:attr:`MapArtifacts.close_match_distance`): this quantile of the distance from a
#: material to its own nearest neighbour, over a fixed sample of this many materials.
CLOSE_MATCH_QUANTILE, CLOSE_MATCH_SAMPLE = 0.99, 1000


class ArtifactError(RuntimeError):
    """A map is missing or incomplete."""


class UnknownMaterialError(KeyError):
    """A ``material_id`` that is not in the map."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0])


def artifact_dir(dataset: str, model: str, root: Path | None = None) -> Path:
    """``<root>/<dataset>/<model>`` (root: ``data/artifacts``)."""
    return (root or get_settings().artifacts_dir) / dataset / model


def descriptor_dir(dataset: str, name: str, root: Path | None = None) -> Path:
    """``<root>/<dataset>/descriptors/<name>``: an exported baseline descriptor (root: ``data/artifacts``)."""
    return (root or get_settings().artifacts_dir) / dataset / DESCRIPTORS_DIR / name


def descriptor_command(dataset: str, name: str) -> str:
    """The command that computes baseline descriptor ``name`` (a key of
    ``ml.descriptors.registry.DESCRIPTORS``) for ``dataset`` on the set its spec names, and exports it
    where the app reads it (:func:`descriptor_dir`)."""
    return f"python -m ml descriptors --dataset {dataset} --name {name}"
