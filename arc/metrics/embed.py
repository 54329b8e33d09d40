"""One clip -> what each metric statistic consumes, prepared as stable-audio-metrics prepares it (SPEC 6).

Clips are (channels, samples) float arrays at any sample rate. Each clip is peak-normalised to -1 dBFS once, at
the point the reference does it (PaSST and CLAP: after the mono mix and resampling, inside
``passt_outputs`` / ``clap_audio_embeddings``; OpenL3: the whole clip, one gain for both channels).
"""

from __future__ import annotations

import numpy as np
import soxr
import torch
from transformers import ClapFeatureExtractor, ClapModel

from arc.metrics import clap, openl3, passt
from arc.metrics.audio import peak_normalize, resample_kaiser_best

OPENL3_SOURCE_RATE = 44100  # stable-audio-metrics reads audio at 44.1 kHz before OpenL3 resamples to 48 kHz


def _resample(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """soxr "HQ" along the last axis (a no-op at the target rate)."""
    if rate == target:
        return audio
    return np.stack([soxr.resample(channel, rate, target, "HQ") for channel in np.atleast_2d(audio)])


def _checked(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2 or audio.shape[1] == 0:
        raise ValueError(f"expected a (channels, samples) clip, got shape {audio.shape}")
    return audio


@torch.no_grad()
def openl3_embeddings(model: openl3.OpenL3, audio: np.ndarray, sample_rate: int, batch: int = 32) -> np.ndarray:
    """(frames, 512 x 2) FD_openl3 embeddings: at 44.1 kHz (soxr HQ, as librosa loads it), then 48 kHz (resampy's
    kaiser_best, as openl3 does), each channel framed and embedded on its own, left and right concatenated per
    frame; a mono clip is duplicated."""
    audio = _resample(peak_normalize(_checked(audio)), sample_rate, OPENL3_SOURCE_RATE)
    audio = resample_kaiser_best(audio, OPENL3_SOURCE_RATE, openl3.SAMPLE_RATE)
    channels = audio if audio.shape[0] == 2 else np.repeat(audio[:1], 2, axis=0)
    device = next(model.parameters()).device
    per_channel = []
    for channel in channels:
        frames = torch.from_numpy(openl3.openl3_frames(channel))
        per_channel.append(torch.cat([model(f.to(device)).cpu() for f in frames.split(batch)]).numpy())
    return np.concatenate(per_channel, axis=1)


def passt_clip_outputs(
    model: passt.PasstClassifier, audio: np.ndarray, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """(527,) KL_passt probabilities and the (768,) PaSST embedding of R_passt / C_passt
    (``arc.metrics.passt.passt_outputs``): channels averaged to mono (librosa's ``mono=True``), 32 kHz."""
    mono = _resample(_checked(audio).mean(axis=0, keepdims=True), sample_rate, passt.SAMPLE_RATE)[0]
    return passt.passt_outputs(model, mono)


def clap_clip_embedding(
    model: ClapModel, extractor: ClapFeatureExtractor, audio: np.ndarray, sample_rate: int, seed: int = 0
) -> np.ndarray:
    """(512,) unit CLAP audio embedding: mono at 48 kHz, then ``arc.metrics.clap.clap_audio_embeddings``."""
    mono = _resample(_checked(audio).mean(axis=0, keepdims=True), sample_rate, clap.SAMPLE_RATE)[0]
    return clap.clap_audio_embeddings(model, extractor, [mono], seed=seed)[0]
