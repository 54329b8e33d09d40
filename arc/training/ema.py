"""Exponential moving average of a module's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA(nn.Module):
    """A frozen copy of ``source`` whose parameters track it: ``ema = decay * ema + (1 - decay) * p``.

    Buffers are copied, not averaged. The copy is always in eval mode and never needs gradients, so an optimiser
    built from ``requires_grad`` parameters leaves it alone; it is saved in the owner's ``state_dict`` under
    ``<name>.module.``.
    """

    def __init__(self, source: nn.Module, decay: float):
        super().__init__()
        if not 0 <= decay <= 1:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(source).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> EMA:
        super().train(mode)
        self.module.eval()  # an average of weights is only ever evaluated
        return self

    @torch.no_grad()
    def update(self, source: nn.Module) -> None:
        """One EMA step towards ``source``, which must have the same parameter and buffer names."""
        params = dict(source.named_parameters())
        if params.keys() != dict(self.module.named_parameters()).keys():
            raise ValueError("EMA.update: the source module's parameters differ from the averaged copy's")
        for name, ema_param in self.module.named_parameters():
            ema_param.lerp_(params[name].detach().to(ema_param.dtype), 1 - self.decay)
        buffers = dict(source.named_buffers())
        for name, ema_buffer in self.module.named_buffers():
            ema_buffer.copy_(buffers[name])
