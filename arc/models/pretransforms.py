"""Pretransforms: the fixed map between audio (B, audio_channels, N) and latents (B, latent_channels, N // ratio).

``OobleckPretransform`` wraps diffusers' ``AutoencoderOobleck`` (the Stable Audio VAE);
``PatchPretransform`` folds the waveform into channels, an exact inverse for the tiny / tones model.
"""

from __future__ import annotations

import math

import torch
from diffusers import AutoencoderOobleck
from torch import nn
from torch.nn.utils import parametrize


class Pretransform(nn.Module):
    """Interface: ``encode(audio) -> latents``, ``decode(latents) -> audio`` and the numbers below."""

    sample_rate: int
    audio_channels: int
    latent_channels: int
    downsampling_ratio: int
    scale: float = 1.0  # latents are divided by it after encoding

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def check_audio(self, audio: torch.Tensor) -> None:
        if audio.ndim != 3 or audio.shape[1] != self.audio_channels:
            raise ValueError(f"expected audio (B, {self.audio_channels}, N), got shape {tuple(audio.shape)}")
        if audio.shape[-1] % self.downsampling_ratio:
            raise ValueError(
                f"audio length {audio.shape[-1]} is not a multiple of the downsampling ratio {self.downsampling_ratio}"
            )

    def check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 3 or latents.shape[1] != self.latent_channels:
            raise ValueError(f"expected latents (B, {self.latent_channels}, T), got shape {tuple(latents.shape)}")


