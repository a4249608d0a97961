"""The built map as the app uses it: :class:`LoadedMap` reads a map like
:class:`ml.mapping.artifacts.MapArtifacts` (materials, coordinates, neighbours, CIFs, XRD patterns)
and places a new CIF on it (:mod:`ml.mapping.locate`, imported on first use: it loads torch and
the model).

Placing lives here, not on the reader, so that the reader never imports the locator (which reads
the map through the reader): :mod:`ml.mapping` has no import circle.
"""

from __future__ import annotations

from ml.mapping.artifacts import MapArtifacts


class LoadedMap(MapArtifacts):
    """A loaded map (:class:`~ml.mapping.artifacts.MapArtifacts`, same fields, same ``load``)
    that can also place a new CIF on itself."""

    def preload_locator(self) -> "LoadedMap":
        """Load now the model and t-SNE states that :meth:`locate` loads on first use
        (:func:`ml.mapping.locate.preload`).

        Returns:
            This map.

        Raises:
            ArtifactError: the map's model is missing or changed since the build.
        """
        from ml.mapping.locate import preload

        preload(self)
        return self

    def locate(self, cif_text: str, k: int = 10):
        """Place a new CIF on this map: see :func:`ml.mapping.locate.locate_cif` (checks the file first,
        then loads the model lazily); a disordered structure is placed by its ordered
        approximation, said in the result's ``notes``.

        Raises:
            ml.data.structures.CifError, ml.features.errors.FeaturisationError: unusable input, with a message
            for the user. ArtifactError: the model is missing or changed since the build.
        """
        from ml.mapping.locate import locate_cif

        return locate_cif(cif_text, self, k=k)
