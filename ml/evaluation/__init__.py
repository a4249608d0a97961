"""Evaluation: retrieval metrics, neighbours, concepts, probes, descriptor comparison, the generator's gates, the report."""
