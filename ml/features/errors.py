"""The error every featuriser raises (crystal graphs, XRD patterns, descriptors' callers catch it)."""


class FeaturisationError(ValueError):
    """A structure that cannot be turned into features (disordered, empty, too large …)."""
