"""What the app (``pages/``, ``components/``) calls in :mod:`ml`: the one door between them.

Importing it (or :mod:`ml.service.explorer`) imports no torch, pymatgen or scikit-learn: what
needs them is imported inside the functions that use them. What comes out is plain data
(DataFrames, arrays, dicts, text), never a model.

The app reads only built artifacts through it (``data/artifacts``; the disk caches it keeps
itself under ``data/cache``), never the data mirror.

- :class:`LoadedMap` (:mod:`ml.service.loaded_map`): a built map (materials, coordinates,
  neighbours, CIFs, the stored XRD patterns) and placing a new CIF on it.
- :mod:`ml.service.explorer`: the latent explorer of ``/generate`` (the crystal generator's
  jobs: decode a latent point, walk a path, the quality gates; the VAE set read from its
  artifact; results kept on the server), plain dicts, CIF text and zip bytes.
- :mod:`ml.service.concepts`: the concept forest of ``/concept`` (scikit-learn, imported when fitted).
- :mod:`ml.service.element_maps`: the per-element small maps of ``/elements`` as PNG bytes, cached on disk.
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
from ml.mapping.tables import column_label, plain_record, table_csv
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
    "plain_record",
    "table_csv",
]
