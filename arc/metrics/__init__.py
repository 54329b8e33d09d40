"""Evaluation: embedding models, the statistics of SPEC 6 (each written once) and metric accumulators."""
