"""Clip -> metric inputs: channel handling, resampling, framing, as SPEC 6 describes."""

import numpy as np
import pytest
import torch

from arc.metrics.embed import openl3_embeddings, passt_clip_outputs
from arc.metrics.openl3 import OpenL3
from arc.metrics.passt import Passt, PasstClassifier


@pytest.fixture(scope="module")
def openl3_model():
    torch.manual_seed(0)
    return OpenL3().eval()


def test_openl3_embeds_each_channel_and_concatenates(openl3_model):
    rng = np.random.default_rng(0)
    stereo = 0.1 * rng.normal(size=(2, 2 * 44100))
    e = openl3_embeddings(openl3_model, stereo, 44100)
    assert e.shape == (4, 1024)  # 2 s at 48 kHz, centred, hop 0.5 s: 4 frames; left and right 512 each
    assert not np.allclose(e[:, :512], e[:, 512:])
    mono = openl3_embeddings(openl3_model, stereo[:1], 44100)
    assert np.allclose(mono[:, :512], mono[:, 512:])  # mono is duplicated


def test_passt_takes_the_mono_mix_at_32_khz():
    torch.manual_seed(0)
    tiny = PasstClassifier(Passt(num_classes=7, embed_dim=32, depth=1, num_heads=2)).eval()
    rng = np.random.default_rng(1)
    stereo = 0.1 * rng.normal(size=(2, 3 * 44100))
    p, e = passt_clip_outputs(tiny, stereo, 44100)
    swapped, e_swapped = passt_clip_outputs(tiny, stereo[::-1], 44100)
    assert p.shape == (7,) and p.sum() == pytest.approx(1) and np.allclose(p, swapped, atol=1e-6)
    assert e.shape == (32,) and np.allclose(e, e_swapped, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(channels, samples\)"):
        passt_clip_outputs(tiny, stereo[0], 44100)


@pytest.mark.parametrize(("rate", "target"), [(44100, 48000), (48000, 44100), (32000, 16000)])
def test_kaiser_best_resampling_equals_resampy(rate, target):
    """openl3's 44.1 -> 48 kHz step, against resampy itself (the reference; a dev dependency)."""
    import resampy

    from arc.metrics.audio import resample_kaiser_best

    x = (0.3 * np.random.default_rng(0).normal(size=(2, rate // 3 + 17))).astype(np.float32)
    ours, reference = resample_kaiser_best(x, rate, target), resampy.resample(x, rate, target, filter="kaiser_best")
    assert ours.shape == reference.shape and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 2e-6  # resampy accumulates in float32, arc in float64
    x64 = x.astype(np.float64)
    assert np.abs(resample_kaiser_best(x64, rate, target) - resampy.resample(x64, rate, target)).max() < 1e-9
