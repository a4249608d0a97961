"""matmap's offline package: datasets, features, models, training, map building.

The app reaches this package through :mod:`ml.service` only (and :mod:`ml.settings`), which does
not import torch. Everything else here is for the command line (``python -m ml``).
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
