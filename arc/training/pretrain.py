"""Base rectified-flow pre-training (SPEC 2) as a LightningModule.

One step: latents ``x0`` -> conditioning (with classifier-free-guidance dropout) -> ``t`` from the truncated
logit-normal -> ``x_t = (1 - t) x0 + t eps`` -> ``mean((v_pred - (eps - x0))^2)`` over real (unpadded) frames.
Only the DiT and the conditioners' trainable parts (number embedders, the text projection) learn; the T5 encoder
and the pretransform are frozen. An EMA of the DiT is kept for sampling.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.optim import Optimizer

from arc.data.module import restore_data_position, set_datamodule_epoch
from arc.flow import add_noise, randn, velocity_target
from arc.models.conditioners import Conditioning
from arc.models.wrapper import AudioDiffusionModel
from arc.training.checkpoints import CONFIG_KEY
from arc.training.ema import EMA
from arc.training.steps import (
    Batch,
    OptimizerFactory,
    apply_configured_lrs,
    batch_conditioning,
    batch_latents,
    check_finite,
    configured_lrs,
    step_generator,
)
from arc.training.timesteps import trunc_logit_normal


def drop_cross_attn_cond(cond: Conditioning, p: float, generator: torch.Generator) -> Conditioning:
    """Classifier-free-guidance dropout: each item's cross-attention tokens become zeros with probability ``p``
    (a Bernoulli draw per item), the unconditional input of ``arc.sampling.guided_velocity``; the global
    (duration) vector is kept, as in Stable Audio."""
    if not 0 <= p <= 1:
        raise ValueError(f"cfg dropout must be in [0, 1], got {p}")
    B = cond.cross_attn_cond.shape[0]
    dropped = torch.rand(B, generator=generator, device=generator.device) < p  # (B,)
    dropped = dropped.to(cond.cross_attn_cond.device)[:, None, None]
    tokens = torch.where(dropped, torch.zeros_like(cond.cross_attn_cond), cond.cross_attn_cond)
    return Conditioning(tokens, cond.cross_attn_mask, cond.global_cond)


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``sum_{b,c,f} m_bf (pred - target)^2 / (C sum_{b,f} m_bf)`` for (B, C, T) tensors and a (B, T) mask of
    real frames: the mean squared error over unpadded frames only."""
    weight = mask.to(pred.dtype)[:, None, :]  # (B, 1, T)
    denom = weight.sum() * pred.shape[1]
    if denom == 0:
        raise ValueError("every frame of the batch is padding: nothing to compute a loss on")
    return ((pred.float() - target.float()) ** 2 * weight).sum() / denom


class FlowPretrainModule(L.LightningModule):
    """Rectified-flow pre-training of an ``AudioDiffusionModel``.

    Args:
        model: the built model (random or pre-trained weights); its frozen parts must already have
            ``requires_grad=False`` (the T5 encoder and pretransforms do).
        optimizer: a factory ``params -> Optimizer`` (a Hydra ``_partial_: true`` node), given only parameters
            that require gradients.
        cfg_dropout: probability of zeroing an item's cross-attention tokens (classifier-free guidance).
        ema_decay: decay of the DiT's EMA (its ceiling, with ``ema_warmup``), updated once per optimiser step.
        ema_warmup: ramp the EMA decay up from 0 as ema-pytorch does for stable-audio-tools (``warmup_decay``).
        seed: seeds the per-step generators of times, noise and dropout (train and validation).
        run_config: the resolved run config as plain containers; written into every checkpoint under
            ``"arc_config"`` so that the checkpoint alone rebuilds the model.
    """

    def __init__(
        self,
        model: AudioDiffusionModel,
        optimizer: OptimizerFactory,
        cfg_dropout: float = 0.1,
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        seed: int = 0,
        run_config: dict | None = None,
    ):
        super().__init__()
        if not 0 <= cfg_dropout <= 1:
            raise ValueError(f"cfg_dropout must be in [0, 1], got {cfg_dropout}")
        if run_config is not None and not isinstance(run_config, dict):
            raise TypeError(
                f"run_config must be a plain dict (checkpoints are read with weights_only=True), got "
                f"{type(run_config).__name__}: pass OmegaConf.to_container(cfg, resolve=True)"
            )
        self.model = model
        self.ema = EMA(model.dit, ema_decay, ema_warmup)
        self.optimizer_factory = optimizer
        self.cfg_dropout = cfg_dropout
        self.seed = seed
        self.run_config = run_config

    def sampling_model(self, use_ema: bool = True) -> AudioDiffusionModel:
        """The model to sample from: the trained conditioners and pretransform with the EMA DiT (shared
        modules, no copy) or the raw model."""
        return self.model.with_dit(self.ema.module) if use_ema else self.model

    # --- the objective ------------------------------------------------------------------------------------------

    def flow_loss(self, batch: Batch, generator: torch.Generator) -> torch.Tensor:
        """The rectified-flow loss of one batch; every random draw comes from ``generator``."""
        # 1. clean latents and the mask of real frames
        x0, frame_mask = batch_latents(self.model, batch)
        B, C, T = x0.shape
        # 2. conditioning from prompts and durations
        cond = batch_conditioning(self.model.conditioners, batch)
        # 3. classifier-free-guidance dropout of the text tokens
        cond = drop_cross_attn_cond(cond, self.cfg_dropout, generator)
        # 4. times (most mass at high noise; shifted by length when the model's config has a shift), noise
        t = trunc_logit_normal(B, generator)
        if self.model.time_shift is not None:
            t = self.model.time_shift(t, T)
        t = t.to(device=x0.device, dtype=x0.dtype)
        noise = randn((B, C, T), generator, like=x0)
        x_t = add_noise(x0, noise, t)
        # 5. velocity regression over real frames
        v_pred = self.model.velocity(x_t, t, cond)
        return masked_mse(v_pred, velocity_target(x0, noise), frame_mask)

    # --- Lightning hooks ----------------------------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        generator = step_generator(self.device, self.seed, self.global_rank, self.current_epoch, batch_idx)
        loss = self.flow_loss(batch, generator)
        check_finite({"loss": loss}, f"pre-training step {self.global_step}", self.trainer)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["prompt"]))
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], batch_size=len(batch["prompt"]))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        # the same draws every epoch (no epoch in the key), so val/loss curves compare like with like
        generator = step_generator(self.device, self.seed, self.global_rank, batch_idx)
        loss = self.flow_loss(batch, generator)
        self.log("val/loss", loss, prog_bar=True, sync_dist=True, batch_size=len(batch["prompt"]))
        return loss

    def optimizer_step(self, epoch: int, batch_idx: int, optimizer: Optimizer, optimizer_closure=None) -> None:
        # the EMA follows each optimiser step at once (with gradient accumulation most batches do not step), before
        # any callback's batch-end hook, so a checkpoint written then holds the EMA of the weights it holds
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.ema.update(self.model.dit)

    def on_train_epoch_start(self) -> None:
        set_datamodule_epoch(self.trainer)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        self._configured_lrs = configured_lrs([optimizer])
        return optimizer

    def on_train_start(self) -> None:
        apply_configured_lrs(self.trainer.optimizers, self._configured_lrs)
        restore_data_position(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config
