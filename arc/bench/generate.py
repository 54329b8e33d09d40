"""``arc-bench generate``: text-to-audio generation timed per stage, for each configuration of fast paths and for
the many-step baselines, on the same shapes and weights (config: ``conf/bench/generate.yaml``).

Every run (a named ``arc.fast.FastPaths`` with a sampler, step count and CFG scale) is measured in its own
process, so peak memory, thread settings and compile caches do not mix. After warm-up (the first end-to-end call:
compilation and graph capture happen there, and its time is reported as ``first_call_s``), each stage is timed
``repeats`` times with the device synchronised around it: conditioners, one DiT step (one guided velocity: two
DiT passes, batched, under CFG), the whole sampling loop, the decoder, and end to end (``arc.generate.generate``).
Many-step baselines time their loop once and report end to end as the sum of their stages.

FLOPs per stage are counted on the fp32 eager model (``arc.bench.flops``); the fraction of peak divides a stage's
FLOP/s by a large matmul's, measured in this run in the stage's dtype. Audio and latent SNR are against the first
run of the same sampler, steps and CFG (fp32 eager), from the same seeds.
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from arc.bench.dit import measure_dit
from arc.bench.flops import count_flops, matmul_peak
from arc.bench.processes import in_process
from arc.bench.report import markdown, write_report
from arc.errors import InvalidInputError
from arc.fast import DTYPES, FastPaths, SamplingGraphs, accelerate
from arc.generate import generate
from arc.models.pretransforms import OobleckPretransform
from arc.models.wrapper import AudioDiffusionModel
from arc.profiling import peak_rss_mib
from arc.sampling import SAMPLERS, guided_velocity, initial_latent, logsnr_timesteps

PROMPT = "a warm synth pad, slow filter sweep"  # 35 bytes: within every preset's max_length
STAGES = ("conditioners", "dit_step", "sampling", "decoder", "end_to_end")


@dataclass(frozen=True)
class Source:
    """Where the weights come from: a ``conf/model`` preset (random weights), a checkpoint or a release."""

    model: str | None = "sao_small"
    checkpoint: str | None = None
    release: str | None = None

    @property
    def random(self) -> bool:
        return self.checkpoint is None and self.release is None

    def label(self) -> str:
        if self.random:
            return f"{self.model} preset, random weights (timing only; T5 of the preset's shape, ByT5 tokenizer)"
        return f"checkpoint {self.checkpoint}" if self.checkpoint else f"release {self.release}"


@dataclass(frozen=True)
class Run:
    """One row of the table."""

    name: str
    fast: FastPaths
    sampler: str
    steps: int
    cfg_scale: float
    baseline: bool = False
    repeats: int = 3


@dataclass
class Settings:
    source: Source
    device: str
    batch_size: int
    seconds: float | None
    runs: list[Run] = field(default_factory=list)


def build_model(source: Source) -> AudioDiffusionModel:
    """The model, seeded: random weights are the same in every run's process. A random preset's DiT is perturbed
    (its zero-initialised output layers would give v = 0), its T5 built at the pretrained shape offline."""
    if not source.random:
        from arc.generate import load_generator

        return load_generator(checkpoint=source.checkpoint, release=source.release)
    from arc.config import compose_config

    cfg = compose_config("train", [f"model={source.model}"]).model
    OmegaConf.set_struct(cfg, False)
    if cfg.conditioners.text.t5._target_.endswith("pretrained_t5"):
        cfg.conditioners.text.t5._target_ = "arc.models.conditioners.random_t5"
    cfg.diffusion_objective = "rectified_flow"  # SAO 1.0 is v-diffusion: its timing is what is asked of it here
    torch.manual_seed(0)
    model = instantiate(cfg)
    with torch.no_grad():
        for p in model.dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


def _timed(fn, sync, repeats: int) -> tuple[list[float], object]:
    """Seconds of each of ``repeats`` calls, the device synchronised around each; and the last call's output."""
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        times.append(time.perf_counter() - start)
    return times, out


