"""Writing generated audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
import torch


def write_wav(path: str | Path, audio: torch.Tensor, sample_rate: int) -> Path:
    """Write ``audio`` (C, N) as 16-bit PCM WAV, samples clipped to [-1, 1]."""
    if audio.ndim != 2:
        raise ValueError(f"expected audio (channels, samples), got shape {tuple(audio.shape)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.clip(audio.detach().float().cpu().numpy().T, -1.0, 1.0)
    sf.write(str(path), data, sample_rate, subtype="PCM_16")
    return path
