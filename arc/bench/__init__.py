"""Benchmarks: they print numbers (``arc-bench``). ``generate``: generation per stage with the fast paths and
baselines; ``dit``, ``train_step``, ``metrics``, ``export``: one component each."""
