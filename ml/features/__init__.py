"""Featurisers: crystal graphs, atom features, XRD patterns (pymatgen reference and our fast simulator) and their errors."""
