"""Rectified-flow formulas (SPEC 2), each written once. ``t = 1`` is pure noise, ``t = 0`` is data."""

from __future__ import annotations

from collections.abc import Sequence

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


Generators = torch.Generator | Sequence[torch.Generator]


def randn(shape: tuple[int, ...], generator: Generators, like: torch.Tensor | None = None) -> torch.Tensor:
    """Standard normal noise from ``generator`` (drawn on the generator's device), moved to ``like``'s device and
    dtype. A list of generators draws item ``b`` of the batch from generator ``b``, so each item has its own seed
    and reproduces whatever batch it is generated in."""
    if isinstance(generator, torch.Generator):
        noise = torch.randn(shape, generator=generator, device=generator.device)
    else:
        if len(generator) != shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {shape[0]}")
        noise = torch.stack([torch.randn(shape[1:], generator=g, device=g.device) for g in generator])
    return noise if like is None else noise.to(device=like.device, dtype=like.dtype)
