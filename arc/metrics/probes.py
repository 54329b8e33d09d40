"""Probe metrics for the tones set (SPEC 8): signal analysis only, no learned network.

* prompt adherence: ``measure_attributes`` reads waveform, pitch, envelope and pan off any stereo clip and
  ``attribute_accuracy`` compares them with the caption;
* quality: ``frechet_distance`` (``arc.metrics.statistics``) between Gaussians fitted to a fixed hand-made
  ``spectral_embedding``;
* diversity: ``ccds`` on that embedding, the mean cosine distance between renderings of one prompt.

The pitch and pan thresholds are derived from the class ranges in ``arc.data.tones`` (midpoints of the gaps between
classes), so changing those ranges moves the probes with them; the waveform and envelope thresholds sit in wide gaps
between the measured features of the classes (``tests/test_probes.py`` checks them on real renderings).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from arc.data.tones import (
    NOISE_BAND_JITTER,
    NOISE_BANDS_HZ,
    PAN_POSITIONS,
    PITCH_BANDS_HZ,
    PULSE_RATE_HZ,
    ToneAttributes,
    max_partial_hz,
)
from arc.metrics.statistics import ccds, embedding_statistics, frechet_distance

ATTRIBUTES = ("waveform", "pitch", "envelope", "pan")
F0_SEARCH_MIN_HZ = 50.0
# Share of the spectral energy on the harmonic comb of the strongest peak above which a clip counts as periodic.
HARMONICITY_THRESHOLD = 0.6
# Harmonic amplitude ratios A_n / A_1: sine ~0, square (0, 1/3), sawtooth (1/2, 1/3).
SINE_MAX_HARMONIC_RATIO = 0.15
SAWTOOTH_MIN_SECOND_HARMONIC_RATIO = 0.25
FRAME_SECONDS = 0.05
# A fade ends far below where it starts (final level <= 0.15 of the start, so the quarter ratio is <= ~0.25)...
FADING_MAX_QUARTER_RATIO = 0.4
# ... and never climbs back: noise wobbles the 50 ms RMS by up to ~1.5x over a clip, a pulse climbs by >= ~2.7x.
FADING_MAX_CLIMB = 2.0
# Relative std of the frame RMS: a pulse (depth >= 0.7) gives >= ~0.3, broadband noise ~0.1, a steady tone ~0.
PULSING_MIN_RELATIVE_STD = 0.2
PAN_THRESHOLD = (PAN_POSITIONS["centre"][1] + PAN_POSITIONS["right"][0]) / 2
# a 16-bit WAV's largest sample read back as float (soundfile: 32767 / 32768): a clip there was cut at full scale
CLIPPED_PEAK = 32767 / 32768
EMBEDDING_FRAME_SECONDS = 0.064
EMBEDDING_BANDS = 24
EMBEDDING_SEGMENTS = 6
EMBEDDING_RANGE_HZ = (50.0, 8000.0)
EMBEDDING_FLOOR = 1e-8  # relative power floor (-80 dB below the clip's loudest band)


def _boundaries(ranges: dict[str, tuple[float, float]]) -> tuple[float, float]:
    """Geometric midpoints of the gaps low/mid and mid/high between the classes' frequency ranges."""
    return float(np.sqrt(ranges["low"][1] * ranges["mid"][0])), float(np.sqrt(ranges["mid"][1] * ranges["high"][0]))


TONE_PITCH_BOUNDARIES_HZ = _boundaries(PITCH_BANDS_HZ)
# The centroid of a flat band [lo, hi] is (lo + hi) / 2, scaled by the band's jitter factor.
NOISE_PITCH_BOUNDARIES_HZ = _boundaries(
    {name: tuple(np.multiply(NOISE_BAND_JITTER, (lo + hi) / 2)) for name, (lo, hi) in NOISE_BANDS_HZ.items()}
)


def _as_stereo(audio: np.ndarray) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2 or x.shape[1] < 2:
        raise ValueError(f"expected stereo audio of shape (2, N) with N >= 2, got shape {x.shape}")
    return x


def _pitch_class(freq_hz: float, boundaries: tuple[float, float]) -> str:
    return "low" if freq_hz < boundaries[0] else "mid" if freq_hz < boundaries[1] else "high"


