"""Rectified-flow formulas (SPEC 2), each written once. ``t = 1`` is pure noise, ``t = 0`` is data."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch


def _bcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-item times (B,) or a scalar, shaped to broadcast against ``x`` (B, ...)."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1, *([1] * (x.ndim - 1))) if t.ndim == 1 else t


def add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - t) x0 + t eps``."""
    t = _bcast(t, x0)
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The velocity the network learns: ``v = eps - x0``."""
    return noise - x0


def denoise(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Clean estimate from a velocity prediction: ``x0_hat = x_t - t v``."""
    return x_t - _bcast(t, x_t) * v


class ReplayNoise:
    """Noise drawn elsewhere (e.g. by the device runner's NumPy generator), handed out in the order it was drawn:
    a sampler given one as its generator replays exactly that noise."""

    def __init__(self, noises: Sequence[torch.Tensor]):
        self._noises = list(noises)

    def __len__(self) -> int:
        """Draws left."""
        return len(self._noises)

    def draw(self, shape: tuple[int, ...]) -> torch.Tensor:
        if not self._noises:
            raise ValueError("ReplayNoise ran out: the sampler drew more noise than was recorded")
        noise = self._noises.pop(0)
        if tuple(noise.shape) != tuple(shape):
            raise ValueError(f"recorded noise of shape {tuple(noise.shape)}, the sampler asked for {tuple(shape)}")
        return noise


Generators = torch.Generator | Sequence[torch.Generator] | ReplayNoise


def randn(shape: tuple[int, ...], generator: Generators, like: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normal noise from ``generator`` (drawn on the generator's device), moved to ``like``'s device and
    dtype. A list of generators draws item ``b`` of the batch from generator ``b``, so each item has its own seed
    and reproduces whatever batch it is generated in; a ``ReplayNoise`` hands out its recorded noise."""
    if isinstance(generator, ReplayNoise):
        noise = generator.draw(shape)
    elif isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator, device=generator.device)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        noise = torch.stack([torch.randn(shape[1:], generator=g, device=g.device) for g in generator])
    return noise if like is None else noise.to(device=like.device, dtype=like.dtype)


@dataclass(frozen=True)
class TimeShift:
    """stable-audio-tools' length-dependent ``DistributionShift``: longer latents are trained at more noise.

    ``mu = -(base_shift + (max_shift - base_shift) (L - min_length) / (max_length - min_length))`` with
    ``L = clamp(seq_len, min_length, max_length)``, then ``t' = 1 - e^mu / (e^mu + (1 / (1 - t) - 1))``,
    computed as the equal ``t' = t / (t + e^mu (1 - t))``, which is finite at ``t = 1``. With ``mu < 0``,
    ``t' >= t``; ``t' = t`` at 0 and 1, and the map is increasing in ``t``.

    A model config's ``distribution_shift_options`` hold these fields. stable-audio-tools applies the shift to the
    pre-training time draws (and to its training demos' Euler schedule); its ``sample_rf`` (generation) passes an
    explicit logSNR schedule, so the shift never reaches generation, and arc's samplers do the same.
    """

    base_shift: float = 0.5
    max_shift: float = 1.15
    min_length: int = 256
    max_length: int = 4096

    def __post_init__(self):
        if not self.min_length < self.max_length:
            raise ValueError(f"min_length ({self.min_length}) must be below max_length ({self.max_length})")

    def __call__(self, t: torch.Tensor, seq_len: int) -> torch.Tensor:
        length = min(max(seq_len, self.min_length), self.max_length)
        span = (length - self.min_length) / (self.max_length - self.min_length)
        mu = -(self.base_shift + (self.max_shift - self.base_shift) * span)
        return t / (t + math.exp(mu) * (1 - t))
