"""Text -> audio with an ``AudioDiffusionModel``: condition, sample latents, decode."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from arc.errors import InvalidInputError
from arc.flow import ReplayNoise
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import SAMPLERS, SCHEDULES, guided_velocity, initial_latent, sampling_defaults

if TYPE_CHECKING:
    from arc.fast import SamplingGraphs


def load_generator(
    preset: str | None = None, checkpoint: str | Path | None = None, release: str | None = None, use_ema: bool = True
) -> AudioDiffusionModel:
    """The model to generate with, from exactly one source: a ``conf/model`` ``preset`` (random weights), an
    arc-train ``checkpoint`` (its EMA DiT unless ``use_ema`` is false) or an official stable-audio-tools
    ``release`` (a hub repo or a local directory)."""
    sources = [s for s in (preset, checkpoint, release) if s is not None]
    if len(sources) != 1:
        raise ValueError(f"give exactly one of preset, checkpoint and release, got {sources}")
    if preset is not None:
        from arc.config import build_model

        return build_model(preset)
    if checkpoint is not None:
        from arc.training.checkpoints import load_trained_model

        return load_trained_model(checkpoint, use_ema=use_ema)
    from arc.releases import load_stable_audio

    return load_stable_audio(release)


@torch.no_grad()
def generate(
    model: AudioDiffusionModel,
    prompts: Sequence[str],
    seconds: Sequence[float],
    seeds: Sequence[int],
    steps: int | None = None,
    sampler: str | None = None,
    cfg_scale: float | None = None,
    schedule: str = "logsnr",
    sigma_max: float = 1.0,
    init_audio: torch.Tensor | None = None,
    progress: bool = False,
    noise: ReplayNoise | None = None,
    graphs: SamplingGraphs | None = None,
) -> torch.Tensor:
    """Generate ``(B, audio_channels, sample_size)`` audio, item ``b`` from ``prompts[b]`` and ``seeds[b]``.

    ``seconds`` conditions the model on each item's duration (the caller trims the output to it). ``steps``,
    ``sampler`` and ``cfg_scale`` default to the model's (``arc.sampling.sampling_defaults`` of its objective:
    an ARC or ``rf_denoiser`` model takes 8 ping-pong steps without guidance). ``schedule`` is ``logsnr`` (the
    reference's, for every sampler) or ``linear``. ``init_audio`` (B, C, sample_size) with ``sigma_max < 1`` is
    audio-to-audio. Each item draws all its noise from its own seed, so a (prompt, seed) pair reproduces the same
    audio in any batch; ``noise`` replays noise drawn elsewhere instead (the device runner's, for parity checks).
    """
    defaults = sampling_defaults(model.diffusion_objective)
    sampler = defaults.sampler if sampler is None else sampler
    steps = defaults.steps if steps is None else steps
    cfg_scale = defaults.cfg_scale if cfg_scale is None else cfg_scale
    if sampler not in SAMPLERS:
        raise InvalidInputError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if schedule not in SCHEDULES:
        raise InvalidInputError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    if not len(prompts) == len(seconds) == len(seeds):
        raise ValueError(f"got {len(prompts)} prompts, {len(seconds)} durations and {len(seeds)} seeds")
    device = next(model.parameters()).device
    ts = SCHEDULES[schedule](steps, sigma_max).to(device)
    cond = model.condition(prompts, seconds).to(device)
    generators = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds] if noise is None else noise
    x_init = None
    if init_audio is not None:
        if init_audio.shape[-1] != model.sample_size:
            raise ValueError(f"init_audio has {init_audio.shape[-1]} samples, the model makes {model.sample_size}")
        x_init = model.pretransform.encode(init_audio.to(device))
    x = initial_latent((len(prompts), *model.latent_shape), sigma_max, generators, x_init)
    x = x.to(device)
    if graphs is not None:
        latents = graphs.sample(sampler, ts, cfg_scale, cond, x, generators)
    else:
        bar = tqdm(total=steps, desc=f"{sampler} x{steps}", disable=not progress, leave=False)
        latents = SAMPLERS[sampler](
            guided_velocity(model.velocity, cond, cfg_scale), x, ts, generators, callback=lambda _: bar.update()
        )
        bar.close()
    return model.pretransform.decode(latents).float().cpu()
