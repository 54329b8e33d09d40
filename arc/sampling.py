"""Samplers for rectified-flow models: pure functions with one signature, and the schedules they step along.

Every sampler is ``sample_x(velocity, x, ts, generator, callback=None) -> x0``: ``velocity(x_t, t)`` is the
(possibly guided) model, ``x`` the starting latent at time ``ts[0]``, ``ts`` the decreasing schedule ending at 0,
and ``generator`` the only source of randomness, so a seed reproduces a sample exactly. These are the samplers
stable-audio-tools offers for rectified-flow models (``euler``, ``dpmpp``, ``pingpong``), on its schedule.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from arc.errors import InvalidInputError
from arc.flow import Generators, add_noise, denoise, randn
from arc.models.conditioners import Conditioning

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]


def _check_schedule(steps: int, sigma_max: float) -> None:
    if steps < 1:
        raise InvalidInputError(f"steps must be >= 1, got {steps}")
    if not 0 < sigma_max <= 1:
        raise InvalidInputError(f"sigma_max must be in (0, 1], got {sigma_max}")


def logsnr_timesteps(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """stable-audio-tools' ``sample_rf`` schedule, for every rectified-flow sampler (SPEC 4):
    ``t = sigmoid(-linspace(logsnr_max, 2, steps + 1))``, ``t[0] = sigma_max``, ``t[-1] = 0``; ``logsnr_max = -6``
    when ``sigma_max = 1``, else ``log((1 - sigma_max) / sigma_max + 1e-6)`` (the reference's 1e-6 included)."""
    _check_schedule(steps, sigma_max)
    logsnr_max = -6.0 if sigma_max == 1 else math.log((1 - sigma_max) / sigma_max + 1e-6)
    ts = torch.sigmoid(-torch.linspace(logsnr_max, 2.0, steps + 1, dtype=torch.float64))
    ts[0], ts[-1] = sigma_max, 0.0
    return ts.float()


def linear_timesteps(steps: int, sigma_max: float = 1.0) -> torch.Tensor:
    """``linspace(sigma_max, 0, steps + 1)``: uniform in t. stable-audio-tools' samplers build this only when called
    without a schedule (its training demos); its generation code passes the logSNR schedule instead."""
    _check_schedule(steps, sigma_max)
    return torch.linspace(sigma_max, 0.0, steps + 1)


SCHEDULES = {"logsnr": logsnr_timesteps, "linear": linear_timesteps}


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


def sample_dpmpp(
    velocity: VelocityFn,
    x: torch.Tensor,
    ts: torch.Tensor,
    generator: Generators,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DPM-Solver++(2M) for flows (stable-audio-tools' ``sample_flow_dpmpp``); deterministic (``generator`` unused).

    With ``lambda(t) = log((1 - t) / t)``, ``h = lambda(t_next) - lambda(t)`` and the clean estimate
    ``d = x - t v``: ``x <- (t_next / t) x - (1 - t_next) expm1(-h) d'``, where ``d' = d`` on the first and last
    steps and otherwise the second-order ``d' = (1 + 1 / 2r) d - (1 / 2r) d_prev``, ``r = h_prev / h``.
    """
    ones = x.new_ones(x.shape[0])
    lam = torch.log(
        (1 - ts) / ts
    )  # -inf at t = 1, +inf at t = 0: there h = inf and expm1(-h) = -1, as in the reference
    denoised_prev = None
    for i in range(len(ts) - 1):
        t, t_next = ts[i], ts[i + 1]
        denoised = denoise(x, t, velocity(x, t * ones))
        h = lam[i + 1] - lam[i]
        if denoised_prev is None or t_next == 0:
            d = denoised
        else:
            r = (lam[i] - lam[i - 1]) / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * denoised_prev
        x = (t_next / t) * x - (1 - t_next) * torch.expm1(-h) * d
        denoised_prev = denoised
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "denoised": denoised})
    return x


SAMPLERS = {"pingpong": sample_pingpong, "euler": sample_euler, "dpmpp": sample_dpmpp}


@dataclass(frozen=True)
class SamplingDefaults:
    """How a model is sampled unless told otherwise."""

    sampler: str
    steps: int
    cfg_scale: float


# stable-audio-tools' defaults per diffusion objective (its gradio UI, ``interface/interfaces/diffusion_cond.py``):
# a rectified-flow base model takes Euler, 50 steps, CFG 7; an ``rf_denoiser`` (post-trained, e.g. ARC and the
# Stable Audio Open Small release) takes ping-pong, 8 steps, no guidance. ``v`` models are not sampled by arc.
SAMPLING_DEFAULTS = {
    "rectified_flow": SamplingDefaults("euler", 50, 7.0),
    "rf_denoiser": SamplingDefaults("pingpong", 8, 1.0),
}


def sampling_defaults(diffusion_objective: str) -> SamplingDefaults:
    """The default sampler, steps and CFG scale of a model with this objective."""
    if diffusion_objective not in SAMPLING_DEFAULTS:
        raise InvalidInputError(
            f"arc's samplers need a rectified-flow model ({' or '.join(SAMPLING_DEFAULTS)}); this one is "
            f"{diffusion_objective!r} (Stable Audio Open 1.0 is a v-diffusion model: load it for comparison only)"
        )
    return SAMPLING_DEFAULTS[diffusion_objective]


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
