"""Metric accumulators (``torchmetrics.Metric``): batched, mergeable across processes (every state is a sum),
their ``compute`` a call of the pure statistic in ``arc.metrics.statistics``."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric

from arc.metrics.statistics import frechet_distance


class FrechetDistanceToReference(Metric):
    """Fréchet distance between the embeddings seen by ``update`` and a reference ``(mu, sigma)`` (e.g. the
    ``mu_ref`` / ``sigma_ref`` of a stable-audio-metrics ``.npz``).

    Keeps ``n``, ``sum_i e_i`` and ``sum_i e_i e_i^T`` in float64, so batches and processes merge by summation;
    ``compute`` forms the mean and the unbiased covariance ``(sum e e^T - n mu mu^T) / (n - 1)``.
    """

    full_state_update = False

    def __init__(self, mu_ref: np.ndarray, sigma_ref: np.ndarray):
        super().__init__()
        mu_ref, sigma_ref = np.asarray(mu_ref, np.float64), np.asarray(sigma_ref, np.float64)
        dim = mu_ref.shape[0]
        if mu_ref.ndim != 1 or sigma_ref.shape != (dim, dim):
            raise ValueError(f"reference shapes disagree: mu {mu_ref.shape}, sigma {sigma_ref.shape}")
        self.mu_ref, self.sigma_ref = mu_ref, sigma_ref
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("outer", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, embeddings: torch.Tensor) -> None:
        """Add a batch of (N, D) embeddings."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.total.shape[0]:
            raise ValueError(f"expected (N, {self.total.shape[0]}) embeddings, got {tuple(embeddings.shape)}")
        e = embeddings.detach().to(torch.float64)
        self.count += e.shape[0]
        self.total += e.sum(dim=0)
        self.outer += e.T @ e

    def compute(self) -> float:
        n = float(self.count)
        if n < 2:
            raise ValueError(f"the Fréchet distance needs at least 2 embeddings, got {n:.0f}")
        mu = (self.total / n).cpu().numpy()
        sigma = (self.outer.cpu().numpy() - n * np.outer(mu, mu)) / (n - 1)
        return frechet_distance(mu, sigma, self.mu_ref, self.sigma_ref)
