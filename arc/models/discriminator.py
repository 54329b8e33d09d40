"""The ARC discriminator (SPEC 3.8): a DiT trunk run to an exit layer, then a 1-D ConvNeXt head -> patch logits."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from arc.models.conditioners import Conditioners, Conditioning
from arc.models.dit import DiffusionTransformer
from arc.models.wrapper import AudioDiffusionModel


def _wn_conv(c_in: int, c_out: int, kernel: int, stride: int = 1, padding: int = 0, groups: int = 1) -> nn.Conv1d:
    return weight_norm(nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups))


class ConvNeXtBlock(nn.Module):
    """``x + down(GELU(up(depthwise(x))))``, the last conv's bias zero-initialised.

    Its weight keeps its random init: a weight-normed zero weight has no direction, so its gradient is NaN.
    (stable-audio-tools zeroes ``proj_down.weight`` after ``weight_norm``, which the hook overwrites at the first
    forward, so its weight is random too.)
    """

    def __init__(self, dim: int, kernel_size: int = 7, mult: int = 4):
        super().__init__()
        self.dw_conv = _wn_conv(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.proj_up = _wn_conv(dim, dim * mult, 1)
        self.act = nn.GELU()
        self.proj_down = _wn_conv(dim * mult, dim, 1)
        nn.init.zeros_(self.proj_down.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_down(self.act(self.proj_up(self.dw_conv(x))))


class ConvNeXtHead(nn.Module):
    """Hidden states (B, T + 1, in_channels) -> logits (B, 1, T'): a 1x7 conv in, stages of ConvNeXt blocks each
    followed by a strided conv (kernel 2 * stride), a 1x3 conv to one channel.

    SAO Small: in 1024 -> 128 channels, channel mults (1, 2, 4), strides (1, 2, 2), 2 blocks per stage.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int = 128,
        c_mults: tuple[int, ...] = (1, 2, 4),
        strides: tuple[int, ...] = (1, 2, 2),
        blocks_per_stage: int = 2,
    ):
        super().__init__()
        if len(c_mults) != len(strides):
            raise ValueError(f"c_mults {c_mults} and strides {strides} must have the same length")
        widths = [channels] + [m * channels for m in c_mults]
        self.proj_in = _wn_conv(in_channels, channels, 7, padding=3)
        stages = []
        for i, stride in enumerate(strides):
            blocks = [ConvNeXtBlock(widths[i]) for _ in range(blocks_per_stage)]
            down = _wn_conv(widths[i], widths[i + 1], 2 * stride, stride=stride, padding=math.ceil(stride / 2))
            stages.append(nn.Sequential(*blocks, down))
        self.stages = nn.Sequential(*stages)
        self.proj_out = _wn_conv(widths[-1], 1, 3, padding=1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(hidden.transpose(1, 2))  # (B, channels, T + 1)
        return self.proj_out(self.stages(x))  # (B, 1, T')


class Discriminator(nn.Module):
    """D(x_s, s, c): its own conditioners and DiT trunk (copies of the generator's, all trained) and a head.

    Args:
        conditioners: D's own conditioners (a copy of the pretrained ones).
        trunk: a DiT trunk initialised from the pretrained generator (``DiffusionTransformer.trunk``): its blocks
            up to ``exit_layer``, no output layers.
        head: the ConvNeXt head; its ``in_channels`` must be the trunk's width.
        exit_layer: 0-based index of the last trunk block used (SAO Small: 12, i.e. 13 of 16 blocks).
    """

    def __init__(self, conditioners: Conditioners, trunk: DiffusionTransformer, head: ConvNeXtHead, exit_layer: int):
        super().__init__()
        if not 0 <= exit_layer < trunk.depth:
            raise ValueError(
                f"discriminator exit_layer must be in [0, {trunk.depth - 1}] for this trunk, got {exit_layer}"
            )
        if head.proj_in.in_channels != trunk.embed_dim:
            raise ValueError(
                f"discriminator head in_channels={head.proj_in.in_channels} must equal the trunk width "
                f"{trunk.embed_dim}"
            )
        self.conditioners = conditioners
        self.trunk = trunk
        self.head = head
        self.exit_layer = exit_layer

    def patch_mask(self, frame_mask: torch.Tensor, num_patches: int) -> torch.Tensor:
        """(B, T) mask of real latent frames -> (B, 1, T') mask of the score patches: the tokens (a prepended global
        token, always real, then the frames) resampled to the patches by nearest neighbour, as stable-audio-tools
        resamples padding masks."""
        tokens = frame_mask
        if self.trunk.prepends_global_token:
            tokens = torch.cat([frame_mask.new_ones(frame_mask.shape[0], 1), frame_mask], dim=1)  # (B, T + 1)
        return F.interpolate(tokens[:, None].float(), size=num_patches, mode="nearest") > 0.5

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Patch logits (B, 1, T') for noisy latents ``x`` (B, C, T) at level ``t`` (B,) under ``cond``."""
        hidden = self.trunk(x, t, cond.cross_attn_cond, cond.global_cond, exit_layer=self.exit_layer)
        return self.head(hidden)


def discriminator_from(
    generator: AudioDiffusionModel,
    exit_layer: int | None,
    channels: int = 128,
    c_mults: tuple[int, ...] = (1, 2, 4),
    strides: tuple[int, ...] = (1, 2, 2),
    blocks_per_stage: int = 2,
) -> Discriminator:
    """A discriminator initialised from a (pre-trained) generator: copies of its conditioners and of its DiT up to
    the exit layer (later blocks and the output layers are not copied: they would never get a gradient) as the
    trunk, and a fresh ConvNeXt head of the trunk's width. The generator is not modified."""
    if exit_layer is None:
        raise ValueError(
            f"the discriminator needs an exit layer: set module.discriminator.exit_layer to a block index in "
            f"[0, {generator.dit.depth - 1}] (SAO Small: 12)"
        )
    return Discriminator(
        copy.deepcopy(generator.conditioners),
        generator.dit.trunk(exit_layer),
        ConvNeXtHead(generator.dit.embed_dim, channels, tuple(c_mults), tuple(strides), blocks_per_stage),
        exit_layer,
    )
