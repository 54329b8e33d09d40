"""Writing and reading audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from arc.errors import InvalidInputError
from arc.files import atomic_write

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def write_wav(path: str | Path, audio: torch.Tensor, sample_rate: int) -> Path:
    """Write ``audio`` (C, N) as 16-bit PCM WAV, samples clipped to [-1, 1]; whole or not at all
    (``arc.files.atomic_write``), so a file that exists is complete."""
    if audio.ndim != 2:
        raise ValueError(f"expected audio (channels, samples), got shape {tuple(audio.shape)}")
    path = Path(path)
    data = np.clip(audio.detach().float().cpu().numpy().T, -1.0, 1.0)
    atomic_write(path, lambda f: sf.write(f, data, sample_rate, subtype="PCM_16", format="WAV"))
    return path


class UnreadableAudioError(InvalidInputError):
    """An audio file that cannot be decoded, holds no samples, or holds non-finite ones; the message names it."""


def read_clip(path: str | Path) -> tuple[np.ndarray, int]:
    """``(audio (channels, samples) float32, sample_rate)`` of a mono or stereo file, decoded with soundfile."""
    path = Path(path)
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise UnreadableAudioError(f"{path} cannot be decoded ({err})") from err
    if audio.shape[0] == 0:
        raise UnreadableAudioError(f"{path} holds no samples")
    if audio.shape[1] > 2:
        raise UnreadableAudioError(f"{path} has {audio.shape[1]} channels; only mono and stereo are evaluated")
    if not np.isfinite(audio).all():
        raise UnreadableAudioError(f"{path} holds non-finite samples")
    return np.ascontiguousarray(audio.T), rate
