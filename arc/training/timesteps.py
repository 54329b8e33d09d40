"""Training-time samplers of the flow time ``t`` (``t = 1`` is pure noise, ``t = 0`` data; SPEC 2).

Each is a pure function of an explicit ``torch.Generator``: draws are made on the generator's device, in float32.
"""

from __future__ import annotations

import math

import torch


def _check_n(n: int) -> None:
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")


def trunc_logit_normal(n: int, generator: torch.Generator, left: float = 0.075) -> torch.Tensor:
    """SAO Small's pre-training sampler (stable-audio-tools' ``trunc_logit_normal``), (n,) in [0, 1].

    A logit-normal ``v = sigmoid(z)``, ``z ~ N(0, 1)``, truncated to ``v in [left, 1)`` by inverse-CDF sampling,
    rescaled to [0, 1) and flipped so that most mass sits at high noise::

        u = Phi(logit(left)) + (1 - Phi(logit(left))) Phi(z)
        v = sigmoid(Phi^-1(u))
        t = 1 - (v - left) / (1 - left)
    """
    _check_n(n)
    if not 0 < left < 1:
        raise ValueError(f"left must be in (0, 1), got {left}")
    z = torch.randn(n, generator=generator, device=generator.device)
    lower = torch.special.ndtr(torch.tensor(math.log(left / (1 - left)), device=z.device))
    u = lower + (1 - lower) * torch.special.ndtr(z)
    v = torch.sigmoid(torch.special.ndtri(u))
    return 1 - (v - left) / (1 - left)


def logsnr_uniform(n: int, generator: torch.Generator, low: float = -6.0, high: float = 2.0) -> torch.Tensor:
    """``t = sigmoid(-lambda)`` with the log-SNR ``lambda = log((1 - t) / t) ~ U(low, high)``; (n,) in (0, 1)."""
    _check_n(n)
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    logsnr = low + (high - low) * torch.rand(n, generator=generator, device=generator.device)
    return torch.sigmoid(-logsnr)


def logit_normal(n: int, generator: torch.Generator) -> torch.Tensor:
    """``t = sigmoid(z)``, ``z ~ N(0, 1)``; (n,) in (0, 1), symmetric about 1/2."""
    _check_n(n)
    return torch.sigmoid(torch.randn(n, generator=generator, device=generator.device))
