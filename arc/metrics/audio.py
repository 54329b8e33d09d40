"""The audio preparation every reference metric applies before embedding (SPEC 6): peak normalisation, the int16
round trip, and resampy's ``kaiser_best`` resampling (what openl3 uses to reach 48 kHz)."""

from __future__ import annotations

import math

import numpy as np

from arc.errors import InvalidInputError

# resampy 0.4.x's kaiser_best filter: a Kaiser-windowed sinc with 50 zero crossings and 2**13 table entries per
# crossing, roll-off 0.9173473712608761 (stored in its kaiser_best.npz; its docstring rounds it to 0.917347) and
# beta 12.984585301434308 (its docstring prints 12.9846; this value rebuilds the stored table to 3e-11).
KAISER_BEST_ZEROS, KAISER_BEST_PRECISION = 50, 2**13
KAISER_BEST_ROLLOFF, KAISER_BEST_BETA = 0.9173473712608761, 12.984585301434308


class SilentAudioError(InvalidInputError):
    """A clip with no non-zero sample: it has no peak to normalise and no metric is defined on it."""


def peak_normalize(audio: np.ndarray, dbfs: float = -1.0) -> np.ndarray:
    """Scale so that the largest absolute sample is ``dbfs`` (pyloudnorm's ``normalize.peak``: one gain for all
    channels), in the input's precision."""
    peak = np.abs(audio).max()
    if not peak > 0:
        raise SilentAudioError("the clip is silent (every sample is 0): it cannot be peak-normalised or embedded")
    return audio * np.asarray(10 ** (dbfs / 20) / peak, dtype=audio.dtype)


def int16_round_trip(audio: np.ndarray) -> np.ndarray:
    """stable-audio-metrics' ``int16_to_float32(float32_to_int16(x))``: clip to [-1, 1], scale by 32767, truncate
    to int16, scale back (float32)."""
    return ((np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def kaiser_best_window() -> np.ndarray:
    """The right half of resampy's ``kaiser_best`` interpolation filter, ``zeros * precision + 1`` taps:
    ``rolloff * sinc(rolloff * u) * kaiser(u)`` at ``u = 0, 1/precision, ..., zeros``."""
    n = KAISER_BEST_ZEROS * KAISER_BEST_PRECISION
    sinc = KAISER_BEST_ROLLOFF * np.sinc(KAISER_BEST_ROLLOFF * np.linspace(0, KAISER_BEST_ZEROS, n + 1))
    return np.kaiser(2 * n + 1, KAISER_BEST_BETA)[n:] * sinc


def resample_kaiser_best(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """resampy's ``resample(audio, rate, target, filter="kaiser_best")`` along the last axis.

    Output sample ``t`` sits at input time ``t * rate / target``; with ``n`` its integer part and ``f`` the
    fraction scaled by ``s = min(1, target / rate)``, it is ``sum_i w(f + i s) x[n - i] + sum_k w(s - f + k s)
    x[n + 1 + k]`` over the taps inside the filter and the signal, ``w`` read from the table with linear
    interpolation (times ``s`` when downsampling). Output length ``floor(N * target / rate)``. The fraction repeats
    every ``target / gcd`` outputs, so each phase's taps form one kernel applied to every window of that phase
    (zero padding stands in for resampy's cut at the signal's ends). resampy adds the terms one by one in the
    input's precision; this sums in float64 and rounds once, so float32 results agree to rounding.
    """
    x = np.asarray(audio)
    if rate == target:
        return x.copy()
    ratio = target / rate
    n_out = int(x.shape[-1] * ratio)
    if n_out < 1:
        raise InvalidInputError(f"a clip of {x.shape[-1]} samples is too short to resample from {rate} to {target}")
    window = kaiser_best_window() * (ratio if ratio < 1 else 1.0)
    delta = np.diff(window, append=window[-1])
    scale = min(1.0, ratio)
    step = int(scale * KAISER_BEST_PRECISION)
    taps = window.size // step + 1
    flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(flat, ((0, 0), (taps, taps))), 2 * taps, axis=1)
    out = np.zeros((flat.shape[0], n_out))
    gcd = math.gcd(rate, target)
    phases, hop = target // gcd, rate // gcd
    for phase in range(min(phases, n_out)):
        time = phase / ratio
        n = int(time)
        frac = scale * (time - n)
        kernel = np.zeros(2 * taps)  # over x[n - taps + 1], ..., x[n + taps]
        for wing, side in ((frac, slice(taps - 1, None, -1)), (scale - frac, slice(taps, None))):
            position = wing * KAISER_BEST_PRECISION
            offset = int(position)
            index = offset + step * np.arange(taps)
            valid = index + step <= window.size  # resampy's tap count, (len - offset) // step
            kernel[side] = np.where(valid, window[np.minimum(index, window.size - 1)] + (position - offset) *
                                    delta[np.minimum(index, window.size - 1)], 0.0)  # fmt: skip
        count = len(range(phase, n_out, phases))
        starts = n + 1 + hop * np.arange(count)  # window start in the padded signal: n - taps + 1 + taps
        out[:, phase::phases] = windows[:, starts] @ kernel
    return out.reshape(*x.shape[:-1], n_out).astype(x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32)
