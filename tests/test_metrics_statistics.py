"""The statistics of SPEC 6 against closed forms, hand computations and brute force."""

import math

import numpy as np
import pytest

from arc.metrics.statistics import (
    ccds,
    clap_score,
    embedding_statistics,
    frechet_distance,
    kl_divergence,
    matched_kl,
    recall_coverage,
)


def _fd_by_eigenvalues(mu1, s1, mu2, s2):
    """Tr((s1 s2)^(1/2)) as the sum of the square roots of the (real, non-negative) eigenvalues of s1 s2."""
    eig = np.linalg.eigvals(s1 @ s2).real.clip(min=0)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum())


@pytest.mark.parametrize("n, d", [(200, 16), (64, 32)])
def test_frechet_distance_matches_an_independent_computation(n, d):
    rng = np.random.default_rng(d)
    a, b = rng.normal(size=(n, d)), 0.5 + 1.3 * rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) / math.sqrt(d)
    stats = (*embedding_statistics(a), *embedding_statistics(b))
    assert frechet_distance(*stats) == pytest.approx(_fd_by_eigenvalues(*stats), rel=1e-6)


def test_frechet_distance_of_singular_covariances_takes_the_eps_path():
    rng = np.random.default_rng(0)
    mu1, s1 = embedding_statistics(rng.normal(size=(5, 12)))  # rank 4 < 12
    mu2, s2 = embedding_statistics(rng.normal(size=(5, 12)))
    fd = frechet_distance(mu1, s1, mu2, s2)
    eye = 1e-6 * np.eye(12)
    assert np.isfinite(fd)
    assert fd == pytest.approx(_fd_by_eigenvalues(mu1, s1 + eye, mu2, s2 + eye), rel=1e-4)


def test_frechet_distance_one_dimensional_closed_form():
    # N(m1, v1) vs N(m2, v2): (m1 - m2)^2 + (sqrt(v1) - sqrt(v2))^2
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1)


def test_kl_divergence_by_hand_and_zero_probability_terms():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.25, 0.5])
    by_hand = 2 * 0.5 * math.log(0.5 / (0.25 + 1e-6))  # the p = 0 term contributes nothing
    assert kl_divergence(p, q) == pytest.approx(by_hand, rel=1e-12)
    assert kl_divergence(q, q) == pytest.approx(-sum(x * math.log1p(1e-6 / x) for x in q), abs=1e-12)  # ~0


def test_matched_kl_averages_common_ids_and_reports_the_others():
    gen = {"a": np.array([0.9, 0.1]), "b": np.array([0.5, 0.5]), "extra": np.array([1.0, 0.0])}
    ref = {"a": np.array([0.5, 0.5]), "b": np.array([0.5, 0.5]), "gone": np.array([0.2, 0.8])}
    result = matched_kl(gen, ref)
    expected = (kl_divergence(gen["a"], ref["a"]) + kl_divergence(gen["b"], ref["b"])) / 2
    assert result.kl == pytest.approx(float(expected)) and result.matched == 2
    assert result.missing_generated == ("gone",) and result.unmatched_generated == ("extra",)
    with pytest.raises(ValueError, match="no id is in both"):
        matched_kl({"x": gen["a"]}, {"y": ref["a"]})


def test_clap_score_is_the_mean_cosine_of_pairs():
    audio = np.array([[1.0, 0.0], [3.0, 4.0]])
    text = np.array([[2.0, 0.0], [4.0, -3.0]])  # cosines 1 and 0
    assert clap_score(audio, text) == pytest.approx(0.5)


def test_ccds_by_hand_and_its_bounds():
    e = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # pair cosines 0, 1/sqrt2, 1/sqrt2
    assert ccds([e]) == pytest.approx(np.mean([1, 1 - 2**-0.5, 1 - 2**-0.5]))
    assert ccds([np.ones((3, 4))]) == pytest.approx(0.0, abs=1e-12)
    assert ccds([np.ones((2, 2)), np.eye(2)]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="K >= 2"):
        ccds([np.ones((1, 3))])


