"""The statistics behind arc's metrics (SPEC 6), each written once, as pure functions of embeddings or class
probabilities (NumPy, float64). The embedding models and the accumulators that feed them live beside this file;
the tones probes use the same functions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import linalg


def embedding_statistics(embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``mu = sum_i e_i / n`` and unbiased covariance ``sigma = sum_i (e_i - mu)(e_i - mu)^T / (n - 1)``."""
    e = np.asarray(embeddings, dtype=np.float64)
    if e.ndim != 2 or e.shape[0] < 2:
        raise ValueError(f"expected embeddings of shape (n >= 2, D), got shape {e.shape}")
    return e.mean(axis=0), np.cov(e, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):

    ``FD = |mu1 - mu2|^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))``.

    stable-audio-metrics' recipe (from pytorch-fid): the root is ``scipy.linalg.sqrtm`` (the reference passes
    ``disp=False``, which only adds an error estimate to the return value and is deprecated in SciPy 1.16);
    ``eps I`` is added to both covariances only when that root is not finite; the imaginary part is dropped when
    the diagonal's is below 1e-3, and a larger one raises.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"shapes disagree: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {sigma1.shape}, sigma2 {sigma2.shape}"
        )
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = eps * np.eye(mu1.size)
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"matrix square root has a large imaginary part {np.abs(covmean.imag).max():.3g}")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def kl_divergence(p_gen: np.ndarray, p_ref: np.ndarray) -> np.ndarray:
    """``KL(gen || ref) = sum_c p_gen log(p_gen / (p_ref + 1e-6))`` over the last axis (stable-audio-metrics'
    PaSST KL: ``kl_div(log(p_ref + 1e-6), p_gen, reduction="sum")``); terms with ``p_gen = 0`` are 0."""
    p, q = np.asarray(p_gen, dtype=np.float64), np.asarray(p_ref, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"probability shapes disagree: {p.shape} vs {q.shape}")
    terms = np.where(p > 0, p * (np.log(np.where(p > 0, p, 1.0)) - np.log(q + 1e-6)), 0.0)
    return terms.sum(axis=-1)


@dataclass(frozen=True)
class MatchedKL:
    """Mean KL over the ids both sides have, and the ids that only one side has (reported, never dropped)."""

    kl: float
    matched: int
    missing_generated: tuple[str, ...]  # reference ids without a generated file
    unmatched_generated: tuple[str, ...]  # generated ids without a reference


def matched_kl(generated: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray]) -> MatchedKL:
    """``kl_divergence`` per id, matched by id (file name), averaged over the ids both have."""
    common = sorted(generated.keys() & reference.keys())
    if not common:
        raise ValueError(
            f"no id is in both the generated ({len(generated)}) and the reference ({len(reference)}) sets: ids are "
            "file names without extension"
        )
    kl = kl_divergence(np.stack([generated[i] for i in common]), np.stack([reference[i] for i in common]))
    return MatchedKL(
        float(kl.mean()),
        len(common),
        tuple(sorted(reference.keys() - generated.keys())),
        tuple(sorted(generated.keys() - reference.keys())),
    )


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clap_score(audio_embeddings: np.ndarray, text_embeddings: np.ndarray) -> float:
    """Mean cosine similarity of paired (N, D) audio and text embeddings (each L2-normalised)."""
    a, t = np.asarray(audio_embeddings), np.asarray(text_embeddings)
    if a.shape != t.shape or a.ndim != 2:
        raise ValueError(f"expected paired (N, D) embeddings, got {a.shape} and {t.shape}")
    return float((_unit(a) * _unit(t)).sum(axis=1).mean())


def ccds(embeddings_per_prompt: Sequence[np.ndarray]) -> float:
    """CLAP Conditional Diversity Score, as arc defines it: for each prompt's K >= 2 generations (different
    seeds), the mean over pairs i < j of ``1 - cos(e_i, e_j)``; then the mean over prompts. 0 when all renderings
    of a prompt coincide, 1 when they are orthogonal; higher is more diverse.

    The ARC paper names CCDS but its exact formula was not verified against the authors' code: this function is
    the one place to change if it differs. On CLAP audio embeddings it is CCDS; on another embedding (the tones
    probes' spectral one) it is the same statistic.
    """
    if not embeddings_per_prompt:
        raise ValueError("need at least one prompt's embeddings")
    per_prompt = []
    for e in embeddings_per_prompt:
        e = np.asarray(e, dtype=np.float64)
        if e.ndim != 2 or e.shape[0] < 2:
            raise ValueError(f"each prompt needs embeddings of shape (K >= 2, D), got shape {e.shape}")
        unit = _unit(e)
        i, j = np.triu_indices(e.shape[0], k=1)
        per_prompt.append(np.mean(1 - (unit[i] * unit[j]).sum(axis=1)))
    return float(np.mean(per_prompt))


def _kth_neighbour_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row of ``x`` to its k-th nearest other row."""
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    return np.partition(d, k, axis=1)[:, k]  # column 0 of the sorted row is the point itself (distance 0)


def recall_coverage(real: np.ndarray, fake: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Recall (Kynkäänniemi et al. 2019) and coverage (Naeem et al. 2020) of ``fake`` against ``real`` (N, D)
    embeddings, with k-nearest-neighbour balls (k = 5 in the ARC paper, on PaSST embeddings):

    - recall: the fraction of real points inside the k-NN ball of at least one fake point (balls among fakes);
    - coverage: the fraction of real points whose own k-NN ball (among reals) holds at least one fake point.
    """
    real, fake = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f"expected (N, D) embeddings of equal D, got {real.shape} and {fake.shape}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"k = {k} needs more than {k} real and fake points, got {len(real)} and {len(fake)}")
    real_fake = np.linalg.norm(real[:, None] - fake[None], axis=-1)  # (N_real, N_fake)
    recall = (real_fake < _kth_neighbour_distance(fake, k)[None, :]).any(axis=1).mean()
    coverage = (real_fake.min(axis=1) < _kth_neighbour_distance(real, k)).mean()
    return float(recall), float(coverage)
