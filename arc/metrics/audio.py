"""The audio preparation every reference metric applies before embedding (SPEC 6)."""

from __future__ import annotations

import numpy as np


def peak_normalize(audio: np.ndarray, dbfs: float = -1.0) -> np.ndarray:
    """Scale so that the largest absolute sample is ``dbfs`` (pyloudnorm's ``normalize.peak``: one gain for all
    channels), in the input's precision."""
    peak = np.abs(audio).max()
    if not peak > 0:
        raise ValueError("a silent clip cannot be peak-normalised")
    return audio * np.asarray(10 ** (dbfs / 20) / peak, dtype=audio.dtype)


def int16_round_trip(audio: np.ndarray) -> np.ndarray:
    """stable-audio-metrics' ``int16_to_float32(float32_to_int16(x))``: clip to [-1, 1], scale by 32767, truncate
    to int16, scale back (float32)."""
    return ((np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)