def _brute_recall_coverage(real, fake, k):
    def kth(points, i):
        return sorted(np.linalg.norm(points[i] - p) for j, p in enumerate(points) if j != i)[k - 1]

    fake_radii = [kth(fake, j) for j in range(len(fake))]
    real_radii = [kth(real, i) for i in range(len(real))]
    recall = np.mean([any(np.linalg.norm(r - f) < fake_radii[j] for j, f in enumerate(fake)) for r in real])
    coverage = np.mean([any(np.linalg.norm(r - f) < real_radii[i] for f in fake) for i, r in enumerate(real)])
    return recall, coverage


def test_recall_and_coverage_match_brute_force():
    rng = np.random.default_rng(3)
    real, fake = rng.normal(size=(40, 6)), 0.3 + 0.7 * rng.normal(size=(30, 6))
    assert recall_coverage(real, fake, k=5) == pytest.approx(_brute_recall_coverage(real, fake, 5))
    assert recall_coverage(real, real + 1e-9, k=5) == pytest.approx((1.0, 1.0))
    assert recall_coverage(real, real + 100.0, k=5) == (0.0, 0.0)
    with pytest.raises(ValueError, match="k = 5 needs more than 5"):
        recall_coverage(real[:5], fake, k=5)


def test_frechet_accumulator_in_batches_equals_the_statistic_on_all_embeddings():
    import torch

    from arc.metrics.accumulators import FrechetDistanceToReference

    rng = np.random.default_rng(7)
    gen, ref = 3.0 + rng.normal(size=(90, 8)), rng.normal(size=(120, 8))
    metric = FrechetDistanceToReference(*embedding_statistics(ref))
    for chunk in np.array_split(gen, 4):
        metric.update(torch.from_numpy(chunk).float())
    expected = frechet_distance(*embedding_statistics(gen.astype(np.float32)), *embedding_statistics(ref))
    assert metric.compute() == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match=r"expected \(N, 8\)"):
        metric.update(torch.zeros(3, 7))


def test_kl_clap_and_ccds_accumulators_equal_their_statistics():
    import torch

    from arc.metrics.accumulators import CCDS, ClapScore, KLToReference

    rng = np.random.default_rng(11)
    softmax = lambda z: np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)  # noqa: E731
    reference = {f"id{i}": p for i, p in enumerate(softmax(rng.normal(size=(6, 5))))}
    generated = softmax(rng.normal(size=(7, 5)))
    ids = [f"id{i}" for i in range(6)] + ["stray"]
    kl = KLToReference(reference)
    kl.update(ids[:3], torch.from_numpy(generated[:3]))
    kl.update(ids[3:], torch.from_numpy(generated[3:]))
    expected = matched_kl(dict(zip(ids, generated, strict=True)), reference)
    assert kl.compute() == pytest.approx(expected.kl) and kl.unmatched == ["stray"]

    audio, text = rng.normal(size=(10, 8)), rng.normal(size=(10, 8))
    score = ClapScore()
    score.update(torch.from_numpy(audio[:4]), torch.from_numpy(text[:4]))
    score.update(torch.from_numpy(audio[4:]), torch.from_numpy(text[4:]))
    assert score.compute() == pytest.approx(clap_score(audio, text))

    per_prompt = [rng.normal(size=(k, 8)) for k in (2, 3, 5)]
    diversity = CCDS()
    for e in per_prompt:
        diversity.update(torch.from_numpy(e))
    assert diversity.compute() == pytest.approx(ccds(per_prompt))


def test_recall_coverage_accumulator_in_batches_equals_brute_force():
    import torch

    from arc.metrics.accumulators import RecallCoverageToReference

    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(30, 4)), 0.5 + rng.normal(size=(25, 4))
    metric = RecallCoverageToReference(real, k=5)
    for chunk in np.array_split(fake, 3):
        metric.update(torch.from_numpy(chunk))
    assert metric.compute() == pytest.approx(_brute_recall_coverage(real, fake, 5))
    with pytest.raises(ValueError, match="more than k = 5"):
        RecallCoverageToReference(real[:5])