class PatchPretransform(Pretransform):
    """(B, C, N) -> (B, C * patch_size, N // patch_size): sample ``n`` of channel ``c`` goes to channel
    ``c * patch_size + n % patch_size`` of frame ``n // patch_size``, divided by ``scale``. Exactly invertible,
    no parameters. ``scale`` plays the role of a VAE's latent scale: set it to the data's standard deviation so
    latents have unit variance like the noise (the tones set: 0.26).
    """

    def __init__(self, sample_rate: int, audio_channels: int = 2, patch_size: int = 32, scale: float = 1.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.sample_rate = sample_rate
        self.scale = scale
        self.audio_channels = audio_channels
        self.latent_channels = audio_channels * patch_size
        self.downsampling_ratio = patch_size

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self.check_audio(audio)
        B, C, N = audio.shape
        p = self.downsampling_ratio
        return audio.reshape(B, C, N // p, p).permute(0, 1, 3, 2).reshape(B, C * p, N // p) / self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        B, _, T = latents.shape
        p = self.downsampling_ratio
        audio = latents.reshape(B, self.audio_channels, p, T).permute(0, 1, 3, 2)
        return audio.reshape(B, self.audio_channels, T * p) * self.scale


class MdctPretransform(Pretransform):
    """A circular MDCT: (B, C, N) -> (B, C * hop, N // hop), an orthogonal lapped transform, so ``decode`` inverts
    ``encode`` exactly (time-domain aliasing cancels between neighbouring frames, wrapping around at the ends).

    Frame ``j`` windows samples ``j hop .. j hop + 2 hop - 1`` (mod N) with the sine window and keeps ``hop``
    coefficients ``X[k] = sqrt(2 / hop) sum_n w[n] x[n] cos(pi / hop (n + 1/2 + hop / 2)(k + 1/2))``; coefficient
    ``k`` of channel ``c`` goes to channel ``c * hop + k``, divided by ``scale``. A harmonic sits in a fixed channel
    whatever its phase, where raw patches (``PatchPretransform``) scatter it over every channel.
    """

    def __init__(self, sample_rate: int, audio_channels: int = 2, patch_size: int = 32, scale: float = 1.0):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.sample_rate, self.scale, self.audio_channels = sample_rate, scale, audio_channels
        self.latent_channels = audio_channels * patch_size
        self.downsampling_ratio = hop = patch_size
        n = torch.arange(2 * hop, dtype=torch.float64)
        k = torch.arange(hop, dtype=torch.float64)
        window = torch.sin(math.pi * (n + 0.5) / (2 * hop))
        basis = torch.cos(math.pi / hop * (n[:, None] + 0.5 + hop / 2) * (k[None] + 0.5))  # (2 hop, hop)
        self.register_buffer("analysis", (math.sqrt(2 / hop) * window[:, None] * basis).float(), persistent=False)

    def _frame_indices(self, length: int, device: torch.device) -> torch.Tensor:
        hop = self.downsampling_ratio
        starts = torch.arange(0, length, hop, device=device)
        return (starts[:, None] + torch.arange(2 * hop, device=device)[None]) % length  # (frames, 2 hop)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self.check_audio(audio)
        B, C, N = audio.shape
        frames = audio[..., self._frame_indices(N, audio.device)]  # (B, C, T, 2 hop)
        coefficients = frames @ self.analysis.to(audio.dtype)  # (B, C, T, hop)
        return coefficients.transpose(2, 3).reshape(B, C * self.downsampling_ratio, -1) / self.scale

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        B, _, T = latents.shape
        hop = self.downsampling_ratio
        coefficients = latents.reshape(B, self.audio_channels, hop, T).transpose(2, 3) * self.scale  # (B, C, T, hop)
        frames = coefficients @ self.analysis.to(latents.dtype).T  # (B, C, T, 2 hop), time-aliased
        audio = latents.new_zeros(B, self.audio_channels, T * hop)
        index = self._frame_indices(T * hop, latents.device).flatten()
        return audio.index_add_(-1, index, frames.flatten(-2))


def oobleck_vae(
    channels: int = 128,
    c_mults: tuple[int, ...] = (1, 2, 4, 8, 16),
    strides: tuple[int, ...] = (2, 4, 4, 8, 8),
    latent_dim: int = 64,
    audio_channels: int = 2,
    sample_rate: int = 44100,
) -> AutoencoderOobleck:
    """The Oobleck VAE of Stable Audio Open (1.0 and Small share it), in the stable-audio-tools config's terms."""
    if channels != 2 * latent_dim:
        # diffusers ties the encoder's output width (mean and scale) to its base width
        raise ValueError(f"AutoencoderOobleck needs channels == 2 * latent_dim, got {channels} and {latent_dim}")
    return AutoencoderOobleck(
        encoder_hidden_size=channels,
        downsampling_ratios=list(strides),
        channel_multiples=list(c_mults),
        decoder_channels=channels,
        decoder_input_channels=latent_dim,
        audio_channels=audio_channels,
        sampling_rate=sample_rate,
    )


class OobleckPretransform(Pretransform):
    """The Stable Audio VAE. ``encode`` samples the posterior (as stable-audio-tools does when it pre-encodes
    training data) unless ``sample_posterior`` is false, in which case it returns the posterior mean."""

    def __init__(self, vae: AutoencoderOobleck, sample_posterior: bool = True):
        super().__init__()
        self.vae = vae.requires_grad_(False).eval()
        cfg = vae.config
        self.sample_rate = cfg.sampling_rate
        self.audio_channels = cfg.audio_channels
        self.latent_channels = cfg.decoder_input_channels
        self.downsampling_ratio = int(torch.tensor(cfg.downsampling_ratios).prod())
        self.sample_posterior = sample_posterior

    def train(self, mode: bool = True) -> OobleckPretransform:
        super().train(mode)
        self.vae.eval()  # frozen
        return self

    def encode(self, audio: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        self.check_audio(audio)
        posterior = self.vae.encode(audio).latent_dist
        return posterior.sample(generator) if self.sample_posterior else posterior.mean

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Audio in ``latents``' dtype; the decoder runs in its own (``arc.fast``'s bf16 decoder)."""
        self.check_latents(latents)
        dtype = next(self.vae.decoder.parameters()).dtype  # the first conv's: arc.fast's bf16 decoder
        return self.vae.decode(latents.to(dtype)).sample.to(latents.dtype)

    def fold_weight_norm(self) -> OobleckPretransform:
        """Fold weight norm into plain weights, in place: the same function without its reparametrisation, for
        the exporters (a weight-normed module cannot even be deep-copied) and the fast decoder."""
        for module in self.modules():
            if hasattr(module, "weight_g"):
                torch.nn.utils.remove_weight_norm(module)
            elif parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        return self
