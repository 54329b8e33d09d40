"""Adversarial losses of ARC post-training (SPEC 3), each written once.

Scores are discriminator logits, per time patch: (B, 1, T'). Means run over batch and patches; the pairing in
the relativistic losses is element-wise between two score maps of the same batch items. ``mask`` (B, 1, T'),
where given, marks the patches of real (unpadded) audio: only those count.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Mask = torch.Tensor | None


def masked_mean(x: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """``sum(m x) / sum(m)`` over all elements (the plain mean without a mask); 0 where nothing is unmasked."""
    if mask is None:
        return x.mean()
    weight = mask.to(x.dtype).expand_as(x)
    return (x * weight).sum() / weight.sum().clamp(min=1.0)


def relativistic_d_loss(real: torch.Tensor, fake: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """``mean softplus(-(D(real) - D(fake)))``: D learns to score each real above its paired fake."""
    return masked_mean(F.softplus(-(real - fake)), mask)


def relativistic_g_loss(real: torch.Tensor, fake: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """``mean softplus(D(real) - D(fake))``: G learns to make each fake score above its paired real."""
    return masked_mean(F.softplus(real - fake), mask)


def contrastive_d_loss(
    matched: torch.Tensor, mismatched: torch.Tensor, valid: torch.Tensor, mask: Mask = None
) -> torch.Tensor:
    """``mean over valid items of softplus(-(D(x, c) - D(x, c~)))``: real audio scores higher under its own prompt
    ``c`` than under a mismatched one ``c~``. ``valid`` (B,) bool masks out items without a true negative; with none
    valid the loss is 0 (and still part of the graph)."""
    items = valid.to(matched.device)[:, None, None]
    patches = items if mask is None else items & mask
    return masked_mean(F.softplus(-(matched - mismatched)), patches)


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """Least-squares GAN (the ablation): ``mean (D(real) - 1)^2 + mean D(fake)^2``."""
    return masked_mean((real - 1).pow(2), mask) + masked_mean(fake.pow(2), mask)


def lsgan_g_loss(real: torch.Tensor, fake: torch.Tensor, mask: Mask = None) -> torch.Tensor:
    """Least-squares GAN generator loss ``mean (D(fake) - 1)^2`` (``real`` unused: same signature as the others)."""
    del real
    return masked_mean((fake - 1).pow(2), mask)


def approx_r1r2_penalty(
    score: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
    mask: Mask = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference R1 and R2 (no double backprop): per item ``sum((D(x + sigma z) - D(x))^2)`` over (real)
    patches, averaged over the batch, for reals (R1) and fakes (R2). D's penalty is ``gamma * (R1 + R2) / 2``."""

    def penalty(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        z = torch.randn(x.shape, generator=generator, device=x.device if generator is None else generator.device)
        sq = (score(x + sigma * z.to(x)) - scores).pow(2)
        if mask is not None:
            sq = sq * mask.to(sq.dtype)
        return sq.flatten(1).sum(dim=1).mean()

    return penalty(real, real_scores), penalty(fake, fake_scores)


def mismatched_prompts(prompts: list[str]) -> tuple[list[str], torch.Tensor]:
    """Negatives for the contrastive loss: item ``i`` gets prompt ``(i + 1) % B`` in a NEW list (the batch is never
    mutated), and ``valid[i]`` is false where that prompt equals item i's own (duplicate captions; a batch of 1)."""
    shifted = [prompts[(i + 1) % len(prompts)] for i in range(len(prompts))]
    valid = torch.tensor([a != b for a, b in zip(prompts, shifted, strict=True)], dtype=torch.bool)
    return shifted, valid
