"""The built-in procedural "tones" text-audio set (SPEC 8): captions whose every word can be measured.

Each item is a stereo clip described by four attributes -- waveform, pitch, envelope, pan -- and captioned
``"a {pitch} {waveform} tone, {envelope}, panned {pan}"``. Inside each class the rendering is jittered
(amplitude, pulse rate and depth, fade depth, pan position, the noise's band and draw) so one caption has many
valid renderings. A periodic tone is one note per pitch class (the band's geometric centre), started at phase 0,
and a pulse starts at full level: with a continuum of fundamentals and phases per caption the 2-core tones model
never learnt to generate a periodic signal (waveform accuracy at chance; experiments/2026-12-02-tones-waveform.md).
Item ``i`` of a set with seed ``s`` is drawn from ``np.random.default_rng((s, i))`` only, so it is identical on
every call and every machine.

Pitch means the fundamental for the periodic waveforms and the colour (pass band) for noise: noise has to be
broadband for its loudness to look steady over a 50 ms frame, so it cannot sit in a 100-180 Hz band.
All partials stay below ``0.45 * sample_rate`` (and 8 kHz), so any ``sample_rate >= 8000`` renders without
aliasing and with at least the third harmonic that the probes (``arc.metrics.probes``) need to tell square
from sawtooth.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

WAVEFORMS = ("sine", "square", "sawtooth", "noise")
PITCHES = ("low", "mid", "high")
ENVELOPES = ("steady", "pulsing", "fading")
PANS = ("left", "centre", "right")

MIN_SAMPLE_RATE = 8000
# Pitch classes of the periodic waveforms: the probe's bands (the gaps keep classes apart) and the one note each
# class renders, the band's geometric centre (134, 335, 775 Hz).
PITCH_BANDS_HZ = {"low": (100.0, 180.0), "mid": (250.0, 450.0), "high": (600.0, 1000.0)}
PITCH_NOTES_HZ = {name: float(np.sqrt(low * high)) for name, (low, high) in PITCH_BANDS_HZ.items()}
# Pass bands of the noise waveform, each scaled by one factor drawn from NOISE_BAND_JITTER.
NOISE_BANDS_HZ = {"low": (60.0, 600.0), "mid": (500.0, 1800.0), "high": (1600.0, 3500.0)}
NOISE_BAND_JITTER = (0.9, 1.1)
PULSE_RATE_HZ = (3.8, 4.2)
PULSE_DEPTH = (0.7, 1.0)
FADE_FINAL_LEVEL = (0.02, 0.15)
# Pan position p in [-1, 1] (constant-power law), drawn uniformly inside the class.
PAN_POSITIONS = {"left": (-0.9, -0.55), "centre": (-0.12, 0.12), "right": (0.55, 0.9)}
# Peak level: half of full scale at most, headroom for guidance's overshoot (CFG 1.5 clipped 38 % of clips at a
# (0.5, 0.9) peak; the latents are the same up to the scale, conf/model/tones.yaml's 0.13).
PEAK_AMPLITUDE = (0.25, 0.45)

_CAPTION_RE = re.compile(
    rf"a ({'|'.join(PITCHES)}) ({'|'.join(WAVEFORMS)}) tone, ({'|'.join(ENVELOPES)}), panned ({'|'.join(PANS)})"
)


def max_partial_hz(sample_rate: int) -> float:
    """Highest frequency any rendered partial may have: ``min(0.45 * sample_rate, 8000)``."""
    return min(0.45 * sample_rate, 8000.0)


@dataclass(frozen=True)
class ToneAttributes:
    """The four measurable attributes of a tones item."""

    waveform: str
    pitch: str
    envelope: str
    pan: str

    def __post_init__(self) -> None:
        for name, allowed in (("waveform", WAVEFORMS), ("pitch", PITCHES), ("envelope", ENVELOPES), ("pan", PANS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def caption(self) -> str:
        """``"a {pitch} {waveform} tone, {envelope}, panned {pan}"``."""
        return f"a {self.pitch} {self.waveform} tone, {self.envelope}, panned {self.pan}"

    @classmethod
    def from_caption(cls, text: str) -> ToneAttributes:
        """Parse a caption written by ``caption()`` (surrounding whitespace and case are ignored)."""
        match = _CAPTION_RE.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError(
                f"caption {text!r} does not follow the tones template 'a {{pitch}} {{waveform}} tone, "
                "{envelope}, panned {pan}'"
            )
        pitch, waveform, envelope, pan = match.groups()
        return cls(waveform=waveform, pitch=pitch, envelope=envelope, pan=pan)


def _periodic(waveform: str, f0: float, t: np.ndarray, sample_rate: int) -> np.ndarray:
    """Band-limited additive synthesis: sine ``sin(w t)``; square ``sum_{odd n} sin(n w t) / n``;
    sawtooth ``sum_n (-1)^(n+1) sin(n w t) / n``; partials above ``max_partial_hz`` are left out."""
    angle = 2 * np.pi * f0 * t
    if waveform == "sine":
        return np.sin(angle)
    num_partials = int(max_partial_hz(sample_rate) // f0)
    step = 2 if waveform == "square" else 1
    signal = np.zeros_like(t)
    for n in range(1, num_partials + 1, step):
        sign = 1.0 if waveform == "square" or n % 2 == 1 else -1.0
        signal += sign * np.sin(n * angle) / n
    return signal


def _band_noise(band_hz: tuple[float, float], rng: np.random.Generator, sample_rate: int, n: int) -> np.ndarray:
    """Gaussian noise with a flat spectrum inside ``band_hz`` and none outside, built in the frequency domain."""
    low, high = band_hz
    high = min(high, max_partial_hz(sample_rate))
    freqs = np.fft.rfftfreq(n, d=1.0 / sample_rate)
    in_band = (freqs >= low) & (freqs <= high)
    spectrum = np.zeros(freqs.shape, dtype=np.complex128)
    spectrum[in_band] = rng.standard_normal(in_band.sum()) + 1j * rng.standard_normal(in_band.sum())
    return np.fft.irfft(spectrum, n=n)


def _envelope(envelope: str, rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Steady ``1``; pulsing ``1 - d (1 - cos(2 pi r t)) / 2``; fading ``a^(t / T)`` (``a`` = final level)."""
    if envelope == "steady":
        return np.ones_like(t)
    if envelope == "pulsing":
        rate, depth = rng.uniform(*PULSE_RATE_HZ), rng.uniform(*PULSE_DEPTH)
        return 1 - depth * (1 - np.cos(2 * np.pi * rate * t)) / 2
    final_level = rng.uniform(*FADE_FINAL_LEVEL)
    return final_level ** (t / t[-1])  # t[-1] > 0: num_samples >= 2


