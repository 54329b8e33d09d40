"""Samplers for rectified-flow models: pure functions with one signature.

Every sampler is ``sample_x(velocity, x, ts, generator, callback=None) -> x0``: ``velocity(x_t, t)`` is the
(possibly guided) model, ``x`` the starting latent at time ``ts[0]``, ``ts`` the decreasing schedule ending at 0,
and ``generator`` the only source of randomness, so a seed reproduces a sample exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from arc.flow import Generators, add_noise, denoise, randn
from arc.models.conditioners import Conditioning

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]


def logsnr_timesteps(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """Ping-pong schedule (SPEC 4): ``t = sigmoid(-linspace(logsnr_max0, 2, steps + 1))``, ``t[0] = sigma_max``,
    ``t[-1] = 0``; ``logsnr_max0 = -6`` when ``sigma_max = 1``, else ``log((1 - sigma_max) / sigma_max)``."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_max <= 1:
        raise ValueError(f"sigma_max must be in (0, 1], got {sigma_max}")
    logsnr_max0 = -6.0 if sigma_max == 1 else math.log((1 - sigma_max) / sigma_max)
    ts = torch.sigmoid(-torch.linspace(logsnr_max0, 2.0, steps + 1, dtype=torch.float64))
    ts[0], ts[-1] = sigma_max, 0.0
    return ts.float()


def linear_timesteps(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """Euler schedule: ``linspace(sigma_max, 0, steps + 1)``, as stable-audio-tools uses for rectified flow."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(sigma_max, 0.0, steps + 1)


def initial_latent(
    shape: tuple[int, ...], sigma_max: float, generator: Generators, x_init: torch.Tensor | None = None
) -> torch.Tensor:
    """Noise for text-to-audio; ``(1 - sigma_max) x_init + sigma_max eps`` for audio-to-audio."""
    noise = randn(shape, generator, like=x_init)
    if x_init is None:
        if sigma_max != 1:
            raise ValueError(f"sigma_max={sigma_max} < 1 needs an initial latent (audio-to-audio)")
        return noise
    return add_noise(x_init, noise, torch.tensor(sigma_max))


def sample_pingpong(
    velocity: VelocityFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    generator: Generators,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Ping-pong sampling: jump to the clean estimate, re-noise with fresh noise to the next level."""
    ones = x.new_ones(x.shape[0])
    for i in range(len(ts) - 1):
        x0_hat = denoise(x, ts[i], velocity(x, ts[i] * ones))
        x = add_noise(x0_hat, randn(tuple(x.shape), generator, like=x), ts[i + 1])
        if callback is not None:
            callback({"i": i, "t": ts[i], "x": x, "denoised": x0_hat})
    return x0_hat


def sample_euler(
    velocity: VelocityFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    generator: Generators,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Euler steps of the probability-flow ODE ``dx/dt = v``; deterministic given ``x`` (``generator`` unused)."""
    ones = x.new_ones(x.shape[0])
    for i in range(len(ts) - 1):
        v = velocity(x, ts[i] * ones)
        x = x + (ts[i + 1] - ts[i]) * v
        if callback is not None:
            callback({"i": i, "t": ts[i], "x": x, "denoised": denoise(x, ts[i + 1], v)})
    return x


SAMPLERS = {"pingpong": sample_pingpong, "euler": sample_euler}


def guided_velocity(
    velocity: Callable[[torch.Tensor, torch.Tensor, Conditioning], torch.Tensor], cond: Conditioning, cfg_scale: float
) -> VelocityFn:
    """Classifier-free guidance: ``v = v_uncond + w (v_cond - v_uncond)``.

    The unconditional branch zeroes the cross-attention tokens and keeps the global (duration) vector, as
    Stable Audio does. ``cfg_scale = 1`` is the plain conditional model (one forward pass).
    """
    if cfg_scale == 1:
        return lambda x, t: velocity(x, t, cond)
    uncond = Conditioning(torch.zeros_like(cond.cross_attn_cond), cond.cross_attn_mask, cond.global_cond)
    both = Conditioning(
        torch.cat([cond.cross_attn_cond, uncond.cross_attn_cond]),
        torch.cat([cond.cross_attn_mask, uncond.cross_attn_mask]),
        torch.cat([cond.global_cond, uncond.global_cond]),
    )

    def guided(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_cond, v_uncond = velocity(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return v_uncond + cfg_scale * (v_cond - v_uncond)

    return guided
