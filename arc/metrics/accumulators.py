"""Metric accumulators (``torchmetrics.Metric``): batched, mergeable across processes (every state is a sum),
their ``compute`` a call of the pure statistic in ``arc.metrics.statistics``."""

from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from arc.metrics.statistics import ccds, clap_score, frechet_distance, kl_divergence, recall_coverage


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


class KLToReference(Metric):
    """Mean ``KL(gen || ref)`` (``arc.metrics.statistics.kl_divergence``) over generated items whose id has a
    reference distribution (stable-audio-metrics' PaSST references: ``arc.metrics.references``). Ids without a
    reference are counted in ``unmatched`` (this process's) and left out of the mean, never silently."""

    full_state_update = False

    def __init__(self, reference: dict[str, np.ndarray]):
        super().__init__()
        if not reference:
            raise ValueError("the reference set is empty")
        self.reference = reference
        self.unmatched: list[str] = []
        self.add_state("kl_sum", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, ids: list[str], probabilities: torch.Tensor) -> None:
        """Add generated items: their ids and (N, classes) probabilities."""
        if len(ids) != probabilities.shape[0]:
            raise ValueError(f"{len(ids)} ids for {probabilities.shape[0]} probability rows")
        matched = [(i, key) for i, key in enumerate(ids) if key in self.reference]
        self.unmatched += [key for key in ids if key not in self.reference]
        if matched:
            p = probabilities[[i for i, _ in matched]].detach().double().cpu().numpy()
            kl = kl_divergence(p, np.stack([self.reference[key] for _, key in matched]))
            self.kl_sum += float(kl.sum())
            self.count += len(matched)

    def compute(self) -> float:
        if self.count == 0:
            raise ValueError("no generated id has a reference: ids are file names without extension")
        return float(self.kl_sum / self.count)


class ClapScore(Metric):
    """Mean cosine similarity of paired audio and text embeddings (``arc.metrics.statistics.clap_score``)."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, audio_embeddings: torch.Tensor, text_embeddings: torch.Tensor) -> None:
        n = audio_embeddings.shape[0]
        self.total += clap_score(audio_embeddings.cpu().numpy(), text_embeddings.cpu().numpy()) * n
        self.count += n

    def compute(self) -> float:
        return float(self.total / self.count)


class CCDS(Metric):
    """CLAP Conditional Diversity Score (``arc.metrics.statistics.ccds``): one ``update`` per prompt with its K
    generations' embeddings; the mean over prompts."""

    full_state_update = False

    def __init__(self):
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("prompts", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, embeddings: torch.Tensor) -> None:
        """The (K >= 2, D) embeddings of one prompt's generations."""
        self.total += ccds([embeddings.detach().cpu().numpy()])
        self.prompts += 1

    def compute(self) -> float:
        return float(self.total / self.prompts)


class RecallCoverageToReference(Metric):
    """Recall and coverage (``arc.metrics.statistics.recall_coverage``, k nearest neighbours) of the embeddings
    seen by ``update`` against fixed reference embeddings. k-NN balls need every point, so the state is the
    embeddings themselves (gathered across processes by concatenation)."""

    full_state_update = False

    def __init__(self, reference: np.ndarray, k: int = 5):
        super().__init__()
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2 or len(reference) <= k:
            raise ValueError(f"need more than k = {k} reference embeddings (N, D), got shape {reference.shape}")
        self.reference, self.k = reference, k
        self.add_state("embeddings", [], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor) -> None:
        """Add a batch of (N, D) embeddings."""
        if embeddings.ndim != 2 or embeddings.shape[1] != self.reference.shape[1]:
            raise ValueError(f"expected (N, {self.reference.shape[1]}) embeddings, got {tuple(embeddings.shape)}")
        self.embeddings.append(embeddings.detach().to(torch.float64))

    def compute(self) -> tuple[float, float]:
        """``(recall, coverage)``."""
        return recall_coverage(self.reference, dim_zero_cat(self.embeddings).cpu().numpy(), self.k)
