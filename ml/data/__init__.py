"""Datasets (the raw mirror), train/val/test splits, CIF parsing, feature stores and the sharded featurisation cache."""
