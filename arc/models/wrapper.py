"""``AudioDiffusionModel``: conditioners + DiT + pretransform, the unit that is trained, sampled and exported."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from arc.errors import InvalidInputError
from arc.flow import TimeShift
from arc.models.conditioners import Conditioners, Conditioning
from arc.models.dit import DiffusionTransformer
from arc.models.pretransforms import Pretransform

DIFFUSION_OBJECTIVES = ("rectified_flow", "rf_denoiser", "v")


class AudioDiffusionModel(nn.Module):
    """A text-to-audio flow model in latent space.

    Args:
        conditioners: text + number conditioners; their widths must match the DiT's conditioning widths.
        dit: the diffusion transformer; ``io_channels`` must equal the pretransform's latent channels.
        pretransform: audio <-> latents.
        sample_size: audio samples the model generates (SAO Small: 524288, 11.89 s at 44.1 kHz).
        diffusion_objective: ``rectified_flow`` (a flow base model), ``rf_denoiser`` (the same network used as a
            few-step denoiser: the Stable Audio Open Small release and arc's ARC checkpoints) or ``v`` (SAO 1.0's
            cosine v-diffusion: loadable for comparison, not sampled by arc's flow samplers). The two flow
            objectives differ only in how the model is sampled by default (``arc.sampling.sampling_defaults``).
        time_shift: the length-dependent shift of pre-training times (a config's ``distribution_shift_options``),
            or None; pre-training applies it, sampling does not (as in stable-audio-tools).
    """

    def __init__(
        self,
        conditioners: Conditioners,
        dit: DiffusionTransformer,
        pretransform: Pretransform,
        sample_size: int,
        diffusion_objective: str = "rectified_flow",
        time_shift: TimeShift | None = None,
    ):
        super().__init__()
        if diffusion_objective not in DIFFUSION_OBJECTIVES:
            raise ValueError(f"diffusion_objective must be one of {DIFFUSION_OBJECTIVES}, got {diffusion_objective!r}")
        if dit.io_channels != pretransform.latent_channels:
            raise ValueError(
                f"dit.io_channels={dit.io_channels} but the pretransform makes {pretransform.latent_channels} channels"
            )
        cond_in = dit.to_cond_embed[0].in_features
        if cond_in != conditioners.cond_dim:
            raise ValueError(f"dit.cond_token_dim={cond_in} but the conditioners output {conditioners.cond_dim}")
        global_in = dit.to_global_embed[0].in_features if dit.to_global_embed is not None else 0
        if global_in != conditioners.global_dim:
            raise ValueError(f"dit.global_cond_dim={global_in} but the conditioners output {conditioners.global_dim}")
        if sample_size % pretransform.downsampling_ratio:
            raise ValueError(f"sample_size {sample_size} is not a multiple of {pretransform.downsampling_ratio}")
        self.conditioners = conditioners
        self.dit = dit
        self.pretransform = pretransform
        self.sample_size = sample_size
        self.diffusion_objective = diffusion_objective
        self.time_shift = time_shift

    def with_dit(self, dit: nn.Module, diffusion_objective: str | None = None) -> AudioDiffusionModel:
        """This model with another DiT (e.g. its EMA) and optionally another objective, sharing the conditioners
        and pretransform (no copy)."""
        objective = self.diffusion_objective if diffusion_objective is None else diffusion_objective
        return AudioDiffusionModel(
            self.conditioners, dit, self.pretransform, self.sample_size, objective, self.time_shift
        )

    @property
    def sample_rate(self) -> int:
        return self.pretransform.sample_rate

    @property
    def max_seconds(self) -> float:
        return self.sample_size / self.sample_rate

    @property
    def latent_shape(self) -> tuple[int, int]:
        """(channels, frames) of one generated latent."""
        return self.dit.io_channels, self.sample_size // self.pretransform.downsampling_ratio

    def check_seconds(self, seconds: Sequence[float]) -> None:
        for s in seconds:
            if not 0 < s <= self.max_seconds + 1e-6:
                raise InvalidInputError(
                    f"duration {s} s is outside (0, {self.max_seconds:.2f}] s, the longest this model generates "
                    f"({self.sample_size} samples at {self.sample_rate} Hz)"
                )

    def condition(
        self, prompts: Sequence[str], seconds_total: Sequence[float], seconds_start: Sequence[float] | None = None
    ) -> Conditioning:
        """Encode prompts and durations. ``seconds_start`` defaults to 0 where the model has that conditioner."""
        if len(prompts) != len(seconds_total):
            raise ValueError(f"{len(prompts)} prompts but {len(seconds_total)} durations")
        self.check_seconds(seconds_total)
        numbers = {"seconds_total": torch.tensor([float(s) for s in seconds_total])}
        if "seconds_start" in self.conditioners.numbers:
            start = seconds_start if seconds_start is not None else [0.0] * len(prompts)
            numbers["seconds_start"] = torch.tensor([float(s) for s in start])
        return self.conditioners(prompts, numbers)

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Predicted flow velocity ``eps - x0`` at noisy latents ``x_t`` (B, C, T) and times ``t`` (B,), in
        ``x_t``'s dtype; the DiT runs in its own (``arc.fast``'s bf16 DiT takes fp32 samplers' latents)."""
        dtype = self.dit.project_in.weight.dtype
        v = self.dit(x_t.to(dtype), t, cond.cross_attn_cond.to(dtype), cond.global_cond.to(dtype))
        return v.to(x_t.dtype)
