"""Probe metrics: validated on real tones (near 100 %), white noise (chance) and closed forms."""

import numpy as np
import pytest
from scipy import signal

from arc.data.tones import ToneAttributes, TonesDataset
from arc.metrics.probes import attribute_accuracy, measure_attributes, probe_fd, probe_report, spectral_embedding
from arc.metrics.statistics import ccds, embedding_statistics, frechet_distance

SAMPLE_RATE = 16000
NUM_SAMPLES = 16000


def _tones(size: int, seed: int, sample_rate: int = SAMPLE_RATE, num_samples: int = NUM_SAMPLES):
    dataset = TonesDataset(size=size, sample_rate=sample_rate, num_samples=num_samples, seed=seed)
    items = [dataset[i] for i in range(size)]
    return [item["audio"].numpy() for item in items], [item["prompt"] for item in items]


@pytest.fixture(scope="module")
def real_tones():
    return _tones(96, seed=0)


@pytest.fixture(scope="module")
def white_noise():
    rng = np.random.default_rng(123)
    return [np.clip(0.3 * rng.standard_normal((2, NUM_SAMPLES)), -1, 1) for _ in range(64)]


def test_real_tones_score_near_perfect(real_tones):
    accuracy = attribute_accuracy(*real_tones, SAMPLE_RATE)
    assert set(accuracy) == {"waveform", "pitch", "envelope", "pan", "all", "mean"}
    assert all(value >= 0.9 for value in accuracy.values()), accuracy


@pytest.mark.parametrize(("sample_rate", "num_samples"), [(8000, 8000), (44100, 44100), (16000, 8192)])
def test_real_tones_score_near_perfect_at_other_rates_and_lengths(sample_rate, num_samples):
    accuracy = attribute_accuracy(*_tones(16, seed=5, sample_rate=sample_rate, num_samples=num_samples), sample_rate)
    assert all(value >= 0.9 for value in accuracy.values()), accuracy


def test_white_noise_scores_at_chance(real_tones, white_noise):
    prompts = real_tones[1][: len(white_noise)]
    accuracy = attribute_accuracy(white_noise, prompts, SAMPLE_RATE)
    # Chance is 1/4 (waveform) and 1/3 (the others); "all" by chance is 1/108.
    assert accuracy["all"] <= 0.1 and accuracy["mean"] <= 0.45, accuracy
    tonal = [i for i, prompt in enumerate(prompts) if "noise" not in prompt]
    assert (
        attribute_accuracy([white_noise[i] for i in tonal], [prompts[i] for i in tonal], SAMPLE_RATE)["waveform"]
        <= 0.1
    )


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda t: np.sin(2 * np.pi * 300 * t), "a mid sine tone, steady, panned centre"),
        (lambda t: signal.square(2 * np.pi * 150 * t), "a low square tone, steady, panned centre"),
        (lambda t: signal.sawtooth(2 * np.pi * 800 * t), "a high sawtooth tone, steady, panned centre"),
    ],
)
def test_measures_signals_not_made_by_the_renderer(make, expected):
    t = np.arange(NUM_SAMPLES) / SAMPLE_RATE
    mono = 0.5 * make(t)
    assert measure_attributes(np.stack([mono, mono]), SAMPLE_RATE).caption() == expected
    fading_left = np.stack([mono, 0.1 * mono]) * np.exp(-3 * t)
    assert measure_attributes(fading_left, SAMPLE_RATE) == ToneAttributes.from_caption(
        expected.replace("steady", "fading").replace("centre", "left")
    )


def test_measure_handles_silence_and_rejects_mono():
    assert isinstance(measure_attributes(np.zeros((2, NUM_SAMPLES)), SAMPLE_RATE), ToneAttributes)
    with pytest.raises(ValueError, match="stereo"):
        measure_attributes(np.zeros((1, NUM_SAMPLES)), SAMPLE_RATE)


def test_attribute_accuracy_rejects_length_mismatch(real_tones):
    with pytest.raises(ValueError, match="as many clips as prompts"):
        attribute_accuracy(real_tones[0][:3], real_tones[1][:2], SAMPLE_RATE)


def test_frechet_distance_matches_1d_closed_form():
    m1, s1, m2, s2 = 0.3, 2.0, -1.2, 0.5
    expected = (m1 - m2) ** 2 + s1 + s2 - 2 * np.sqrt(s1 * s2)
    assert frechet_distance(np.array([m1]), np.array([[s1]]), np.array([m2]), np.array([[s2]])) == pytest.approx(
        expected
    )


