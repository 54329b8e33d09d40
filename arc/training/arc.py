"""ARC post-training (SPEC 3): a generator G, initialised from a pre-trained flow model, and a discriminator D
trained against each other with a relativistic adversarial loss, plus a contrastive loss that teaches D (and
through D, G) to follow the prompt.

Each training batch is either a discriminator step or a generator step (manual optimisation): with
``d_steps_per_g_step = k`` the pattern is k D steps, then one G step, repeated. Every random draw of a step
comes from a generator keyed by (seed, rank, step index), so a run resumed from a checkpoint draws exactly what
the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping

import lightning as L
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, Strategy
from torch import nn

from arc.data.module import restore_data_position, set_datamodule_epoch
from arc.flow import add_noise, denoise, randn
from arc.losses import (
    approx_r1r2_penalty,
    contrastive_d_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    mismatched_prompts,
    relativistic_d_loss,
    relativistic_g_loss,
)
from arc.models.conditioners import Conditioning
from arc.models.discriminator import Discriminator
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
from arc.training.timesteps import logit_normal, logsnr_uniform

log = logging.getLogger(__name__)

# name -> (D loss, G loss) on paired (real, fake) score maps
ADVERSARIAL_LOSSES = {
    "relativistic": (relativistic_d_loss, relativistic_g_loss),
    "lsgan": (lsgan_d_loss, lsgan_g_loss),
}
COUNTERS_KEY = "arc_step_counters"
PROGRESS_BAR_KEYS = {"g_adv", "d_loss", "d_acc"}
# What ARC makes of its generator: the same velocity network, sampled as a few-step denoiser (ping-pong, 8 steps,
# no CFG), which stable-audio-tools calls the ``rf_denoiser`` objective.
POST_TRAINED_OBJECTIVE = "rf_denoiser"


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Turn off ``requires_grad`` of ``module``'s parameters for the block, then restore each one's flag."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


def grad_norm(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """The global L2 norm of the parameters' gradients (0 when none has one)."""
    norms = [p.grad.detach().norm() for p in params if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


def check_strategy(strategy: Strategy) -> None:
    """ARC's steps each leave one network without gradients: DDP must look for unused parameters, and FSDP's
    flattened parameters cannot be frozen one network at a time."""
    if isinstance(strategy, FSDPStrategy):
        raise ValueError("ARC post-training does not run under FSDP; use trainer=ddp_arc (SAO Small fits one GPU)")
    if isinstance(strategy, DDPStrategy) and not strategy._ddp_kwargs.get("find_unused_parameters", False):
        raise ValueError(
            "ARC under DDP updates G and D in alternate steps, so each step leaves one network without gradients: "
            "use trainer=ddp_arc (strategy ddp_find_unused_parameters_true)"
        )


def post_trained_config(run_config: dict) -> dict:
    """The run config to store in ARC checkpoints: a copy whose model has the ``rf_denoiser`` objective."""
    stored = copy.deepcopy(run_config)
    if isinstance(stored.get("model"), dict):
        stored["model"]["diffusion_objective"] = POST_TRAINED_OBJECTIVE
    return stored


class ARCModule(L.LightningModule):
    """Adversarial relativistic-contrastive post-training of an ``AudioDiffusionModel``.

    The post-trained generator is an ``rf_denoiser`` model: checkpoints record that objective, so that
    ``load_trained_model`` and ``arc-sample`` sample it with ping-pong steps by default.

    Args:
        model: the generator, with its pre-trained weights already loaded (``load_pretrained_weights``).
        discriminator: a factory ``generator -> Discriminator`` (``arc.models.discriminator.discriminator_from``
            as a Hydra ``_partial_``), called once on the pre-trained generator so that D starts from its trunk.
        g_optimizer, d_optimizer: factories ``params -> Optimizer`` for G's and D's trainable parameters.
        adversarial_loss: ``"relativistic"`` (ARC) or ``"lsgan"`` (the ablation).
        contrastive_weight: lambda of D's contrastive loss (0 = the ablation without it).
        r1r2_gamma, r1r2_sigma: weight and perturbation scale of the approximate R1/R2 penalty (gamma 0 = off).
        d_steps_per_g_step: D updates between consecutive G updates.
        gradient_clip_val: max global gradient norm of each network (0 = no clipping).
        ema_decay: decay of the generator DiT's EMA (its ceiling, with ``ema_warmup``), updated after each G step.
        ema_warmup: ramp the EMA decay up from 0 as ema-pytorch does for stable-audio-tools (``warmup_decay``).
        gen_logsnr: the range of log-SNR from which G's input noise level is drawn uniformly (SPEC 3.1).
        seed: seeds every step's draws.
        run_config: the resolved run config (plain containers), written into every checkpoint.
    """

    def __init__(
        self,
        model: AudioDiffusionModel,
        discriminator: Callable[[AudioDiffusionModel], Discriminator] | None,
        g_optimizer: OptimizerFactory,
        d_optimizer: OptimizerFactory,
        adversarial_loss: str = "relativistic",
        contrastive_weight: float = 1.0,
        r1r2_gamma: float = 0.0,
        r1r2_sigma: float = 0.01,
        d_steps_per_g_step: int = 1,
        gradient_clip_val: float = 1.0,
        ema_decay: float = 0.999,
        ema_warmup: bool = True,
        gen_logsnr: tuple[float, float] = (-6.0, 2.0),
        seed: int = 0,
        run_config: dict | None = None,
    ):
        super().__init__()
        if discriminator is None:
            raise ValueError(
                "ARC needs a discriminator: set module.discriminator (a discriminator_from node with exit_layer, "
                "e.g. `module.discriminator.exit_layer=12` for SAO Small)"
            )
        if adversarial_loss not in ADVERSARIAL_LOSSES:
            raise ValueError(
                f"unknown adversarial_loss {adversarial_loss!r}; choose one of {list(ADVERSARIAL_LOSSES)}"
            )
        if d_steps_per_g_step < 1:
            raise ValueError(f"d_steps_per_g_step must be >= 1, got {d_steps_per_g_step}")
        if contrastive_weight < 0 or r1r2_gamma < 0 or r1r2_sigma <= 0 or gradient_clip_val < 0:
            raise ValueError(
                "contrastive_weight, r1r2_gamma and gradient_clip_val must be >= 0 and r1r2_sigma > 0, got "
                f"{contrastive_weight}, {r1r2_gamma}, {gradient_clip_val}, {r1r2_sigma}"
            )
        if run_config is not None and not isinstance(run_config, dict):
            raise TypeError(f"run_config must be a plain dict, got {type(run_config).__name__}")
        if model.diffusion_objective not in ("rectified_flow", POST_TRAINED_OBJECTIVE):
            raise ValueError(f"ARC post-trains rectified-flow models, this one is {model.diffusion_objective!r}")
        self.automatic_optimization = False
        self.model = model.with_dit(model.dit, POST_TRAINED_OBJECTIVE)
        self.discriminator = discriminator(model)
        self.ema = EMA(model.dit, ema_decay, ema_warmup)
        self.g_optimizer_factory = g_optimizer
        self.d_optimizer_factory = d_optimizer
        self.d_loss_fn, self.g_loss_fn = ADVERSARIAL_LOSSES[adversarial_loss]
        self.contrastive_weight = contrastive_weight
        self.r1r2_gamma = r1r2_gamma
        self.r1r2_sigma = r1r2_sigma
        self.d_steps_per_g_step = d_steps_per_g_step
        self.gradient_clip_val = gradient_clip_val
        self.gen_logsnr = tuple(gen_logsnr)
        self.seed = seed
        self.run_config = None if run_config is None else post_trained_config(run_config)
        self.g_steps = 0
        self.d_steps = 0
        self._warned_no_negatives = False

    def sampling_model(self, use_ema: bool = True) -> AudioDiffusionModel:
        """The generator to sample from (ping-pong, no CFG): with the EMA DiT or the raw one."""
        return self.model.with_dit(self.ema.module) if use_ema else self.model

    def generator_turn(self) -> bool:
        """Whether the next update is G's: after every ``d_steps_per_g_step`` D updates comes one G update."""
        return (self.g_steps + self.d_steps) % (self.d_steps_per_g_step + 1) == self.d_steps_per_g_step

    # --- the two steps (SPEC 3, steps 1-7) -----------------------------------------------------------------------

    def _fake_and_noised(
        self, batch: Batch, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Steps 1-3: clean latents ``x0``, G's one-step estimate ``x0_fake`` (with gradients only if enabled), and
        both re-noised with the same noise at the same level: ``(xs_real, xs_fake, s, frame_mask)``, the last the
        (B, T) mask of real (unpadded) latent frames."""
        # 1. generator input: real latents noised at t, uniform in log-SNR over gen_logsnr
        x0, frame_mask = batch_latents(self.model, batch)
        B = x0.shape[0]
        cond = batch_conditioning(self.model.conditioners, batch)
        t = logsnr_uniform(B, generator, *self.gen_logsnr).to(x0)
        x_t = add_noise(x0, randn(x0.shape, generator, like=x0), t)
        # 2. one-step generation: x0_fake = x_t - t G(x_t, t, c)
        x0_fake = denoise(x_t, t, self.model.velocity(x_t, t, cond))
        # 3. re-noise real and fake with the same noise n and the same level s ~ logit-normal
        s = logit_normal(B, generator).to(x0)
        noise = randn(x0.shape, generator, like=x0)
        return add_noise(x0, noise, s), add_noise(x0_fake, noise, s), s, frame_mask

    def generator_step(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """G's loss (step 4, G side): ``L_G`` on D's paired scores; D is frozen so gradients reach G only."""
        with frozen(self.discriminator):
            xs_real, xs_fake, s, frame_mask = self._fake_and_noised(batch, generator)
            d_cond = batch_conditioning(self.discriminator.conditioners, batch)
            real = self.discriminator(xs_real, s, d_cond)
            fake = self.discriminator(xs_fake, s, d_cond)
            g_adv = self.g_loss_fn(real, fake, self.discriminator.patch_mask(frame_mask, real.shape[-1]))
        return {"loss": g_adv, "g_adv": g_adv}

    def discriminator_step(self, batch: Batch, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """D's loss (steps 4-6, D side): ``L_D + lambda L_C + gamma (R1 + R2) / 2``; G runs without gradients."""
        with torch.no_grad():
            xs_real, xs_fake, s, frame_mask = self._fake_and_noised(batch, generator)
        d_cond = batch_conditioning(self.discriminator.conditioners, batch)
        # 4. adversarial loss on paired scores of the same items, over the patches of real (unpadded) audio
        real = self.discriminator(xs_real, s, d_cond)
        fake = self.discriminator(xs_fake, s, d_cond)
        mask = self.discriminator.patch_mask(frame_mask, real.shape[-1])
        d_adv = self.d_loss_fn(real, fake, mask)
        # 5. contrastive loss: real audio under its own prompt vs under another item's
        contrastive = torch.zeros((), device=real.device)
        if self.contrastive_weight > 0:
            negatives, valid = mismatched_prompts(list(batch["prompt"]))
            if not valid.any():
                self._warn_no_negatives(len(negatives))
            mismatched = self.discriminator(
                xs_real, s, batch_conditioning(self.discriminator.conditioners, batch, negatives)
            )
            contrastive = contrastive_d_loss(real, mismatched, valid, mask)
        # 6. approximate R1 / R2 (finite differences)
        r1r2 = torch.zeros((), device=real.device)
        if self.r1r2_gamma > 0:
            r1r2 = self.r1r2_gamma * self._r1r2(xs_real, xs_fake, real, fake, s, d_cond, mask, generator)
        loss = d_adv + self.contrastive_weight * contrastive + r1r2
        return {
            "loss": loss,
            "d_total": loss,
            "d_loss": d_adv,
            "d_contrastive": contrastive,
            "d_r1r2": r1r2,
            "d_real_mean": real.mean(),
            "d_fake_mean": fake.mean(),
            "d_acc": (real > fake).float().mean(),
        }

    def _r1r2(
        self,
        xs_real: torch.Tensor,
        xs_fake: torch.Tensor,
        real: torch.Tensor,
        fake: torch.Tensor,
        s: torch.Tensor,
        d_cond: Conditioning,
        mask: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """``(R1 + R2) / 2`` by finite differences (step 6). Under reduced-precision autocast the scores are
        recomputed in float32, unperturbed and perturbed alike: bf16 logits carry 8 bits of mantissa, and on the
        tones D at sigma 0.01 their rounding alone (2.1e-6 per item) was as large as R1 itself (1.6e-6 to 2.3e-6
        in fp32; 2.9e-6 to 3.8e-6 in bf16); at sigma 0.05 bf16 was within 10 %."""
        precise = torch.is_autocast_enabled(real.device.type)
        if precise:
            xs_real, xs_fake, s = xs_real.float(), xs_fake.float(), s.float()
            d_cond = Conditioning(d_cond.cross_attn_cond.float(), d_cond.cross_attn_mask, d_cond.global_cond.float())
        score = lambda x: self.discriminator(x, s, d_cond)
        with torch.autocast(real.device.type, enabled=False) if precise else contextlib.nullcontext():
            if precise:
                real, fake = score(xs_real), score(xs_fake)
            r1, r2 = approx_r1r2_penalty(score, xs_real, xs_fake, real, fake, self.r1r2_sigma, generator, mask)
        return (r1 + r2) / 2

    def _warn_no_negatives(self, batch_size: int) -> None:
        if not self._warned_no_negatives:
            log.warning(
                "a batch of %d with no distinct prompts has no contrastive negatives: L_C is 0 for it (warned once)",
                batch_size,
            )
            self._warned_no_negatives = True

    # --- Lightning hooks ----------------------------------------------------------------------------------------

    def training_step(self, batch: Batch, batch_idx: int) -> None:
        g_opt, d_opt = self.optimizers()
        generator = step_generator(self.device, self.seed, self.global_rank, self.g_steps + self.d_steps)
        # 7. alternate: k D updates, then one G update
        is_g = self.generator_turn()
        net, opt = (self.model, g_opt) if is_g else (self.discriminator, d_opt)
        losses = (self.generator_step if is_g else self.discriminator_step)(batch, generator)
        where = f"{'G' if is_g else 'D'} step (G steps {self.g_steps}, D steps {self.d_steps})"
        check_finite(losses, where, self.trainer)
        opt.zero_grad(set_to_none=True)
        self.manual_backward(losses["loss"])
        params = [p for p in net.parameters() if p.requires_grad]
        norm = grad_norm(params)
        if self.gradient_clip_val > 0:
            self.clip_gradients(opt, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm")
        opt.step()
        prefix = "g" if is_g else "d"
        if is_g:
            self.ema.update(self.model.dit)
            self.g_steps += 1
        else:
            self.d_steps += 1
        B = len(batch["prompt"])
        logged = {name: value.detach() for name, value in losses.items() if name != "loss"}
        logged |= {f"{prefix}_grad_norm": norm, f"{prefix}_lr": opt.param_groups[0]["lr"]}
        for name, value in logged.items():
            self.log(f"train/{name}", value, prog_bar=name in PROGRESS_BAR_KEYS, batch_size=B)
        # G's updates are the length of an ARC run (trainer.max_steps counts D and G batches alike)
        self.log("train/g_steps", float(self.g_steps), prog_bar=True, batch_size=B)
        self.log("train/d_steps", float(self.d_steps), batch_size=B)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        # D's view of held-out data, with the same draws every epoch
        generator = step_generator(self.device, self.seed, self.global_rank, batch_idx)
        with torch.no_grad():
            losses = self.discriminator_step(batch, generator)
        B = len(batch["prompt"])
        for name in ("d_loss", "d_acc", "d_contrastive"):
            self.log(f"val/{name}", losses[name], sync_dist=True, batch_size=B)

    def setup(self, stage: str) -> None:
        check_strategy(self.trainer.strategy)

    def on_train_epoch_start(self) -> None:
        set_datamodule_epoch(self.trainer)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        g_params = [p for p in self.model.parameters() if p.requires_grad]
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        optimizers = [self.g_optimizer_factory(g_params), self.d_optimizer_factory(d_params)]
        self._configured_lrs = configured_lrs(optimizers)
        return optimizers

    def on_train_start(self) -> None:
        apply_configured_lrs(self.trainer.optimizers, self._configured_lrs)
        restore_data_position(self.trainer)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[COUNTERS_KEY] = {"g_steps": self.g_steps, "d_steps": self.d_steps}
        if self.run_config is not None:
            checkpoint[CONFIG_KEY] = self.run_config

    def on_load_checkpoint(self, checkpoint: Mapping) -> None:
        if COUNTERS_KEY not in checkpoint:
            raise ValueError(f"not an ARC checkpoint: it has no {COUNTERS_KEY!r} entry (G/D step counters)")
        self.g_steps = checkpoint[COUNTERS_KEY]["g_steps"]
        self.d_steps = checkpoint[COUNTERS_KEY]["d_steps"]
