"""PaSST: the Kaldi mel banks against Kaldi's own loop, the front end on a sine, the official key layout
(159 tensors, written here from hear21passt's module tree with random values), stable-audio-metrics' windows."""

import math

import numpy as np
import pytest
import torch

from arc.metrics.audio import peak_normalize
from arc.metrics.passt import (
    Passt,
    PasstClassifier,
    PasstFrontEnd,
    analysis_windows,
    kaldi_mel_banks,
    load_passt,
    passt_outputs,
)
from arc.releases import CheckpointMismatchError


def _kaldi_loop(num_bins, n_fft, sample_rate, low, high):
    """Kaldi's MelBanks (feat/mel-computations.cc), bin by bin, in Python floats."""
    mel = lambda f: 1127.0 * math.log(1.0 + f / 700.0)  # noqa: E731
    lo, hi = mel(low), mel(high)
    delta = (hi - lo) / (num_bins + 1)
    out = np.zeros((num_bins, n_fft // 2 + 1))
    for b in range(num_bins):
        left, centre, right = lo + b * delta, lo + (b + 1) * delta, lo + (b + 2) * delta
        for k in range(n_fft // 2):
            m = mel(sample_rate * k / n_fft)
            if left < m < right:
                out[b, k] = (m - left) / (centre - left) if m <= centre else (right - m) / (right - centre)
    return out


def test_kaldi_mel_banks_match_kaldi_bin_by_bin():
    banks = kaldi_mel_banks(128, 1024, 32000, 0.0, 15000.0)
    assert banks.shape == (128, 513) and torch.all(banks[:, -1] == 0)
    assert np.allclose(banks.numpy(), _kaldi_loop(128, 1024, 32000, 0.0, 15000.0), atol=1e-6)
    assert np.allclose(kaldi_mel_banks(23, 512, 16000, 20.0, -400.0).numpy(), _kaldi_loop(23, 512, 16000, 20, 7600))


def test_front_end_puts_a_sine_in_its_mel_band_and_counts_frames_as_the_reference():
    t = np.arange(32000) / 32000
    audio = torch.from_numpy(0.5 * np.sin(2 * np.pi * 1000 * t)).float()[None]
    mel = PasstFrontEnd()(audio)
    assert mel.shape == (1, 128, 100)  # pre-emphasis drops a sample: (32000 - 1) // 320 + 1 frames
    peak_bin = mel[0, :, 50].argmax().item()
    edges = 1127 * np.log1p(np.array([0, 15000]) / 700)
    centres = 700 * np.expm1((edges[0] + (edges[1] - edges[0]) / 129 * np.arange(1, 129)) / 1127)
    assert abs(centres[peak_bin] - 1000) < 60  # the band whose centre is nearest 1 kHz
    assert PasstFrontEnd()(torch.zeros(1, 320000)).shape == (1, 128, 1000)  # 10 s


def official_passt_shapes(depth=12, dim=768, classes=527):
    """The keys of passt-s-f128-p16-s10-ap.476-swa.pt, spelled from hear21passt's PaSST module tree."""
    shapes = {
        "cls_token": (1, 1, dim),
        "dist_token": (1, 1, dim),
        "new_pos_embed": (1, 2, dim),
        "freq_new_pos_embed": (1, dim, 12, 1),
        "time_new_pos_embed": (1, dim, 1, 99),
        "patch_embed.proj.weight": (dim, 1, 16, 16),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
        "head.0.weight": (dim,),
        "head.0.bias": (dim,),
        "head.1.weight": (classes, dim),
        "head.1.bias": (classes,),
        "head_dist.weight": (classes, dim),
        "head_dist.bias": (classes,),
    }
    for i in range(depth):
        p = f"blocks.{i}."
        shapes |= {p + "norm1.weight": (dim,), p + "norm1.bias": (dim,), p + "norm2.weight": (dim,)}
        shapes |= {p + "norm2.bias": (dim,), p + "attn.qkv.weight": (3 * dim, dim), p + "attn.qkv.bias": (3 * dim,)}
        shapes |= {p + "attn.proj.weight": (dim, dim), p + "attn.proj.bias": (dim,)}
        shapes |= {p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,)}
        shapes |= {p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,)}
    return shapes


def test_the_official_checkpoint_layout_loads_strictly(tmp_path):
    shapes = official_passt_shapes()
    assert len(shapes) == 159
    gen = torch.Generator().manual_seed(0)
    state = {k: 0.02 * torch.randn(s, generator=gen) for k, s in shapes.items()}
    torch.save(state, tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt")
    model = load_passt(tmp_path / "passt-s-f128-p16-s10-ap.476-swa.pt")
    assert torch.equal(model.net.blocks[11].mlp.fc2.weight, state["blocks.11.mlp.fc2.weight"])
    assert torch.equal(model.net.head[1].bias, state["head.1.bias"])
    logits = model(torch.randn(1, 320000, generator=gen) * 0.1)
    assert logits.shape == (1, 527) and torch.isfinite(logits).all()
    del state["head_dist.bias"]
    torch.save(state, tmp_path / "cut.pt")
    with pytest.raises(CheckpointMismatchError, match="1 missing keys: head_dist.bias"):
        load_passt(tmp_path / "cut.pt")


def test_stable_audio_metrics_windows():
    sr = 32000
    lengths = lambda seconds: [len(w) / sr for w in analysis_windows(np.ones(int(seconds * sr)))]  # noqa: E731
    assert lengths(10) == [10]
    assert lengths(12) == [10, 10]  # the second window (5 s to 12 s) is zero-padded
    assert lengths(16) == [10, 10, 10]
    assert lengths(3) == [10]
    assert lengths(1) == [1]  # at most 1.5 s: kept unpadded, as the reference does
    padded = analysis_windows(np.ones(12 * sr))[1]
    assert padded[: 7 * sr].all() and not padded[7 * sr :].any()


def test_probabilities_are_the_softmax_of_the_mean_window_logits_and_the_embedding_their_mean_features():
    torch.manual_seed(0)
    tiny = PasstClassifier(Passt(num_classes=5, embed_dim=32, depth=1, num_heads=2)).eval()
    audio = np.random.default_rng(0).normal(size=12 * 32000) * 0.01
    probs, embedding = passt_outputs(tiny, audio)
    windows = analysis_windows(peak_normalize(audio))
    with torch.no_grad():
        logits = torch.stack([tiny(torch.from_numpy(w).float()[None])[0] for w in windows])
        features = torch.stack([tiny.features(torch.from_numpy(w).float()[None])[0] for w in windows])
    assert len(windows) == 2
    assert np.allclose(probs, torch.softmax(logits.mean(0), 0).numpy(), atol=1e-6) and probs.sum() == pytest.approx(1)
    assert np.allclose(embedding, features.mean(0).numpy(), atol=1e-6) and embedding.shape == (32,)


def test_peak_normalisation_to_minus_one_dbfs():
    x = np.array([[0.1, -0.4], [0.2, 0.05]])
    assert np.abs(peak_normalize(x)).max() == pytest.approx(10 ** (-1 / 20))
    with pytest.raises(ValueError, match="silent"):
        peak_normalize(np.zeros(10))
