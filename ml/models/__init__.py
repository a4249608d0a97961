"""Neural networks of matmap. No module here imports pymatgen: featurisers turn structures
into tensors (:mod:`ml.graph`, :mod:`ml.xrd`), models take tensors."""
