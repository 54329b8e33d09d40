"""What the pre-training and ARC steps share: reading a batch (latents, their frame mask, conditioning) and the
per-step seeded random draws that make a resumed run draw what the uninterrupted one would have."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import lightning as L
import numpy as np
import torch
from torch import nn

from arc.models.conditioners import Conditioners, Conditioning
from arc.models.wrapper import AudioDiffusionModel

log = logging.getLogger(__name__)

Batch = Mapping[str, torch.Tensor | list[str]]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]


def latent_frame_mask(padding_mask: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(B, N) per-sample mask -> (B, num_frames) per-frame mask; a frame is real if any of its samples is."""
    B, N = padding_mask.shape
    if N % num_frames:
        raise ValueError(f"padding mask of {N} samples does not split into {num_frames} latent frames")
    return padding_mask.reshape(B, num_frames, N // num_frames).any(dim=-1)


def step_generator(device: torch.device, *key: int) -> torch.Generator:
    """A generator on ``device`` seeded by the integers ``key`` (e.g. seed, rank, epoch, batch): each step's
    draws are a pure function of where it is in training, so a resumed run draws what the original would have."""
    seed = int(np.random.SeedSequence(list(key)).generate_state(1, dtype=np.uint64)[0] >> 1)
    return torch.Generator(device=device).manual_seed(seed)


def batch_latents(model: AudioDiffusionModel, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean latents (B, C, T) and their (B, T) real-frame mask, from pre-encoded latents or raw audio."""
    if "latents" in batch:
        x0 = batch["latents"]
    else:
        with torch.no_grad():
            x0 = model.pretransform.encode(batch["audio"])
    if "padding_mask" not in batch:
        return x0, torch.ones(x0.shape[0], x0.shape[-1], dtype=torch.bool, device=x0.device)
    return x0, latent_frame_mask(batch["padding_mask"], x0.shape[-1])


def batch_conditioning(conditioners: Conditioners, batch: Batch, prompts: list[str] | None = None) -> Conditioning:
    """The batch's prompts (or ``prompts`` instead) and durations -> DiT conditioning (``seconds_start`` too when
    the conditioners have it)."""
    numbers = {"seconds_total": batch["seconds_total"]}
    if "seconds_start" in conditioners.numbers:
        numbers["seconds_start"] = batch["seconds_start"]
    return conditioners(batch["prompt"] if prompts is None else prompts, numbers)


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; training stops before the step is applied."""


def check_finite(losses: Mapping[str, torch.Tensor], where: str, trainer: L.Trainer) -> None:
    """Raise ``NonFiniteLossError`` if any loss is NaN or infinite, naming which, where, and the checkpoint to
    resume from: the newest one whose weights went on to give finite losses (``RunCheckpoint.verified_path``);
    the newest file may already hold the weights that diverged."""
    bad = [name for name, value in losses.items() if not torch.isfinite(value).all()]
    if bad:
        raise NonFiniteLossError(
            f"non-finite {', '.join(bad)} at {where}; the step was not applied. Resume from "
            f"{recovery_checkpoint(trainer)} with a lower learning rate (e.g. module.d_optimizer.lr=...; the "
            "configured rates replace the checkpoint's) or stronger gradient clipping"
        )


def recovery_checkpoint(trainer: L.Trainer) -> str:
    """The checkpoint to resume from after a divergence (see ``check_finite``), or a note that there is none."""
    callback = trainer.checkpoint_callback
    verified = getattr(callback, "verified_path", "")
    if verified:
        return f"ckpt_path={verified}"
    newest = getattr(callback, "last_model_path", "") or getattr(callback, "best_model_path", "")
    if newest:
        return f"ckpt_path={newest} (the newest checkpoint; no step has run on its weights yet)"
    return "the start (no checkpoint was written)"


def configured_lrs(optimizers: list[torch.optim.Optimizer]) -> list[list[float]]:
    """The learning rate of every parameter group, as the config built them (record before any resume)."""
    return [[group["lr"] for group in opt.param_groups] for opt in optimizers]


def apply_configured_lrs(optimizers: list[torch.optim.Optimizer], configured: list[list[float]]) -> None:
    """After a resume, the optimiser state from the checkpoint carries the old learning rates: put back the
    configured ones (resuming with a new lr is how one recovers from a divergence), and say so."""
    for i, (opt, lrs) in enumerate(zip(optimizers, configured, strict=True)):
        for group, lr in zip(opt.param_groups, lrs, strict=True):
            if group["lr"] != lr:
                old = group["lr"]
                log.info(
                    "optimizer %d: learning rate %.3g from the config replaces %.3g from the checkpoint", i, lr, old
                )
                group["lr"] = lr