def _measure_run(settings: Settings, run: Run, queue: mp.Queue) -> None:
    """Time every stage of ``run`` (in a process of its own) and put the result on ``queue``. The first
    end-to-end call warms everything up (compilation, graph capture); a baseline, whose loop is long, warms up
    with one step and one decode instead and times its loop and decoder once."""
    device = torch.device(settings.device)
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    model = accelerate(build_model(settings.source), run.fast, device)
    graphs = SamplingGraphs(model) if run.fast.cuda_graphs else None
    B = settings.batch_size
    seconds = settings.seconds or model.max_seconds
    prompts, durations, seeds = [PROMPT] * B, [seconds] * B, list(range(B))
    ts = logsnr_timesteps(run.steps).to(device)

    def end_to_end():
        return generate(model, prompts, durations, seeds, run.steps, run.sampler, run.cfg_scale, graphs=graphs)

    def sampling():
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        x = initial_latent((B, *model.latent_shape), 1.0, generators).to(device)
        if graphs is not None:
            return graphs.sample(run.sampler, ts, run.cfg_scale, cond, x, generators)
        return SAMPLERS[run.sampler](velocity, x, ts, generators)

    with torch.inference_mode():
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        first_call, audio = None, None
        if not run.baseline:
            (first_call,), audio = _timed(end_to_end, sync, 1)
        cond = model.condition(prompts, durations).to(device)
        velocity = guided_velocity(model.velocity, cond, run.cfg_scale)
        x = torch.randn(B, *model.latent_shape, generator=torch.Generator().manual_seed(0)).to(device)
        loop_repeats = 1 if run.baseline else run.repeats
        if run.baseline:  # no end-to-end call warmed it up: one step and one decode (compilation happens here)
            velocity(x, ts[0] * x.new_ones(B))
            model.pretransform.decode(x)
            if graphs is not None:
                sampling()  # captures the loop's graph
        times = {}
        times["conditioners"], _ = _timed(lambda: model.condition(prompts, durations), sync, run.repeats)
        times["dit_step"], _ = _timed(lambda: velocity(x, ts[0] * x.new_ones(B)), sync, run.repeats)
        times["sampling"], latents = _timed(sampling, sync, loop_repeats)
        times["decoder"], _ = _timed(lambda: model.pretransform.decode(latents), sync, loop_repeats)
        if not run.baseline:
            times["end_to_end"], _ = _timed(end_to_end, sync, run.repeats)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mib()
    audio = None if audio is None else audio.numpy()
    queue.put({"times": times, "first_call_s": first_call, "peak_mib": peak, "threads": torch.get_num_threads(),
               "audio": audio, "latents": latents.float().cpu().numpy()})  # fmt: skip


def _count_stage_flops(settings: Settings, cfg_scales: set[float], queue: mp.Queue) -> None:
    """FLOPs of the conditioners, one guided DiT step per CFG scale and the decoder, on the fp32 eager model."""
    model = build_model(settings.source).eval()
    B = settings.batch_size
    seconds = settings.seconds or model.max_seconds
    with torch.inference_mode():
        cond = model.condition([PROMPT] * B, [seconds] * B)
        x = torch.randn(B, *model.latent_shape)
        t = torch.full((B,), 0.5)
        flops = {
            "conditioners": count_flops(lambda: model.condition([PROMPT] * B, [seconds] * B)),
            "decoder": count_flops(lambda: model.pretransform.decode(x)),
        }
        for w in cfg_scales:
            flops[f"dit_step@{w}"] = count_flops(lambda w=w: guided_velocity(model.velocity, cond, w)(x, t))
    queue.put({"flops": flops, "params": {"dit": sum(p.numel() for p in model.dit.parameters())},
               "has_vae": isinstance(model.pretransform, OobleckPretransform),
               "latent_shape": list(model.latent_shape), "sample_rate": model.sample_rate,
               "sample_size": model.sample_size, "seconds": seconds})  # fmt: skip


def snr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """``10 log10(|ref|^2 / |est - ref|^2)``; infinite when they are equal."""
    noise = np.square(estimate.astype(np.float64) - reference).sum()
    return float("inf") if noise == 0 else float(10 * np.log10(np.square(reference.astype(np.float64)).sum() / noise))


