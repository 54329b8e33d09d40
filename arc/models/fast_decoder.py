"""The Oobleck VAE decoder rewritten for speed: the same function as diffusers' ``OobleckDecoder``, built from its
weights, for ``arc.fast``.

What changes, and why (measured on a 2-core AVX-512/AMX Xeon, experiments/benchmarks/README.md):
- Every ``Conv1d`` / ``ConvTranspose1d`` runs as its 2-D twin on ``(B, C, 1, T)`` tensors in ``channels_last``
  memory (NHWC). oneDNN's bf16 AMX kernels take that layout: a 128-channel, kernel-7 convolution over 262144
  frames ran at 644 GFLOP/s that way against 131 GFLOP/s as an NCW ``conv1d``.
- Weight norm is folded and the snake's ``exp(alpha)``, ``1 / (exp(beta) + 1e-9)`` precomputed once.
- The snake ``x + sin(alpha x)^2 / beta`` is one elementwise kernel when ``fused`` (``torch.compile`` of that
  function alone, dynamic shapes: compiled once, a few seconds), instead of five passes over memory in eager
  PyTorch; it computes in fp32 whatever the storage dtype.
"""

from __future__ import annotations

import torch
from diffusers.models.autoencoders.autoencoder_oobleck import OobleckDecoder, OobleckResidualUnit, Snake1d
from torch import nn


def snake(x: torch.Tensor, alpha: torch.Tensor, inv_beta: torch.Tensor) -> torch.Tensor:
    """``x + sin(alpha x)^2 / beta`` in fp32, returned in ``x``'s dtype; ``alpha``, ``inv_beta`` (1, C, 1, 1)."""
    x32 = x.float()
    return (x32 + inv_beta * torch.sin(alpha * x32).pow(2)).to(x.dtype)


fused_snake = torch.compile(snake, dynamic=True)


def _folded_weight(conv: nn.Module) -> torch.Tensor:
    """The effective weight of a (possibly weight-normed) convolution."""
    if hasattr(conv, "weight_g"):  # torch.nn.utils.weight_norm, as diffusers builds it
        return torch._weight_norm(conv.weight_v, conv.weight_g, 0).detach()
    return conv.weight.detach()


class Snake(nn.Module):
    def __init__(self, source: Snake1d, fused: bool):
        super().__init__()
        alpha, beta = source.alpha.detach(), source.beta.detach()  # (1, C, 1)
        if source.logscale:
            alpha, beta = alpha.exp(), beta.exp()
        self.register_buffer("alpha", alpha[..., None].float())  # (1, C, 1, 1)
        self.register_buffer("inv_beta", (beta + 1e-9).reciprocal()[..., None].float())
        self.fn = fused_snake if fused else snake

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x, self.alpha, self.inv_beta)


def _conv(source: nn.Conv1d) -> nn.Conv2d:
    (k,), (d,), (s,), (p,) = source.kernel_size, source.dilation, source.stride, source.padding
    conv = nn.Conv2d(
        source.in_channels, source.out_channels, (1, k), (1, s), (0, p), (1, d), bias=source.bias is not None
    )
    conv.weight.data = _folded_weight(source)[:, :, None, :].clone()  # (out, in, 1, k)
    if source.bias is not None:
        conv.bias.data = source.bias.detach().clone()
    return conv


def _conv_transpose(source: nn.ConvTranspose1d) -> nn.ConvTranspose2d:
    (k,), (s,), (p,) = source.kernel_size, source.stride, source.padding
    conv = nn.ConvTranspose2d(source.in_channels, source.out_channels, (1, k), (1, s), (0, p))
    conv.weight.data = _folded_weight(source)[:, :, None, :].clone()  # (in, out, 1, k)
    conv.bias.data = source.bias.detach().clone()
    return conv


class ResidualUnit(nn.Module):
    """``x + conv1x1(snake(conv7_dilated(snake(x))))``; the convolutions keep the length (padding = 3 dilation)."""

    def __init__(self, source: OobleckResidualUnit, fused: bool):
        super().__init__()
        self.snake1, self.conv1 = Snake(source.snake1, fused), _conv(source.conv1)
        self.snake2, self.conv2 = Snake(source.snake2, fused), _conv(source.conv2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.snake2(self.conv1(self.snake1(x))))


class FastOobleckDecoder(nn.Module):
    """Latents (B, latent_channels, T) -> audio (B, audio_channels, T * prod(strides)), in the weights' dtype.

    Built from a diffusers ``OobleckDecoder`` (its weights copied, weight norm folded). ``dtype`` is the
    convolutions' (weights and activations between layers); the snakes' alpha and 1 / beta stay fp32 and the snake
    computes in fp32. Move it with ``.to(device)`` only: ``.to(dtype)`` would round the snake's parameters too.
    """

    def __init__(self, source: OobleckDecoder, fused_snake: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__()
        self.conv_in = _conv(source.conv1)
        self.blocks = nn.ModuleList()
        for block in source.block:
            units = [ResidualUnit(u, fused_snake) for u in (block.res_unit1, block.res_unit2, block.res_unit3)]
            self.blocks.append(nn.Sequential(Snake(block.snake1, fused_snake), _conv_transpose(block.conv_t1), *units))
        self.snake_out = Snake(source.snake1, fused_snake)
        self.conv_out = _conv(source.conv2)
        self.fused_snake = fused_snake
        for module in self.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                module.to(dtype, memory_format=torch.channels_last)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        dtype = self.conv_in.weight.dtype  # the convolutions'; the snakes' parameters are fp32
        x = latents.to(dtype)[:, :, None, :].contiguous(memory_format=torch.channels_last)  # (B, C, 1, T) NHWC
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x)
        x = self.conv_out(self.snake_out(x))  # (B, audio_channels, 1, N)
        return x[:, :, 0, :].contiguous()

    def extra_repr(self) -> str:
        return f"fused_snake={self.fused_snake}"