def render_tone(attrs: ToneAttributes, rng: np.random.Generator, sample_rate: int, num_samples: int) -> np.ndarray:
    """One jittered stereo rendering of ``attrs``: (2, num_samples) float32, peak in ``PEAK_AMPLITUDE``.

    The mono source is shaped by the envelope, scaled to its drawn peak amplitude, then panned with the
    constant-power law ``theta = (p + 1) pi / 4``, gains ``(cos theta, sin theta)`` rescaled so the louder channel
    has gain 1.
    """
    if sample_rate < MIN_SAMPLE_RATE:
        raise ValueError(
            f"sample_rate must be >= {MIN_SAMPLE_RATE} so every band fits below Nyquist, got {sample_rate}"
        )
    if num_samples < 2:
        raise ValueError(f"num_samples must be >= 2, got {num_samples}")
    t = np.arange(num_samples) / sample_rate  # seconds
    if attrs.waveform == "noise":
        scale = rng.uniform(*NOISE_BAND_JITTER)
        low, high = NOISE_BANDS_HZ[attrs.pitch]
        source = _band_noise((low * scale, high * scale), rng, sample_rate, num_samples)
    else:
        source = _periodic(attrs.waveform, PITCH_NOTES_HZ[attrs.pitch], t, sample_rate)
    shaped = _envelope(attrs.envelope, rng, t) * source
    mono = rng.uniform(*PEAK_AMPLITUDE) * shaped / max(np.abs(shaped).max(), 1e-12)
    theta = (rng.uniform(*PAN_POSITIONS[attrs.pan]) + 1) * np.pi / 4
    gains = np.array([np.cos(theta), np.sin(theta)])
    return (gains[:, None] / gains.max() * mono[None, :]).astype(np.float32)  # (2, N)


class TonesDataset(Dataset):
    """``size`` procedural items; item ``i`` is drawn from ``default_rng((seed, i))`` alone.

    Each item is ``{"audio": (2, N) float32, "padding_mask": (N,) bool all True, "prompt": caption,
    "seconds_start": 0.0, "seconds_total": N / sample_rate, "id": "tones-{seed}-{i}"}``.
    Attributes are drawn uniformly and independently, so each of the 108 captions is equally likely.
    """

    def __init__(self, size: int, sample_rate: int, num_samples: int, seed: int = 0) -> None:
        if size < 0 or seed < 0:
            raise ValueError(f"size and seed must be >= 0, got size={size}, seed={seed}")
        if sample_rate < MIN_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be >= {MIN_SAMPLE_RATE}, got {sample_rate}")
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        self.size = size
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.seed = seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a TonesDataset of size {self.size}")
        rng = np.random.default_rng((self.seed, index))
        attrs = ToneAttributes(
            waveform=str(rng.choice(WAVEFORMS)),
            pitch=str(rng.choice(PITCHES)),
            envelope=str(rng.choice(ENVELOPES)),
            pan=str(rng.choice(PANS)),
        )
        audio = render_tone(attrs, rng, self.sample_rate, self.num_samples)
        return {
            "audio": torch.from_numpy(audio),
            "padding_mask": torch.ones(self.num_samples, dtype=torch.bool),
            "prompt": attrs.caption(),
            "seconds_start": 0.0,
            "seconds_total": float(self.num_samples / self.sample_rate),
            "id": f"tones-{self.seed}-{index}",
        }
