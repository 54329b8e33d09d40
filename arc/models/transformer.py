"""Transformer blocks of the Stable Audio diffusion transformer.

Pre-norm blocks of self-attention (rotary positions, optional QK LayerNorm), cross-attention to the
conditioning tokens and a SwiGLU feed-forward, as in stable-audio-tools' ``ContinuousTransformer``.
Parameter names follow stable-audio-tools so that official checkpoints map onto them with a few renames
(see ``arc.releases``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm(nn.Module):
    """LayerNorm with a learned gain and a fixed (buffer) bias.

    Stable Audio trains its norms without a bias: the bias exists only as a zero buffer. Keeping it a buffer
    (not a parameter) reproduces that, and still lets a checkpoint that carries a bias (diffusers) load exactly.
    """

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.register_buffer("bias", torch.zeros(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


def rotary_frequencies(seq_len: int, rotary_dim: int, base: float = 10000.0, device=None) -> torch.Tensor:
    """Rotary angles ``(seq_len, rotary_dim)``: position ``n`` times ``base ** (-2i / rotary_dim)``, repeated twice.

    The two halves of the last axis hold the same angles (the "rotate half" convention).
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, rotary_dim, 2, device=device, dtype=torch.float32) / rotary_dim))
    angles = torch.outer(torch.arange(seq_len, device=device, dtype=torch.float32), inv_freq)
    return torch.cat([angles, angles], dim=-1)


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``angles.shape[-1]`` channels of ``x`` (B, nh, T, hs) by ``angles`` (T, rd), in float32."""
    rot_dim = angles.shape[-1]
    x_rot, x_pass = x[..., :rot_dim].float(), x[..., rot_dim:]
    x1, x2 = x_rot.chunk(2, dim=-1)
    rotated_half = torch.cat([-x2, x1], dim=-1)
    x_rot = x_rot * angles.cos() + rotated_half * angles.sin()
    return torch.cat([x_rot.to(x.dtype), x_pass], dim=-1)


class Attention(nn.Module):
    """Multi-head attention; self-attention when ``context_dim`` is None, else cross-attention.

    Cross-attention keys/values may have fewer heads than the queries (``context_dim // head_dim``): each is
    shared by consecutive query heads, as in Stable Audio Open 1.0 (768-d context, 24 query heads of 64).
    """

    def __init__(self, dim: int, head_dim: int, context_dim: int | None = None, qk_norm: bool = False):
        super().__init__()
        if dim % head_dim:
            raise ValueError(f"attention width {dim} is not a multiple of head_dim {head_dim}")
        self.num_heads = dim // head_dim
        self.head_dim = head_dim
        self.is_cross = context_dim is not None
        if self.is_cross:
            if context_dim % head_dim or self.num_heads % (context_dim // head_dim):
                raise ValueError(
                    f"context_dim {context_dim} does not split into heads of {head_dim} that divide {dim}"
                )
            self.kv_heads = context_dim // head_dim
            self.to_q = nn.Linear(dim, dim, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * context_dim, bias=False)
        else:
            self.kv_heads = self.num_heads
            self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim, bias=False)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6) if qk_norm else nn.Identity()

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, rotary: torch.Tensor | None = None
    ) -> torch.Tensor:
        B, T, C = x.shape
        if self.is_cross:
            q = self.to_q(x)
            k, v = self.to_kv(context).chunk(2, dim=-1)
        else:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        q = q.view(B, T, self.num_heads, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, -1, self.kv_heads, self.head_dim).transpose(1, 2)  # (B, kv, S, hs)
        v = v.view(B, -1, self.kv_heads, self.head_dim).transpose(1, 2)
        if self.kv_heads != self.num_heads:
            k = k.repeat_interleave(self.num_heads // self.kv_heads, dim=1)  # (B, nh, S, hs)
            v = v.repeat_interleave(self.num_heads // self.kv_heads, dim=1)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, nh, T, hs)
        return self.to_out(out.transpose(1, 2).reshape(B, T, C))


class SwiGLU(nn.Module):
    """Feed-forward ``proj_out(a * silu(g))`` with ``[a, g] = proj_in(x)``."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(a * F.silu(gate))


class TransformerBlock(nn.Module):
    """``x + SelfAttn(LN x)``, then ``+ CrossAttn(LN x, context)``, then ``+ FF(LN x)``.

    With ``global_dim > 0`` (stable-audio-tools' adaLN blocks) a global vector ``g`` (B, global_dim) modulates the
    self-attention and feed-forward branches: ``x + sigmoid(1 - gate) * F(LN(x) * (1 + scale) + shift)``, where
    ``scale, shift, gate`` come from ``Linear(SiLU g)``, zero at initialisation.
    """

    def __init__(self, dim: int, head_dim: int, context_dim: int, qk_norm: bool, global_dim: int = 0):
        super().__init__()
        self.pre_norm = LayerNorm(dim)
        self.self_attn = Attention(dim, head_dim, qk_norm=qk_norm)
        self.cross_attend_norm = LayerNorm(dim)
        self.cross_attn = Attention(dim, head_dim, context_dim=context_dim, qk_norm=qk_norm)
        self.ff_norm = LayerNorm(dim)
        self.ff = SwiGLU(dim)
        self.to_scale_shift_gate = None
        if global_dim > 0:
            self.to_scale_shift_gate = nn.Sequential(nn.SiLU(), nn.Linear(global_dim, 6 * dim, bias=False))
            nn.init.zeros_(self.to_scale_shift_gate[1].weight)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, rotary: torch.Tensor, global_cond: torch.Tensor | None = None
    ) -> torch.Tensor:
        if (global_cond is None) != (self.to_scale_shift_gate is None):
            raise ValueError("global_cond must be given exactly when the block was built with global_dim > 0")
        if global_cond is None:
            x = x + self.self_attn(self.pre_norm(x), rotary=rotary)
            x = x + self.cross_attn(self.cross_attend_norm(x), context=context)
            return x + self.ff(self.ff_norm(x))
        scale_self, shift_self, gate_self, scale_ff, shift_ff, gate_ff = self.to_scale_shift_gate(global_cond)[
            :, None
        ].chunk(6, dim=-1)  # each (B, 1, dim)
        h = self.self_attn(self.pre_norm(x) * (1 + scale_self) + shift_self, rotary=rotary)
        x = x + h * torch.sigmoid(1 - gate_self)
        x = x + self.cross_attn(self.cross_attend_norm(x), context=context)
        h = self.ff(self.ff_norm(x) * (1 + scale_ff) + shift_ff)
        return x + h * torch.sigmoid(1 - gate_ff)