def without_decoder_paths(settings: Settings) -> Settings:
    """The runs of a model without an Oobleck VAE (e.g. the tiny preset's patching): decoder switches dropped, and
    runs that became the same as an earlier one skipped; both said on the console."""
    runs, seen = [], {}
    for run in settings.runs:
        fast = run.fast.without_decoder()
        key = (fast, run.sampler, run.steps, run.cfg_scale)
        if key in seen:
            print(f"[{run.name}] skipped: without decoder switches it is run {seen[key]}")
            continue
        seen[key] = run.name
        runs.append(replace(run, fast=fast))
    print("this model has no VAE decoder to speed up: the runs' decoder switches are dropped")
    return replace(settings, runs=runs)


def settings_from_config(cfg: DictConfig) -> Settings:
    """``conf/bench/generate.yaml`` (with its device group) -> ``Settings``; unknown keys are errors."""

    def fast_paths(name: str, spec: dict) -> FastPaths:
        spec = {"threads": cfg.threads, **spec}
        unknown = sorted(set(spec) - {f.name for f in fields(FastPaths)})
        if unknown:
            raise InvalidInputError(f"run {name!r}: unknown keys {unknown}; a run's keys are FastPaths fields "
                                    f"{[f.name for f in fields(FastPaths)]}")  # fmt: skip
        return FastPaths(**spec)

    if cfg.batch_size < 1 or cfg.repeats < 1:
        raise InvalidInputError(f"batch_size and repeats must be >= 1, got {cfg.batch_size} and {cfg.repeats}")
    runs = [Run(str(name), fast_paths(name, OmegaConf.to_container(spec)), cfg.sampler, cfg.steps, cfg.cfg_scale,
                repeats=cfg.repeats) for name, spec in (cfg.runs or {}).items()]  # fmt: skip
    for name, spec in (cfg.baselines or {}).items():
        spec = OmegaConf.to_container(spec)
        missing = sorted({"sampler", "steps", "cfg_scale"} - set(spec))
        if missing:
            raise InvalidInputError(f"baseline {name!r} needs {missing}")
        sampling = [spec.pop(key) for key in ("sampler", "steps", "cfg_scale")]
        runs.append(Run(str(name), fast_paths(name, spec), *sampling, baseline=True, repeats=cfg.repeats))
    for run in runs:
        if run.sampler not in SAMPLERS:
            raise InvalidInputError(f"run {run.name!r}: unknown sampler {run.sampler!r}; one of {sorted(SAMPLERS)}")
    sources = [key for key in ("checkpoint", "release") if cfg[key] is not None]
    if len(sources) > 1:
        raise InvalidInputError("give one of checkpoint and release, got both")
    source = Source(model=None if sources else cfg.model, checkpoint=cfg.checkpoint, release=cfg.release)
    return Settings(source, cfg.device, cfg.batch_size, cfg.seconds, runs)


def run(cfg: DictConfig) -> dict:
    """``arc-bench generate``: measure, write ``results.json`` / ``results.md`` / ``stages.png``, print the tables."""
    results = run_benchmark(settings_from_config(cfg))
    paths = write_report(results, Path(cfg.out_dir))
    print(markdown(results))
    print("wrote " + ", ".join(str(p) for p in paths))
    return results


def _stats(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "n": len(times)}


def _stage_dtype(stage: str, fast: FastPaths) -> str:
    if stage in ("dit_step", "sampling"):
        return fast.dit_dtype
    return fast.decoder_dtype if stage == "decoder" else "fp32"


