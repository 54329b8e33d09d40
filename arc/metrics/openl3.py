"""OpenL3 audio ``mel256`` (512-d) in plain PyTorch, as openl3 0.4.x with kapre 0.3.x computes it, loading the
official Keras HDF5 files (``openl3_audio_mel256_{env,music}.h5``) with h5py by layer order and kind.

One 1 s frame of 48 kHz mono (B, 48000) -> kapre's mel front end (frames of 2048 with hop 242, zero-padded at
the end to 199 frames, periodic Hann, |STFT|, librosa's slaney mel filters, 256 bands from 0 to 24 kHz,
``10 log10(max(x, 1e-10))`` minus the example's max, floored at -80 dB) -> batch norm -> four blocks of two
3x3 convolutions (64, 128, 256, 512 channels; batch norm and ReLU after each but the last, 2x2 max pooling after
the first three blocks) -> max pooling over the whole (32, 24) map -> (B, 512).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from arc.errors import InvalidInputError
from arc.metrics.weights import weight_path

SAMPLE_RATE = 48000
N_FFT, HOP, N_MELS = 2048, 242, 256
KERAS_BN_EPS = 1e-3  # Keras' BatchNormalization default


def slaney_mel(f: np.ndarray) -> np.ndarray:
    """librosa's (Slaney's) mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    mels = 3 * f / 200
    log_region = f >= 1000
    return np.where(log_region, 15 + np.log(np.maximum(f, 1e-10) / 1000) / (np.log(6.4) / 27), mels)


def slaney_mel_inverse(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15, 1000 * np.exp(np.log(6.4) / 27 * (m - 15)), 200 * m / 3)