def _classify_spectrum(mono: np.ndarray, sample_rate: int) -> tuple[str, str]:
    """Waveform and pitch from the Hann-windowed power spectrum ``P(f)`` of the whole clip.

    ``f0 = argmax P`` above 50 Hz; harmonicity = energy within ``+-tol`` of ``n f0`` over total energy, with
    ``tol = max pulse rate + 3 bins`` so pulsing sidebands count. Harmonicity < 0.6 means noise, whose pitch is
    the spectral centroid ``sum f P / sum P``; otherwise the pitch is ``f0`` and the waveform follows from the
    harmonic amplitudes ``A_n = sqrt(energy near n f0)``.
    """
    power = np.abs(np.fft.rfft(mono * np.hanning(mono.size))) ** 2
    freqs = np.fft.rfftfreq(mono.size, d=1.0 / sample_rate)
    top = max_partial_hz(sample_rate)
    searchable = (freqs >= F0_SEARCH_MIN_HZ) & (freqs <= top)
    total = power[1:].sum()
    if total <= 0 or not searchable.any():
        return "noise", "low"  # silence: nothing periodic to measure
    f0 = freqs[searchable][np.argmax(power[searchable])]
    tol = PULSE_RATE_HZ[1] + 3 * sample_rate / mono.size
    harmonic_energy = np.array(
        [power[np.abs(freqs - n * f0) <= tol].sum() for n in range(1, int(top // f0) + 1)]
    )  # (num_harmonics,)
    if harmonic_energy.sum() / total < HARMONICITY_THRESHOLD:
        centroid = float((freqs * power).sum() / power.sum())
        return "noise", _pitch_class(centroid, NOISE_PITCH_BOUNDARIES_HZ)
    amplitude = np.sqrt(np.pad(harmonic_energy, (0, 3))) / np.sqrt(harmonic_energy[0])  # A_n / A_1, zero if absent
    if max(amplitude[1], amplitude[2]) < SINE_MAX_HARMONIC_RATIO:
        waveform = "sine"
    elif amplitude[1] > SAWTOOTH_MIN_SECOND_HARMONIC_RATIO:
        waveform = "sawtooth"
    else:
        waveform = "square"
    return waveform, _pitch_class(float(f0), TONE_PITCH_BOUNDARIES_HZ)


def _frame_rms(x: np.ndarray, sample_rate: int, frame_seconds: float) -> np.ndarray:
    """RMS over both channels in non-overlapping frames: (2, N) -> (num_frames,)."""
    frame = min(max(1, round(frame_seconds * sample_rate)), x.shape[1])
    num_frames = x.shape[1] // frame
    frames = x[:, : num_frames * frame].reshape(2, num_frames, frame)
    return np.sqrt((frames**2).mean(axis=(0, 2)))


def _classify_envelope(x: np.ndarray, sample_rate: int) -> str:
    """From the 50 ms frame RMS ``e``: fading if ``mean(last quarter) / mean(first quarter) < 0.4`` and ``e``
    never climbs above 2 times its running minimum (a pulse always climbs back); else pulsing if
    ``std(e) / mean(e) > 0.2``; else steady."""
    rms = _frame_rms(x, sample_rate, FRAME_SECONDS)
    quarter = max(1, rms.size // 4)
    start, end = rms[:quarter].mean(), rms[-quarter:].mean()
    if start <= 0:
        return "steady"  # silent start: no fade to measure
    climb = np.max(rms / np.maximum(np.minimum.accumulate(rms), 1e-12 * start))
    if end / start < FADING_MAX_QUARTER_RATIO and climb < FADING_MAX_CLIMB:
        return "fading"
    return "pulsing" if rms.std() / rms.mean() > PULSING_MIN_RELATIVE_STD else "steady"


def is_clipped(audio: np.ndarray) -> bool:
    """Whether a clip reaches full scale, ``max |x| >= CLIPPED_PEAK``: a WAV file's samples are clipped to [-1, 1],
    so a generated peak beyond full scale was cut off (every tones rendering peaks at <= 0.45)."""
    return bool(np.abs(audio).max() >= CLIPPED_PEAK)


def _pan_position(x: np.ndarray) -> float:
    """Constant-power pan position ``p = 4 atan2(rms_R, rms_L) / pi - 1`` in [-1, 1] (0 for silence)."""
    rms = np.sqrt((x**2).mean(axis=1))
    return float(4 * np.arctan2(rms[1], rms[0]) / np.pi - 1) if rms.sum() > 0 else 0.0


def measure_attributes(audio: np.ndarray, sample_rate: int) -> ToneAttributes:
    """Estimate the tones attributes of any stereo clip (2, N) by signal analysis."""
    x = _as_stereo(audio)
    waveform, pitch = _classify_spectrum(x.mean(axis=0), sample_rate)
    position = _pan_position(x)
    pan = "left" if position < -PAN_THRESHOLD else "right" if position > PAN_THRESHOLD else "centre"
    return ToneAttributes(waveform=waveform, pitch=pitch, envelope=_classify_envelope(x, sample_rate), pan=pan)


def attribute_hits(measured: Sequence[ToneAttributes], prompts: Sequence[str]) -> np.ndarray:
    """(B, 4) bool: whether each measured attribute (``ATTRIBUTES`` order) matches its prompt's."""
    if len(measured) != len(prompts) or not prompts:
        raise ValueError(f"need as many clips as prompts (at least one), got {len(measured)} and {len(prompts)}")
    return np.array(
        [
            [getattr(got, name) == getattr(ToneAttributes.from_caption(prompt), name) for name in ATTRIBUTES]
            for got, prompt in zip(measured, prompts, strict=True)
        ]
    )


def accuracy_from_hits(hits: np.ndarray) -> dict[str, float]:
    """Share of clips with each attribute right, plus ``"all"`` (all four right) and ``"mean"`` (mean of the four).
    Chance is 1/4 for waveform and 1/3 for the others."""
    accuracy = {name: float(hits[:, i].mean()) for i, name in enumerate(ATTRIBUTES)}
    accuracy["all"] = float(hits.all(axis=1).mean())
    accuracy["mean"] = float(hits.mean())
    return accuracy


def attribute_accuracy(audios: Sequence[np.ndarray], prompts: Sequence[str], sample_rate: int) -> dict[str, float]:
    """``accuracy_from_hits`` of stereo clips measured against their prompts."""
    return accuracy_from_hits(attribute_hits([measure_attributes(a, sample_rate) for a in audios], prompts))


def _mel(freq_hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(freq_hz / 700.0)


def spectral_embedding(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """A fixed, hand-made 32-d embedding of a stereo clip (2, N); the same bands in Hz for every sample rate.

    With ``L[t, b] = log max(P[t, b], 1e-8 max P)`` the power of 64 ms Hann frames (hop 32 ms) in 24 mel-spaced
    bands from 50 Hz to 8 kHz (bands above Nyquist sit at the floor) and ``E[t] = log sum_b P[t, b]``:

    * 24: spectral shape ``mean_t L[t, b] - mean_{t,b} L``;
    * 6: loudness contour, ``E`` averaged over 6 equal time segments, minus its mean;
    * 1: roughness ``std_t (E[t + 1] - E[t])`` (pulsing);
    * 1: balance ``log(rms_L / rms_R) / 2``.

    Every part is level-invariant and roughly zero-centred, so cosine similarities compare shapes.
    """
    x = _as_stereo(audio)
    frame = round(EMBEDDING_FRAME_SECONDS * sample_rate)
    hop = frame // 2
    if x.shape[1] < frame + hop * (EMBEDDING_SEGMENTS - 1):
        raise ValueError(
            f"clip of {x.shape[1]} samples is too short for the embedding's {EMBEDDING_SEGMENTS} segments"
        )
    starts = np.arange(0, x.shape[1] - frame + 1, hop)
    frames = x[:, starts[:, None] + np.arange(frame)[None, :]] * np.hanning(frame)  # (2, T, frame)
    power = (np.abs(np.fft.rfft(frames, axis=-1)) ** 2).sum(axis=0)  # (T, F), both channels
    freqs = np.fft.rfftfreq(frame, d=1.0 / sample_rate)
    mel_edges = np.linspace(*_mel(np.array(EMBEDDING_RANGE_HZ)), EMBEDDING_BANDS + 1)
    band_index = np.searchsorted(mel_edges, _mel(freqs), side="right") - 1  # (F,), -1 or EMBEDDING_BANDS: outside
    inside = (band_index >= 0) & (band_index < EMBEDDING_BANDS)
    band_power = np.zeros((power.shape[0], EMBEDDING_BANDS))
    np.add.at(band_power.T, band_index[inside], power[:, inside].T)
    floor = EMBEDDING_FLOOR * band_power.max() + 1e-30
    log_bands = np.log(np.maximum(band_power, floor))  # (T, B)
    shape = log_bands.mean(axis=0) - log_bands.mean()
    loudness = np.log(np.maximum(band_power.sum(axis=1), floor))  # (T,)
    contour = np.array([segment.mean() for segment in np.array_split(loudness, EMBEDDING_SEGMENTS)])
    roughness = np.diff(loudness).std()
    rms = np.sqrt((x**2).mean(axis=1)) + 1e-12
    balance = np.log(rms[0] / rms[1]) / 2
    return np.concatenate([shape, contour - contour.mean(), [roughness, balance]])


def probe_fd(gen_audios: Sequence[np.ndarray], ref_audios: Sequence[np.ndarray], sample_rate: int) -> float:
    """Fréchet distance between the spectral embeddings of generated and reference clips."""
    gen = embedding_statistics(np.stack([spectral_embedding(a, sample_rate) for a in gen_audios]))
    ref = embedding_statistics(np.stack([spectral_embedding(a, sample_rate) for a in ref_audios]))
    return frechet_distance(*gen, *ref)


def probe_report(
    audios: Sequence[np.ndarray],
    prompts: Sequence[str],
    sample_rate: int,
    ref_audios: Sequence[np.ndarray] | None = None,
) -> dict[str, float]:
    """All probe metrics: ``acc_{waveform,pitch,envelope,pan,all,mean}``; ``fd`` against ``ref_audios`` when
    given; ``diversity`` over the prompts that occur at least twice (left out when none does)."""
    report = {f"acc_{name}": value for name, value in attribute_accuracy(audios, prompts, sample_rate).items()}
    if ref_audios is not None:
        report["fd"] = probe_fd(audios, ref_audios, sample_rate)
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for audio, prompt in zip(audios, prompts, strict=True):
        groups[prompt].append(audio)
    repeated = [clips for clips in groups.values() if len(clips) >= 2]
    if repeated:
        report["diversity"] = ccds(
            [np.stack([spectral_embedding(a, sample_rate) for a in clips]) for clips in repeated]
        )
    return report
