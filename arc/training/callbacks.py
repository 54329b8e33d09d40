"""Training callbacks: probe metrics of generated tones (SPEC 8), or generated audio, during validation."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.loggers import TensorBoardLogger
from tqdm.auto import tqdm

from arc.audio_io import write_wav
from arc.data.tones import ENVELOPES, PANS, PITCHES, WAVEFORMS, ToneAttributes, render_tone
from arc.generate import generate
from arc.metrics.probes import probe_report
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import SAMPLERS

ALL_CAPTIONS = [
    ToneAttributes(waveform=w, pitch=p, envelope=e, pan=n).caption()
    for w, p, e, n in itertools.product(WAVEFORMS, PITCHES, ENVELOPES, PANS)
]


def check_sampling(sampler: str, every_n_epochs: int) -> None:
    """The settings every sampling callback shares: a known sampler, a positive period."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if every_n_epochs < 1:
        raise ValueError(f"every_n_epochs must be >= 1, got {every_n_epochs}")


def sampling_due(trainer: L.Trainer, every_n_epochs: int) -> bool:
    """Whether this validation epoch samples: every ``every_n_epochs`` epochs and at the last, never in the sanity
    check."""
    epoch = trainer.current_epoch + 1
    return not trainer.sanity_checking and (epoch % every_n_epochs == 0 or epoch == trainer.max_epochs)


def probe_prompts(prompts: Sequence[str] | int, seed: int) -> list[str]:
    """``prompts`` itself (each checked to be a tones caption), or that many distinct captions drawn with
    ``seed`` from the 108 of the tones set."""
    if isinstance(prompts, int):
        if not 1 <= prompts <= len(ALL_CAPTIONS):
            raise ValueError(f"number of probe prompts must be in [1, {len(ALL_CAPTIONS)}], got {prompts}")
        order = np.random.default_rng(seed).permutation(len(ALL_CAPTIONS))[:prompts]
        return [ALL_CAPTIONS[i] for i in order]
    for prompt in prompts:
        ToneAttributes.from_caption(prompt)  # raises on anything the probes cannot score
    return list(prompts)


class ProbeSamplesCallback(L.Callback):
    """Every ``every_n_epochs`` validation epochs (and at the last epoch), generate ``per_prompt`` clips for each
    probe prompt and log ``val/<name>_<metric>`` from ``arc.probes.probe_report``: attribute accuracies, the
    Fréchet distance to freshly rendered tones of the same captions, and per-prompt diversity.

    Only meaningful for models trained on the tones set. The LightningModule must provide
    ``sampling_model(use_ema) -> AudioDiffusionModel`` (as ``FlowPretrainModule`` does). Clip ``i`` is generated
    from seed ``seed + i`` and its reference rendered from ``(seed, i)``, so every probe sees the same noise and
    the same references.

    Args:
        prompts: tones captions, or how many to draw from the 108 with ``seed``.
        per_prompt: clips per prompt (>= 2 for the diversity metric).
        every_n_epochs: probe frequency.
        sampler: a name in ``arc.sampling.SAMPLERS``; ``steps`` and ``cfg_scale`` as in ``arc.generate.generate``.
        seed: seeds prompt choice, sampling noise and references.
        use_ema: sample with the EMA DiT (``FlowPretrainModule.sampling_model``) instead of the raw one.
        batch_size: clips generated per call.
        name: metrics are logged as ``val/<name>_<metric>`` (several probes, e.g. of different step counts, need
            different names).
    """

    def __init__(
        self,
        prompts: Sequence[str] | int = 12,
        per_prompt: int = 2,
        every_n_epochs: int = 1,
        sampler: str = "euler",
        steps: int = 50,
        cfg_scale: float = 3.0,
        seed: int = 0,
        use_ema: bool = True,
        batch_size: int = 16,
        name: str = "probe",
    ):
        super().__init__()
        check_sampling(sampler, every_n_epochs)
        if per_prompt < 1 or batch_size < 1:
            raise ValueError(f"per_prompt and batch_size must be >= 1, got {per_prompt} and {batch_size}")
        self.prompts = [p for p in probe_prompts(prompts, seed) for _ in range(per_prompt)]
        self.every_n_epochs = every_n_epochs
        self.sampler = sampler
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.seed = seed
        self.use_ema = use_ema
        self.batch_size = batch_size
        self.name = name

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not sampling_due(trainer, self.every_n_epochs):
            return
        model = pl_module.sampling_model(self.use_ema)
        _, report = probe_samples(
            model, self.prompts, self.seed, self.sampler, self.steps, self.cfg_scale, self.batch_size
        )
        # every rank generates the same clips, so the all-reduce mean is the value itself
        pl_module.log_dict({f"val/{self.name}_{k}": v for k, v in report.items()}, sync_dist=True)


