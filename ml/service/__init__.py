"""What the app (``pages/``, ``components/``) calls in :mod:`ml`: the one door between them.

Importing it (or :mod:`ml.service.explorer`) imports no torch, pymatgen or scikit-learn: what
needs them is imported inside the functions that use them. What comes out is plain data
(DataFrames, arrays, dicts, text), never a model.

- :class:`LoadedMap` (:mod:`ml.service.loaded_map`): a built map (materials, coordinates,
  neighbours, CIFs, XRD patterns) and placing a new CIF on it.
- :mod:`ml.service.explorer`: the latent explorer of ``/generate`` (the crystal generator's
  jobs: decode a latent point, walk a path, the quality gates), plain dicts, CIF text and zip bytes.
- The names of the artifact format the app shows (views, neighbour columns, their labels).
"""

from ml.mapping.format import (
    DEFAULT_VIEW,
    MAP_VIEWS,
    MAX_NEIGHBORS,
    NEIGHBOR_COLUMNS,
    NEIGHBOR_PROPERTY_COLUMNS,
    ArtifactError,
    UnknownMaterialError,
    descriptor_command,
)
from ml.mapping.tables import column_label, table_csv
from ml.service.loaded_map import LoadedMap

__all__ = [
    "DEFAULT_VIEW",
    "MAP_VIEWS",
    "MAX_NEIGHBORS",
    "NEIGHBOR_COLUMNS",
    "NEIGHBOR_PROPERTY_COLUMNS",
    "ArtifactError",
    "LoadedMap",
    "UnknownMaterialError",
    "column_label",
    "descriptor_command",
    "table_csv",
]