def test_frechet_distance_matches_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    var1, var2 = rng.uniform(0.1, 2, size=5), rng.uniform(0.1, 2, size=5)
    expected = np.sum((mu1 - mu2) ** 2 + var1 + var2 - 2 * np.sqrt(var1 * var2))
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected)


def test_frechet_distance_of_identical_statistics_is_zero():
    rng = np.random.default_rng(1)
    mu, sigma = embedding_statistics(rng.normal(size=(50, 8)))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-8


def test_frechet_distance_stays_finite_for_singular_covariances():
    rng = np.random.default_rng(2)
    mu1, sigma1 = embedding_statistics(rng.normal(size=(4, 10)))  # rank 3 < 10
    mu2, sigma2 = embedding_statistics(rng.normal(size=(4, 10)))
    assert np.isfinite(frechet_distance(mu1, sigma1, mu2, sigma2))


def test_embedding_statistics_are_mean_and_unbiased_covariance():
    mu, sigma = embedding_statistics(np.array([[0.0, 1.0], [2.0, 5.0]]))
    np.testing.assert_allclose(mu, [1.0, 3.0])
    np.testing.assert_allclose(sigma, [[2.0, 4.0], [4.0, 8.0]])  # divided by n - 1 = 1


def test_spectral_embedding_is_fixed_and_level_invariant(real_tones):
    audio = real_tones[0][0]
    embedding = spectral_embedding(audio, SAMPLE_RATE)
    assert embedding.shape == (32,) and np.isfinite(embedding).all()
    np.testing.assert_array_equal(embedding, spectral_embedding(audio, SAMPLE_RATE))
    np.testing.assert_allclose(spectral_embedding(0.5 * audio, SAMPLE_RATE), embedding, atol=1e-9)
    assert np.isfinite(spectral_embedding(np.zeros((2, NUM_SAMPLES)), SAMPLE_RATE)).all()


def test_probe_fd_separates_real_tones_from_noise(real_tones, white_noise):
    other_real, _ = _tones(64, seed=1)
    real_vs_real = probe_fd(real_tones[0][:64], other_real, SAMPLE_RATE)
    real_vs_noise = probe_fd(white_noise, other_real, SAMPLE_RATE)
    assert 0 <= real_vs_real < 0.3 * real_vs_noise, (real_vs_real, real_vs_noise)


def test_ccds_bounds():
    same = np.tile(np.array([[1.0, 2.0, 3.0]]), (4, 1))
    orthogonal = np.eye(3)
    assert ccds([same]) == pytest.approx(0.0, abs=1e-12)
    assert ccds([orthogonal]) == pytest.approx(1.0)
    assert ccds([same, orthogonal]) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="K >= 2"):
        ccds([np.ones((1, 3))])


def test_probe_report_keys(real_tones):
    audios, prompts = real_tones
    report = probe_report(audios[:12], prompts[:12], SAMPLE_RATE, ref_audios=audios[12:24])
    accuracy_keys = {f"acc_{name}" for name in ("waveform", "pitch", "envelope", "pan", "all", "mean")}
    assert set(report) == accuracy_keys | {"fd"}  # 12 items of 108 captions: no prompt repeats here
    repeated = probe_report(audios[:4] * 2, prompts[:4] * 2, SAMPLE_RATE)
    assert set(repeated) == accuracy_keys | {"diversity"}
    assert repeated["diversity"] == pytest.approx(0.0, abs=1e-9)
    assert all(np.isfinite(value) for value in report.values())


def test_clipping_is_full_scale_in_the_written_wav(real_tones, tmp_path):
    import torch

    from arc.audio_io import read_clip, write_wav
    from arc.metrics.probes import is_clipped

    audios, _ = real_tones
    loud = 1.5 * audios[0] / np.abs(audios[0]).max()  # a generated peak past full scale, cut by the WAV writer
    for audio, clipped in ((audios[0], False), (loud, True), (0.999 * loud / 1.5, False)):
        write_wav(tmp_path / "clip.wav", torch.from_numpy(audio), SAMPLE_RATE)
        assert is_clipped(read_clip(tmp_path / "clip.wav")[0]) is clipped
    assert not any(is_clipped(a) for a in audios)  # every rendering peaks at <= PEAK_AMPLITUDE[1] (0.45)
