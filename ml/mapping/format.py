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
| ``structures.sqlite`` | table ``structures(material_id, cif)``: every material's CIF text |
| ``xrd_offsets.npy``, ``xrd_bins.npy``, ``xrd_intensity.npy`` | every material's simulated powder XRD pattern, sparse (CSR: int64 offsets per row, int16 bin indices, float16 max-normalised intensities; the grid in the manifest's ``xrd_patterns``): :mod:`ml.mapping.xrd_patterns`. A map built without them gets them from the cached features with ``python -m ml build`` (no rebuild) |

Beside the maps of a dataset, ``data/artifacts/<dataset>/`` holds:

| file | content |
|---|---|
| ``vae_set.parquet`` | the crystal generator's set (:mod:`ml.generation.vae_set`): ``material_id``, ``formula``, ``family``, ``decile`` (formation-energy decile 0–9), ``formation_energy_per_atom`` (eV/atom), ``split``; written by ``python -m ml vae-data`` / ``train-vae``, derived once from the voxel store where missing |
| ``descriptors/<name>/`` | an exported baseline descriptor (below) |

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
XRD_OFFSETS = "xrd_offsets.npy"
XRD_BINS = "xrd_bins.npy"
XRD_INTENSITY = "xrd_intensity.npy"
#: The stored XRD patterns (:mod:`ml.mapping.xrd_patterns`), in the order offsets, bins, intensities.
XRD_PATTERN_FILES = (XRD_OFFSETS, XRD_BINS, XRD_INTENSITY)
REQUIRED_FILES = (MANIFEST, MATERIALS, EMBEDDINGS, INDEX, TSNE)  # plus STRUCTURES (below)
#: The crystal generator's set of a dataset, beside its maps (:func:`vae_set_path`).
VAE_SET = "vae_set.parquet"

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


def vae_set_path(dataset: str, root: Path | None = None) -> Path:
    """``<root>/<dataset>/vae_set.parquet``: the crystal generator's set of ``dataset`` (a registry
    name; root: ``data/artifacts``)."""
    return (root or get_settings().artifacts_dir) / dataset / VAE_SET


def descriptor_dir(dataset: str, name: str, root: Path | None = None) -> Path:
    """``<root>/<dataset>/descriptors/<name>``: an exported baseline descriptor (root: ``data/artifacts``)."""
    return (root or get_settings().artifacts_dir) / dataset / DESCRIPTORS_DIR / name


def descriptor_command(dataset: str, name: str) -> str:
    """The command that computes baseline descriptor ``name`` (a key of
    ``ml.descriptors.registry.DESCRIPTORS``) for ``dataset`` on the set its spec names, and exports it
    where the app reads it (:func:`descriptor_dir`)."""
    return f"python -m ml descriptors --dataset {dataset} --name {name}"