def run_benchmark(settings: Settings) -> dict:
    """Measure every run of ``settings``; return the results (JSON-ready but for nothing: all plain values)."""
    if not settings.runs:
        raise InvalidInputError("no runs to measure: give at least one under `runs`")
    device = torch.device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device=cuda but torch sees no CUDA device (torch.cuda.is_available() is False)")
    shape = in_process(_count_stage_flops, settings, {r.cfg_scale for r in settings.runs})
    if not shape["has_vae"]:
        settings = without_decoder_paths(settings)
    dtypes = sorted({_stage_dtype(s, r.fast) for r in settings.runs for s in STAGES})
    peaks = {d: matmul_peak(device, DTYPES[d]) for d in dtypes}
    print(f"measured peak (square matmul, {device.type}): "
          + ", ".join(f"{d} {p / 1e12:.2f} TFLOP/s" for d, p in peaks.items()), flush=True)  # fmt: skip
    rows, references = [], {}
    for run in settings.runs:
        print(f"[{run.name}] {run.fast.describe()}, {run.sampler} x{run.steps}, CFG {run.cfg_scale} ...", flush=True)
        result = in_process(_measure_run, settings, run)
        stages = {name: _stats(times) for name, times in result["times"].items()}
        if run.baseline:  # its loop ran once: end to end is the sum of the stages
            stages["end_to_end"] = {k: sum(stages[s][k] for s in ("conditioners", "sampling", "decoder"))
                                    for k in ("median_s", "min_s", "max_s")} | {"n": 0}  # fmt: skip
        step_flops = shape["flops"][f"dit_step@{run.cfg_scale}"]
        flops = {"conditioners": shape["flops"]["conditioners"], "dit_step": step_flops,
                 "sampling": run.steps * step_flops, "decoder": shape["flops"]["decoder"]}  # fmt: skip
        flops["end_to_end"] = flops["conditioners"] + flops["sampling"] + flops["decoder"]
        for name, stat in stages.items():
            stat["flops"] = flops[name]
            stat["dtype"] = _stage_dtype(name, run.fast) if name != "end_to_end" else None
            if stat["dtype"] is not None:
                stat["fraction_of_peak"] = flops[name] / stat["median_s"] / peaks[stat["dtype"]]
        key = (run.sampler, run.steps, run.cfg_scale)
        reference_name, reference = references.setdefault(key, (run.name, result))
        audio_seconds = settings.batch_size * shape["sample_size"] / shape["sample_rate"]
        rows.append({
            "name": run.name, "fast_paths": asdict(run.fast), "describe": run.fast.describe(), "sampler": run.sampler,
            "steps": run.steps, "cfg_scale": run.cfg_scale, "baseline": run.baseline, "stages": stages,
            "first_call_s": result["first_call_s"], "peak_mib": result["peak_mib"], "threads": result["threads"],
            "real_time_factor": audio_seconds / stages["end_to_end"]["median_s"],
            "snr_latents_db": snr_db(result["latents"], reference["latents"]),
            "snr_audio_db": None if run.baseline else snr_db(result["audio"], reference["audio"]),
            "snr_reference": reference_name,
        })  # fmt: skip
        e2e = stages["end_to_end"]["median_s"]
        print(f"[{run.name}] end to end {e2e:.3f} s, decoder {stages['decoder']['median_s']:.3f} s, "
              f"DiT step {stages['dit_step']['median_s'] * 1e3:.1f} ms", flush=True)  # fmt: skip
    diffusers_dit = {}
    if settings.source.model == "sao_small":  # diffusers' StableAudioDiTModel at SAO Small's shape (arc.bench.dit)
        for dtype in sorted({r.fast.dit_dtype for r in settings.runs}):
            result = in_process(measure_dit, "diffusers", settings.device, 3, DTYPES[dtype])
            diffusers_dit[dtype] = result["median_s"]
            print(f"diffusers StableAudioDiTModel step, {dtype}: {result['median_s'] * 1e3:.1f} ms", flush=True)
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine_description(device),
        "torch": torch.__version__,
        "device": str(device),
        "weights": settings.source.label(),
        "batch_size": settings.batch_size,
        "seconds": shape["seconds"],
        "audio": f"{shape['sample_size']} samples at {shape['sample_rate']} Hz "
        f"({shape['sample_size'] / shape['sample_rate']:.2f} s), latents {shape['latent_shape']}",
        "dit_params": shape["params"]["dit"],
        "peak_flops": peaks,
        "diffusers_dit_step_s": diffusers_dit,
        "runs": rows,
    }


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())  # fmt: skip
    return f"{model}, {torch.get_num_threads()} threads"
