"""Baseline descriptors (Ewald, sine Coulomb, CrystalNN, CHGNet): featurisers, their registry, cached computation, export to the app."""
