"""The Stable Audio diffusion transformer (DiT).

Latents ``x`` (B, io_channels, T) become T tokens; every block cross-attends to the projected conditioning
tokens. The global embedding, the timestep embedding plus the projected global conditioning, is prepended as one
extra token (``global_cond_type="prepend"``, sequence T + 1, Stable Audio Open) or modulates every block
(``"adaLN"``, sequence T), or both (``"prepend_adaLN"``). Output is a velocity of the same shape as ``x``.
Matches stable-audio-tools' ``DiffusionTransformer`` with ``transformer_type="continuous_transformer"``;
``prepend_adaLN`` and ``pool_cond_tokens`` are arc's own.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from arc.models.transformer import TransformerBlock, rotary_frequencies

GLOBAL_COND_TYPES = ("prepend", "adaLN", "prepend_adaLN")


class FourierFeatures(nn.Module):
    """``[cos(2 pi t W), sin(2 pi t W)]`` with a fixed random ``W`` of shape (out_features // 2, 1)."""

    def __init__(self, out_features: int = 256):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features // 2, 1))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        # in the weight's dtype, kept fp32 by arc.fast: 2 pi t W reaches tens of radians, too many for bf16
        f = 2 * math.pi * t.to(self.weight.dtype)[:, None] @ self.weight.T  # (B, out_features // 2)
        return torch.cat([f.cos(), f.sin()], dim=-1)


def _projection(dim_in: int, dim_out: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim_out, bias=bias), nn.SiLU(), nn.Linear(dim_out, dim_out, bias=bias))


