"""Neural networks of matmap. No module here imports pymatgen: featurisers turn structures
into tensors (:mod:`ml.features.graph`, :mod:`ml.features.xrd`), models take tensors."""