def slaney_mel_filters(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """librosa's ``filters.mel(htk=False, norm="slaney")``: (n_mels, n_fft // 2 + 1) triangles between mel-spaced
    edges on the FFT bin frequencies, each scaled by ``2 / (f_{i+2} - f_i)`` (equal area)."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = slaney_mel_inverse(np.linspace(slaney_mel(fmin), slaney_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower, upper = -ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (edges[2:] - edges[:-2]))[:, None]


class OpenL3FrontEnd(nn.Module):
    """(B, 48000) audio -> (B, 1, 256, 199) decibel mel spectrogram (kapre 0.3.x with openl3's dB step)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("window", torch.hann_window(N_FFT, periodic=True), persistent=False)
        filters = slaney_mel_filters(SAMPLE_RATE, N_FFT, N_MELS, 0.0, SAMPLE_RATE / 2)
        self.register_buffer("filters", torch.from_numpy(filters).float(), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        B, N = audio.shape
        frames = -(-N // HOP)  # tf.signal.frame(pad_end=True): ceil(N / hop) frames, zeros past the end
        padded = F.pad(audio, (0, (frames - 1) * HOP + N_FFT - N))
        spectrum = torch.fft.rfft(padded.unfold(1, N_FFT, HOP) * self.window).abs()  # (B, frames, 1025)
        mel = spectrum @ self.filters.T  # (B, frames, 256)
        db = 10 * torch.log10(torch.clamp(mel, min=1e-10))
        db = torch.clamp(db - db.amax(dim=(1, 2), keepdim=True), min=-80.0)
        return db.transpose(1, 2)[:, None]  # (B, 1, 256, frames)


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, padding=1)


class OpenL3Network(nn.Module):
    """The mel256 audio network after the front end: (B, 1, 256, 199) -> (B, 512)."""

    def __init__(self):
        super().__init__()
        self.input_norm = nn.BatchNorm2d(1, eps=KERAS_BN_EPS)
        widths = [1, 64, 128, 256, 512]
        layers: list[nn.Module] = []
        for block in range(4):
            c_in, c_out = widths[block], widths[block + 1]
            layers += [_conv(c_in, c_out), nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS), nn.ReLU()]
            layers += [_conv(c_out, c_out)]
            if block < 3:
                layers += [nn.BatchNorm2d(c_out, eps=KERAS_BN_EPS), nn.ReLU(), nn.MaxPool2d(2, 2)]
        self.layers = nn.Sequential(*layers)  # ends at the last conv: openl3's "audio_embedding_layer"

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.input_norm(mel))  # (B, 512, 32, 24)
        return torch.amax(x, dim=(2, 3))  # MaxPooling2D((32, 24), padding="same") + Flatten


class OpenL3(nn.Module):
    """Front end + network: (B, 48000) one-second frames of 48 kHz mono -> (B, 512) embeddings."""

    def __init__(self):
        super().__init__()
        self.front_end, self.net = OpenL3FrontEnd(), OpenL3Network()

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.net(self.front_end(audio))


def _keras_layers(path: Path) -> list[tuple[str, dict[str, np.ndarray]]]:
    """(layer name, {weight kind: array}) for every layer with weights, in the file's layer order."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f.get("model_weights", f)
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["layer_names"]]
            layers = []
            for name in names:
                weight_names = [w.decode() if isinstance(w, bytes) else w for w in group[name].attrs["weight_names"]]
                if weight_names:  # e.g. "conv2d_3/kernel:0" -> "kernel"
                    weights = {w.split("/")[-1].split(":")[0]: np.asarray(group[name][w]) for w in weight_names}
                    layers.append((name, weights))
            return layers
    except (OSError, KeyError) as err:
        raise InvalidInputError(f"{path} is not a Keras HDF5 weight file of OpenL3 ({err})") from err


def load_openl3_weights(model: OpenL3, path: str | Path) -> OpenL3:
    """Copy a Keras HDF5 file's weights into ``model``: the layers with weights, in file order, must be batch
    norms (gamma, beta, moving_mean, moving_variance) and convolutions (kernel (kh, kw, in, out), bias) in the
    order of ``OpenL3Network``; layer names are not used (they depend on the Keras version that wrote the file)."""
    path = Path(path)
    targets = [m for m in model.net.modules() if isinstance(m, nn.BatchNorm2d | nn.Conv2d)]
    layers = _keras_layers(path)
    if len(layers) != len(targets):
        raise InvalidInputError(f"{path} has {len(layers)} layers with weights; OpenL3 mel256 has {len(targets)}")
    with torch.no_grad():
        for (name, weights), module in zip(layers, targets, strict=True):
            if isinstance(module, nn.Conv2d):
                expected = {"kernel": (3, 3, module.in_channels, module.out_channels), "bias": (module.out_channels,)}
            else:
                expected = {k: (module.num_features,) for k in ("gamma", "beta", "moving_mean", "moving_variance")}
            found = {k: v.shape for k, v in weights.items()}
            if found != expected:
                raise InvalidInputError(f"{path}: layer {name!r} holds {found}, expected {expected} here")
            if isinstance(module, nn.Conv2d):
                module.weight.copy_(torch.from_numpy(weights["kernel"]).permute(3, 2, 0, 1))
                module.bias.copy_(torch.from_numpy(weights["bias"]))
            else:
                module.weight.copy_(torch.from_numpy(weights["gamma"]))
                module.bias.copy_(torch.from_numpy(weights["beta"]))
                module.running_mean.copy_(torch.from_numpy(weights["moving_mean"]))
                module.running_var.copy_(torch.from_numpy(weights["moving_variance"]))
    return model


def load_openl3(content_type: str = "env", path: str | Path | None = None) -> OpenL3:
    """OpenL3 mel256 with the official ``env`` or ``music`` weights (from the metric weight cache by default)."""
    if content_type not in ("env", "music"):
        raise InvalidInputError(f"OpenL3 content_type must be 'env' or 'music', got {content_type!r}")
    path = weight_path(f"openl3_mel256_{content_type}") if path is None else path
    return load_openl3_weights(OpenL3(), path).eval()


def openl3_frames(audio: np.ndarray, hop_seconds: float = 0.5) -> np.ndarray:
    """openl3's framing of a mono 48 kHz clip into (n, 48000) one-second frames (``center=True``): 0.5 s of zeros
    in front, zeros at the end up to the last hop, then frames every ``hop_seconds``; a clip shorter than a frame
    is padded to one. (openl3 downmixes stereo by averaging; stable-audio-metrics instead embeds each channel.)"""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise InvalidInputError(f"expected a non-empty mono clip, got shape {audio.shape}")
    frame, hop = SAMPLE_RATE, int(hop_seconds * SAMPLE_RATE)
    audio = np.pad(audio, (frame // 2, 0))
    extra = frame - audio.size if audio.size < frame else -(-(audio.size - frame) // hop) * hop - (audio.size - frame)
    audio = np.pad(audio, (0, max(extra, 0)))
    starts = range(0, audio.size - frame + 1, hop)
    return np.stack([audio[s : s + frame] for s in starts])
