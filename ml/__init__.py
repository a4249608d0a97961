"""matmap's offline package: datasets, features, models, training, map building.

The app reads what this package writes through :mod:`ml.mapping.artifacts` only, which does not
import torch. Everything else here is for the command line (``python -m ml``).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
