"""Adversarial losses of ARC post-training (SPEC 3), each written once.

Scores are discriminator logits, per time patch: (B, 1, T'). Means run over batch and patches; the pairing in
the relativistic losses is element-wise between two score maps of the same batch items.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def relativistic_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``mean softplus(-(D(real) - D(fake)))``: D learns to score each real above its paired fake."""
    return F.softplus(-(real - fake)).mean()


def relativistic_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """``mean softplus(D(real) - D(fake))``: G learns to make each fake score above its paired real."""
    return F.softplus(real - fake).mean()


def contrastive_d_loss(matched: torch.Tensor, mismatched: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``mean over valid items of softplus(-(D(x, c) - D(x, c~)))``: real audio scores higher under its own prompt
    ``c`` than under a mismatched one ``c~``. ``valid`` (B,) bool masks out items without a true negative; with none
    valid the loss is 0 (and still part of the graph)."""
    per_item = F.softplus(-(matched - mismatched)).flatten(1).mean(dim=1)  # (B,)
    weights = valid.to(per_item.dtype)
    return (per_item * weights).sum() / weights.sum().clamp(min=1.0)


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN (the ablation): ``mean (D(real) - 1)^2 + mean D(fake)^2``."""
    return (real - 1).pow(2).mean() + fake.pow(2).mean()


def lsgan_g_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN generator loss ``mean (D(fake) - 1)^2`` (``real`` unused: same signature as the others)."""
    del real
    return (fake - 1).pow(2).mean()


def approx_r1r2_penalty(
    score: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    real_scores: torch.Tensor,
    fake_scores: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite-difference R1 and R2 (no double backprop): per item ``sum((D(x + sigma z) - D(x))^2)`` over patches,
    averaged over the batch, for reals (R1) and fakes (R2). D's penalty is ``gamma * (R1 + R2) / 2``."""

    def penalty(x: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        z = torch.randn(x.shape, generator=generator, device=x.device if generator is None else generator.device)
        return (score(x + sigma * z.to(x)) - scores).pow(2).flatten(1).sum(dim=1).mean()

    return penalty(real, real_scores), penalty(fake, fake_scores)


def mismatched_prompts(prompts: list[str]) -> tuple[list[str], torch.Tensor]:
    """Negatives for the contrastive loss: item ``i`` gets prompt ``(i + 1) % B`` in a NEW list (the batch is never
    mutated), and ``valid[i]`` is false where that prompt equals item i's own (duplicate captions; a batch of 1)."""
    shifted = [prompts[(i + 1) % len(prompts)] for i in range(len(prompts))]
    valid = torch.tensor([a != b for a, b in zip(prompts, shifted, strict=True)], dtype=torch.bool)
    return shifted, valid