def probe_samples(
    model: AudioDiffusionModel,
    prompts: Sequence[str],
    seed: int,
    sampler: str,
    steps: int,
    cfg_scale: float,
    batch_size: int,
    progress: bool = False,
) -> tuple[list[np.ndarray], dict[str, float]]:
    """Generate clip ``i`` of ``prompts`` (tones captions) from seed ``seed + i``, render a fresh reference of each
    caption from ``(seed, i)``, and score the clips with ``arc.probes.probe_report``: ``(clips, report)``, each
    clip (audio_channels, sample_size)."""
    clips = []
    for start in tqdm(range(0, len(prompts), batch_size), desc=f"{sampler} {steps}", disable=not progress):
        chunk = list(prompts[start : start + batch_size])
        seeds = [seed + start + j for j in range(len(chunk))]
        audio = generate(model, chunk, [model.max_seconds] * len(chunk), seeds, steps, sampler, cfg_scale)
        clips.extend(audio.numpy())
    rate, size = model.sample_rate, model.sample_size
    references = [
        render_tone(ToneAttributes.from_caption(p), np.random.default_rng((seed, i)), rate, size)
        for i, p in enumerate(prompts)
    ]
    return clips, probe_report(clips, list(prompts), model.sample_rate, ref_audios=references)


class AudioSamplesCallback(L.Callback):
    """Every ``every_n_epochs`` validation epochs, rank 0 generates one clip per prompt (clip ``i`` from seed
    ``seed + i``) and writes it to ``<run dir>/samples/step<global step>/<i>.wav``; with a TensorBoard logger the
    clips (mono mix) are logged as audio too. For models without probe metrics (real data); the LightningModule
    must provide ``sampling_model(use_ema)``.
    """

    def __init__(
        self,
        prompts: Sequence[str],
        seconds: float | None = None,
        sampler: str = "pingpong",
        steps: int = 8,
        cfg_scale: float = 1.0,
        every_n_epochs: int = 1,
        seed: int = 0,
        use_ema: bool = True,
    ):
        super().__init__()
        if not prompts:
            raise ValueError("AudioSamplesCallback needs at least one prompt")
        check_sampling(sampler, every_n_epochs)
        self.prompts = list(prompts)
        self.seconds = seconds
        self.sampler = sampler
        self.steps = steps
        self.cfg_scale = cfg_scale
        self.every_n_epochs = every_n_epochs
        self.seed = seed
        self.use_ema = use_ema

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not sampling_due(trainer, self.every_n_epochs) or not trainer.is_global_zero:
            return
        model = pl_module.sampling_model(self.use_ema)
        seconds = model.max_seconds if self.seconds is None else self.seconds
        seeds = [self.seed + i for i in range(len(self.prompts))]
        audio = generate(
            model, self.prompts, [seconds] * len(self.prompts), seeds, self.steps, self.sampler, self.cfg_scale
        )
        audio = audio[:, :, : round(seconds * model.sample_rate)]
        out = Path(trainer.default_root_dir) / "samples" / f"step{trainer.global_step:07d}"
        for i, clip in enumerate(audio):
            write_wav(out / f"{i:03d}.wav", clip, model.sample_rate)
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for i, clip in enumerate(audio):
                    logger.experiment.add_audio(
                        f"samples/{i:03d}", clip.mean(dim=0, keepdim=True), trainer.global_step, model.sample_rate
                    )
