"""Exponential moving average of a module's weights, with ema-pytorch's warm-up (as stable-audio-tools uses it)."""

from __future__ import annotations

import copy

import torch
from torch import nn


def warmup_decay(update: int, beta: float, power: float = 0.75, inv_gamma: float = 1.0, after: int = 1) -> float:
    """The decay of the ``update``-th EMA update (1-based) under ema-pytorch's warm-up (SPEC 3.7).

    With ``e = max(update - after - 1, 0)``: ``0`` (a plain copy) while ``e = 0``, else
    ``clamp(1 - (1 + e / inv_gamma) ** -power, 0, beta)``. stable-audio-tools: beta 0.9999, power 3/4,
    inv_gamma 1, ``update_after_step`` 1, so updates 1 and 2 copy, update 3 has decay 0.41, update 100 0.97,
    and beta is reached after about 2e5 updates.
    """
    e = max(update - after - 1, 0)
    if e == 0:
        return 0.0
    return min(max(1 - (1 + e / inv_gamma) ** -power, 0.0), beta)


class EMA(nn.Module):
    """A frozen copy of ``source`` whose parameters track it: ``ema = decay * ema + (1 - decay) * p``.

    Args:
        source: the module to average (copied now).
        beta: the decay, or with ``warmup`` its ceiling.
        warmup: ramp the decay up from 0 (``warmup_decay``), so the average follows training from its first
            updates instead of holding the starting weights for ~1 / (1 - beta) updates.

    Buffers are copied, not averaged. The copy is always in eval mode and never needs gradients, so an optimiser
    built from ``requires_grad`` parameters leaves it alone; it is saved in the owner's ``state_dict`` under
    ``<name>.module.``, the update count under ``<name>.num_updates`` (so a resumed run continues the warm-up).
    """

    def __init__(self, source: nn.Module, beta: float, warmup: bool = True):
        super().__init__()
        if not 0 <= beta <= 1:
            raise ValueError(f"EMA decay must be in [0, 1], got {beta}")
        self.beta = beta
        self.warmup = warmup
        self.module = copy.deepcopy(source).requires_grad_(False).eval()
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    def train(self, mode: bool = True) -> EMA:
        super().train(mode)
        self.module.eval()  # an average of weights is only ever evaluated
        return self

    def next_decay(self) -> float:
        """The decay the next ``update`` will use."""
        return warmup_decay(int(self.num_updates) + 1, self.beta) if self.warmup else self.beta

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step towards ``source``, which must have the same parameter and buffer names."""
        params = dict(source.named_parameters())
        if params.keys() != dict(self.module.named_parameters()).keys():
            raise ValueError("EMA.update: the source module's parameters differ from the averaged copy's")
        decay = self.next_decay()
        for name, ema_param in self.module.named_parameters():
            ema_param.lerp_(params[name].detach().to(ema_param.dtype), 1 - decay)
        buffers = dict(source.named_buffers())
        for name, ema_buffer in self.module.named_buffers():
            ema_buffer.copy_(buffers[name])
        self.num_updates += 1