class DiffusionTransformer(nn.Module):
    """Stable Audio DiT.

    Args:
        io_channels: latent channels in and out.
        embed_dim: transformer width.
        depth: number of blocks.
        num_heads: attention heads (head dim = embed_dim // num_heads).
        cond_token_dim: width of the cross-attention conditioning tokens.
        global_cond_dim: width of the global conditioning vector (0 for none).
        project_cond_tokens: project the tokens to ``embed_dim`` (SAO Small) instead of keeping their width
            (SAO 1.0, whose cross-attention then has ``cond_token_dim // head_dim`` key/value heads).
        project_global_cond: project the global vector to ``embed_dim`` (must be true: it is added to the
            timestep embedding); kept as an argument because it is part of the official config.
        qk_norm: LayerNorm on queries and keys per head (SAO Small).
        timestep_features_dim: Fourier features of the timestep.
        global_cond_type: ``prepend`` (the global embedding is token 0: SAO 1.0 and Small), ``adaLN`` (it scales,
            shifts and gates every block's self-attention and feed-forward) or ``prepend_adaLN`` (both; arc's own:
            under rotary embeddings the prepended token is the one landmark of absolute time in the sequence).
        pool_cond_tokens: add a projection of the mean projected conditioning token to the global embedding, so
            the caption is a global condition too (zero when the tokens are, as in CFG's unconditional branch).
    """

    def __init__(
        self,
        io_channels: int = 64,
        embed_dim: int = 1024,
        depth: int = 16,
        num_heads: int = 8,
        cond_token_dim: int = 768,
        global_cond_dim: int = 768,
        project_cond_tokens: bool = True,
        project_global_cond: bool = True,
        qk_norm: bool = True,
        timestep_features_dim: int = 256,
        global_cond_type: str = "prepend",
        pool_cond_tokens: bool = False,
    ):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        if not project_global_cond:
            raise ValueError("project_global_cond=False is not supported: the global token must have width embed_dim")
        if global_cond_type not in GLOBAL_COND_TYPES:
            raise ValueError(f"global_cond_type must be one of {GLOBAL_COND_TYPES}, got {global_cond_type!r}")
        if cond_token_dim <= 0:
            raise ValueError(f"cond_token_dim must be positive (text conditioning), got {cond_token_dim}")
        self.io_channels = io_channels
        self.embed_dim = embed_dim
        self.depth = depth
        self.global_cond_type = global_cond_type
        self.head_dim = embed_dim // num_heads
        # Stable Audio rotates max(head_dim // 2, 32) channels of each head.
        self.rotary_dim = max(self.head_dim // 2, 32)

        self.timestep_features = FourierFeatures(timestep_features_dim)
        self.to_timestep_embed = _projection(timestep_features_dim, embed_dim, bias=True)
        context_dim = embed_dim if project_cond_tokens else cond_token_dim
        self.to_cond_embed = _projection(cond_token_dim, context_dim, bias=False)
        self.to_global_embed = _projection(global_cond_dim, embed_dim, bias=False) if global_cond_dim > 0 else None
        self.to_pooled_embed = nn.Linear(context_dim, embed_dim, bias=False) if pool_cond_tokens else None

        self.preprocess_conv = nn.Conv1d(io_channels, io_channels, 1, bias=False)
        self.project_in = nn.Linear(io_channels, embed_dim, bias=False)
        block_global_dim = embed_dim if global_cond_type.endswith("adaLN") else 0
        self.layers = nn.ModuleList(
            TransformerBlock(embed_dim, self.head_dim, context_dim, qk_norm, block_global_dim) for _ in range(depth)
        )
        self.project_out = nn.Linear(embed_dim, io_channels, bias=False)
        self.postprocess_conv = nn.Conv1d(io_channels, io_channels, 1, bias=False)
        self._zero_init_residual_outputs()

    def _zero_init_residual_outputs(self) -> None:
        # Stable Audio starts every residual branch and the 1x1 pre/post convs at zero.
        nn.init.zeros_(self.preprocess_conv.weight)
        nn.init.zeros_(self.postprocess_conv.weight)
        for block in self.layers:
            nn.init.zeros_(block.self_attn.to_out.weight)
            nn.init.zeros_(block.cross_attn.to_out.weight)
            nn.init.zeros_(block.ff.proj_out.weight)
            nn.init.zeros_(block.ff.proj_out.bias)

    @property
    def prepends_global_token(self) -> bool:
        """Whether the global embedding is token 0 of the sequence (``prepend``, ``prepend_adaLN``)."""
        return self.global_cond_type.startswith("prepend")

    def trunk(self, exit_layer: int) -> DiffusionTransformer:
        """A copy of this DiT's input layers and blocks ``0..exit_layer``, without the later blocks and the output
        layers: what the ARC discriminator runs (``forward(..., exit_layer=exit_layer)`` gives its hidden states)."""
        if not 0 <= exit_layer < self.depth:
            raise ValueError(f"exit_layer must be in [0, {self.depth - 1}], got {exit_layer}")
        trunk = copy.deepcopy(self)
        trunk.layers = nn.ModuleList(trunk.layers[: exit_layer + 1])
        trunk.depth = exit_layer + 1
        trunk.project_out = trunk.postprocess_conv = None
        return trunk

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cross_attn_cond: torch.Tensor,
        global_cond: torch.Tensor | None = None,
        exit_layer: int | None = None,
    ) -> torch.Tensor:
        """Velocity ``(B, io_channels, T)``; with ``exit_layer=i``, the hidden states after block ``i`` (0-based):
        ``(B, T + 1, embed_dim)`` with the prepended global token at position 0, ``(B, T, embed_dim)`` without it.

        ``cross_attn_cond`` is (B, S, cond_token_dim), ``global_cond`` (B, global_cond_dim), ``t`` (B,).
        No cross-attention mask is applied: padded tokens arrive as zero vectors, as in Stable Audio.
        """
        if exit_layer is not None and not 0 <= exit_layer < self.depth:
            raise ValueError(f"exit_layer must be in [0, {self.depth - 1}], got {exit_layer}")
        if exit_layer is None and self.project_out is None:
            raise ValueError(f"this DiT is a trunk without output layers: pass exit_layer={self.depth - 1}")
        if (global_cond is None) != (self.to_global_embed is None):
            raise ValueError("global_cond must be given exactly when the model has global_cond_dim > 0")
        B, C, T = x.shape
        if self.io_channels != C:
            raise ValueError(f"expected {self.io_channels} latent channels, got input of shape {tuple(x.shape)}")

        context = self.to_cond_embed(cross_attn_cond)  # (B, S, context_dim)
        global_embed = self.to_timestep_embed(self.timestep_features(t).to(x.dtype))  # (B, embed_dim)
        if global_cond is not None:
            global_embed = global_embed + self.to_global_embed(global_cond)
        if self.to_pooled_embed is not None:
            global_embed = global_embed + self.to_pooled_embed(context.mean(dim=1))

        x = self.preprocess_conv(x) + x
        h = self.project_in(x.transpose(1, 2))  # (B, T, embed_dim)
        prepend = self.prepends_global_token
        if prepend:
            h = torch.cat([global_embed[:, None], h], dim=1)  # (B, T + 1, embed_dim)
        rotary = rotary_frequencies(h.shape[1], self.rotary_dim, device=x.device)
        block_global = global_embed if self.layers[0].to_scale_shift_gate is not None else None
        for i, block in enumerate(self.layers):
            h = block(h, context, rotary, block_global)
            if i == exit_layer:
                return h

        out = self.project_out(h[:, 1:] if prepend else h).transpose(1, 2)  # (B, io_channels, T)
        return self.postprocess_conv(out) + out
