"""``arc-eval``'s pipeline: prompts -> (generate) -> per-file features -> reference statistics -> each system's
numbers. The entry point (``arc.cli.eval``) only composes the config; the outputs are written by
``arc.metrics.report``.

Files on disk, so a killed evaluation resumes where it stopped and a large one shards:

- a system's audio: ``<dir>/<id>.wav`` is the first rendering of prompt ``id`` (stable-audio-metrics' naming: a
  directory it evaluates is one arc-eval evaluates) and ``<dir>/rendering<k>/<id>.wav`` rendering ``k >= 1``.
  Generated files go to ``<out>/<system>/audio/`` in that layout; one that exists is complete (written
  atomically) and is not generated again. Rendering ``k`` of prompt ``i`` is drawn from seed
  ``seed + i * renderings + k``, the same for every system.
- features: ``<root>/<settings>/<sha256 of the audio file>.npz``, computed once per file content and metric
  settings (weights included); a file that cannot be read gets an ``error`` record instead, counted in the
  results. Systems' features live under ``<out>/features``, references' under the reference cache.
- reference statistics: ``<cache>/<key>.npz``, the key a hash of the metric settings and every reference file's
  id and content, so a changed file or setting recomputes.

Generation and features run as Lightning ``predict`` over the configured trainer (``trainer=ddp``, several nodes,
the SLURM launcher: as ``arc-train``), each process taking a shard of the files; rank 0 then scores.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from arc.audio_io import AUDIO_SUFFIXES, UnreadableAudioError, read_clip, write_wav
from arc.data.audio import read_manifest
from arc.data.tones import ToneAttributes, render_tone
from arc.errors import InvalidInputError, MissingFileError
from arc.fast import FastPaths, SamplingGraphs, accelerate, check_graph_sampler
from arc.files import atomic_write, sha256_file
from arc.generate import generate, load_generator
from arc.metrics.audio import SilentAudioError
from arc.metrics.references import load_fd_reference, load_passt_reference
from arc.metrics.sets import Arrays, Clip
from arc.metrics.weights import metrics_cache_dir
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import SAMPLERS, sampling_defaults
from arc.training.callbacks import probe_prompts
from arc.training.checkpoints import read_training_checkpoint

log = logging.getLogger(__name__)
TrainerFactory = Callable[[str | None], L.Trainer]  # precision (None: the configured one) -> a predict Trainer


@dataclass(frozen=True)
class Prompt:
    id: str
    caption: str


@dataclass(frozen=True)
class System:
    """What to evaluate: a directory of ``audio``, or a ``checkpoint`` (arc-train) or official release ``model``
    to generate from (``sampler``, ``steps``, ``cfg_scale``: the model's defaults when null)."""

    name: str
    audio: str | None = None
    checkpoint: str | None = None
    model: str | None = None
    use_ema: bool = True
    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None

    @property
    def generates(self) -> bool:
        return self.audio is None


def parse_systems(node: DictConfig | dict) -> list[System]:
    """``{name: {audio | checkpoint | model, ...}}`` -> systems; unknown keys and ambiguous sources are errors."""
    if not node:
        raise InvalidInputError("no system to evaluate: add one, e.g. +systems.mine.audio=DIR or "
                                "+systems.arc.checkpoint=CKPT")  # fmt: skip
    allowed = {f.name for f in fields(System)} - {"name"}
    systems = []
    for name, spec in node.items():
        spec = OmegaConf.to_container(spec) if isinstance(spec, DictConfig) else dict(spec or {})
        unknown = sorted(set(spec) - allowed)
        if unknown:
            raise InvalidInputError(f"system {name!r}: unknown keys {unknown}; allowed: {sorted(allowed)}")
        system = System(name=str(name), **spec)
        sources = [key for key in ("audio", "checkpoint", "model") if getattr(system, key) is not None]
        if len(sources) != 1:
            raise InvalidInputError(
                f"system {name!r} needs one of audio (a directory), checkpoint or model; got {sources or 'none'}"
            )
        if system.sampler is not None and system.sampler not in SAMPLERS:
            raise InvalidInputError(f"system {name!r}: unknown sampler {system.sampler!r}; one of {sorted(SAMPLERS)}")
        if system.steps is not None and (not isinstance(system.steps, int) or system.steps < 1):
            raise InvalidInputError(f"system {name!r}: steps must be an integer >= 1, got {system.steps!r}")
        if system.cfg_scale is not None and not isinstance(system.cfg_scale, int | float):
            raise InvalidInputError(f"system {name!r}: cfg_scale must be a number, got {system.cfg_scale!r}")
        if system.checkpoint is not None:
            read_training_checkpoint(system.checkpoint)  # every checkpoint is checked before anything runs
        systems.append(system)
    return systems


def read_prompts(spec: str | int, seed: int) -> list[Prompt]:
    """A manifest (``.jsonl`` / ``.csv`` with ``id`` and ``caption``), or a number of distinct tones captions drawn
    with ``seed`` (ids ``tones000``, ...)."""
    if isinstance(spec, int):
        return [Prompt(f"tones{i:03d}", caption) for i, caption in enumerate(probe_prompts(spec, seed))]
    rows = read_manifest(spec, required=("id", "caption"))
    empty = [row.id for row in rows if not row.caption.strip()]
    if empty:
        raise InvalidInputError(f"{spec}: {len(empty)} prompts have an empty caption (ids {empty[:5]})")
    if not rows:
        raise InvalidInputError(f"{spec} holds no prompts")
    return [Prompt(row.id, row.caption) for row in rows]


def rendering_path(root: Path, prompt_id: str, rendering: int, suffix: str = ".wav") -> Path:
    return (root if rendering == 0 else root / f"rendering{rendering}") / f"{prompt_id}{suffix}"


def find_audio(root: Path, prompt_id: str, rendering: int) -> Path | None:
    for suffix in AUDIO_SUFFIXES:
        path = rendering_path(root, prompt_id, rendering, suffix)
        if path.is_file():
            return path
    return None


def render_seed(seed: int, index: int, rendering: int, renderings: int) -> int:
    return seed + index * renderings + rendering


class _Indices(torch.utils.data.Dataset):
    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def _predict(trainer: L.Trainer, module: L.LightningModule, n: int, batch_size: int) -> None:
    """Run ``module.predict_step`` over job indices ``0..n-1`` (sharded across processes), then wait for all."""
    loader = DataLoader(_Indices(n), batch_size=batch_size, collate_fn=list)
    trainer.predict(module, loader, return_predictions=False)
    trainer.strategy.barrier()


@dataclass(frozen=True)
class GenerationJob:
    prompt: str
    seed: int
    path: Path


class GenerationModule(L.LightningModule):
    """``predict_step``: generate a batch of jobs and write each WAV (trimmed to ``seconds``)."""

    def __init__(self, model: AudioDiffusionModel, jobs: Sequence[GenerationJob], system: System, seconds: float,
                 fast: FastPaths):  # fmt: skip
        super().__init__()
        self.model, self.jobs, self.system, self.seconds, self.fast = model, list(jobs), system, seconds, fast
        self.graphs = None

    def on_predict_start(self) -> None:
        # after the trainer has moved the model to its device
        accelerate(self.model, self.fast, self.device)
        self.graphs = SamplingGraphs(self.model) if self.fast.cuda_graphs else None

    def predict_step(self, batch: list[int], batch_idx: int) -> None:
        jobs = [self.jobs[i] for i in batch]
        audio = generate(
            self.model, [j.prompt for j in jobs], [self.seconds] * len(jobs), [j.seed for j in jobs],
            self.system.steps, self.system.sampler, self.system.cfg_scale, graphs=self.graphs,
        )  # fmt: skip
        for job, clip in zip(jobs, audio, strict=True):
            write_wav(job.path, clip[:, : round(self.seconds * self.model.sample_rate)], self.model.sample_rate)


def generate_system(
    system: System, prompts: Sequence[Prompt], renderings: int, seed: int, seconds: float | None, out: Path,
    make_trainer: TrainerFactory, batch_size: int, fast: FastPaths,
) -> tuple[Path, dict | None]:  # fmt: skip
    """Generate the missing renderings of ``system`` into ``out/<name>/audio`` with the ``fast`` paths; return that
    directory and, when files were generated, their timing: ``{clips, seconds, seconds_per_clip, batch_size,
    device}`` (wall time of the generation loop across all processes, model loading excluded)."""
    root = out / system.name / "audio"
    jobs = [
        GenerationJob(p.caption, render_seed(seed, i, k, renderings), rendering_path(root, p.id, k))
        for i, p in enumerate(prompts)
        for k in range(renderings)
    ]
    todo = [job for job in jobs if not job.path.is_file()]
    log.info("%s: %d of %d files to generate (%d already written)", system.name, len(todo), len(jobs),
             len(jobs) - len(todo))  # fmt: skip
    if todo:
        model = load_generator(checkpoint=system.checkpoint, release=system.model, use_ema=system.use_ema).eval()
        length = model.max_seconds if seconds is None else seconds
        model.check_seconds([length])
        fast = fast.applicable(model)  # the tiny patching has no decoder to speed up
        if fast.cuda_graphs:
            check_graph_sampler(system.sampler or sampling_defaults(model.diffusion_objective).sampler)
        module = GenerationModule(model, todo, system, length, fast)
        start = time.perf_counter()
        _predict(make_trainer(None), module, len(todo), batch_size)
        seconds = time.perf_counter() - start
        return root, {"clips": len(todo), "seconds": seconds, "seconds_per_clip": seconds / len(todo),
                      "batch_size": batch_size, "device": str(module.device)}  # fmt: skip
    return root, None


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _save_arrays(path: Path, arrays: Arrays) -> None:
    def write(f: io.BufferedWriter) -> None:
        np.savez(f, **arrays)

    atomic_write(path, write)


def load_arrays(path: Path) -> Arrays:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@dataclass(frozen=True)
class FeatureJob:
    audio: Path
    features: Path


class FeatureModule(L.LightningModule):
    """``predict_step``: read each job's audio and write its features, or an ``error`` record saying why not (an
    unreadable file; a silent one, on which the embedding metrics are undefined)."""

    def __init__(self, metrics: torch.nn.Module, jobs: Sequence[FeatureJob], reference: bool):
        super().__init__()
        self.metrics, self.jobs, self.reference = metrics, list(jobs), reference

    def predict_step(self, batch: list[int], batch_idx: int) -> None:
        for i in batch:
            job = self.jobs[i]
            try:
                audio, rate = read_clip(job.audio)
                arrays = self.metrics.features(audio, rate, self.reference)
            except (UnreadableAudioError, SilentAudioError) as err:
                arrays = {"error": np.array(f"{job.audio}: {err}" if isinstance(err, SilentAudioError) else str(err))}
            _save_arrays(job.features, arrays)


def compute_features(
    metrics: torch.nn.Module, audio_files: Sequence[Path], root: Path, reference: bool, make_trainer: TrainerFactory
) -> list[Arrays]:
    """Features of each file (content-addressed under ``root``; only the missing ones are computed), in order."""
    key = settings_key(metrics.settings(reference))
    paths = [
        root / key / f"{sha256_file(p)}.npz" for p in tqdm(audio_files, desc="hashing audio", unit="file", leave=False)
    ]
    todo = list({f: FeatureJob(a, f) for a, f in zip(audio_files, paths, strict=True) if not f.is_file()}.values())
    log.info("features: %d of %d files to compute", len(todo), len(paths))
    if todo:
        _predict(make_trainer("32-true"), FeatureModule(metrics, todo, reference), len(todo), batch_size=1)
    return [load_arrays(p) for p in paths]


@dataclass
class FileReport:
    """What happened to the files of one system or reference: counted, and named by id."""

    evaluated: int = 0
    missing: list[str] = field(default_factory=list)  # prompts (or renderings) without a file
    unreadable: dict[str, str] = field(default_factory=dict)  # file -> why
    unlisted: int = 0  # audio files in the directory that no prompt names


def _clips(
    entries: Sequence[tuple[Prompt, int, Path]], metrics: torch.nn.Module, root: Path, reference: bool,
    make_trainer: TrainerFactory, report: FileReport,
) -> list[Clip]:  # fmt: skip
    features = compute_features(metrics, [path for *_, path in entries], root, reference, make_trainer)
    clips = []
    for (prompt, k, path), arrays in zip(entries, features, strict=True):
        if "error" in arrays:
            report.unreadable[str(path)] = str(arrays["error"])
        else:
            clips.append(Clip(prompt.id, prompt.caption, k, arrays))
    report.evaluated = len(clips)
    return clips


def system_clips(
    audio_dir: Path, prompts: Sequence[Prompt], renderings: int, metrics: torch.nn.Module, out: Path,
    make_trainer: TrainerFactory,
) -> tuple[list[Clip], FileReport]:  # fmt: skip
    """The clips of a system's audio directory, with the missing, unreadable and unlisted files counted."""
    if not audio_dir.is_dir():
        raise MissingFileError(f"audio directory {audio_dir} does not exist")
    report, entries = FileReport(), []
    for prompt in prompts:
        for k in range(renderings):
            path = find_audio(audio_dir, prompt.id, k)
            if path is None:
                report.missing.append(prompt.id if k == 0 else f"{prompt.id} (rendering {k})")
            else:
                entries.append((prompt, k, path))
    listed = {path.resolve() for *_, path in entries}
    report.unlisted = sum(1 for p in audio_dir.rglob("*") if p.suffix in AUDIO_SUFFIXES and p.resolve() not in listed)
    clips = _clips(entries, metrics, out / "features", False, make_trainer, report)
    if not any(c.rendering == 0 for c in clips):
        raise InvalidInputError(
            f"{audio_dir}: none of the {len(prompts)} prompts has a readable first rendering (<id>.wav); "
            f"{len(report.missing)} missing (e.g. {report.missing[:3]}), {len(report.unreadable)} unreadable"
        )
    return clips, report


def render_tones_reference(
    prompts: Sequence[Prompt], renderings: int, seed: int, sample_rate: int, num_samples: int, root: Path
) -> Path:
    """Fresh tones of each prompt's caption, rendering ``k`` of prompt ``i`` from ``default_rng((seed, j))`` with
    ``j = i * renderings + k``, written to ``root/<id>_<k>.wav``."""
    for i, prompt in enumerate(prompts):
        attrs = ToneAttributes.from_caption(prompt.caption)
        for k in range(renderings):
            path = root / f"{prompt.id}_{k}.wav"
            if not path.is_file():
                rng = np.random.default_rng((seed, render_seed(0, i, k, renderings)))
                audio = render_tone(attrs, rng, sample_rate, num_samples)
                write_wav(path, torch.from_numpy(audio), sample_rate)
    return root


def _reference_entries(audio_dir: Path, manifest: str | None) -> list[tuple[Prompt, int, Path]]:
    if not audio_dir.is_dir():
        raise MissingFileError(f"reference audio directory {audio_dir} does not exist")
    if manifest is not None:
        rows = read_manifest(manifest)
        return [(Prompt(r.id, r.caption), 0, audio_dir / r.path) for r in rows]
    files = sorted(p for p in audio_dir.iterdir() if p.suffix in AUDIO_SUFFIXES)
    if not files:
        raise InvalidInputError(f"reference directory {audio_dir} holds no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [(Prompt(p.stem, ""), 0, p) for p in files]


def reference_statistics(
    cfg: DictConfig, metrics: torch.nn.Module, prompts: Sequence[Prompt], renderings: int, seed: int, out: Path,
    make_trainer: TrainerFactory,
) -> tuple[Arrays, dict]:  # fmt: skip
    """The reference summary (``metrics.summarize_reference``) from a directory of audio, freshly rendered tones,
    and/or stable-audio-metrics' precomputed files (which take precedence), with a description for the results."""
    summary: Arrays = {}
    described: dict = {}
    audio_dir = Path(cfg.audio) if cfg.audio is not None else None
    if cfg.tones is not None:
        audio_dir = render_tones_reference(
            prompts, renderings, seed, cfg.tones.sample_rate, cfg.tones.num_samples, out / "reference"
        )
    if audio_dir is not None:
        entries = _reference_entries(audio_dir, cfg.manifest if cfg.tones is None else None)
        missing = [str(path) for *_, path in entries if not path.is_file()]
        entries = [e for e in entries if e[2].is_file()]
        cache = Path(cfg.cache_dir) if cfg.cache_dir is not None else metrics_cache_dir() / "references"
        hashes = [(p.id, sha256_file(path)) for p, _, path in entries]
        key = settings_key({"settings": metrics.settings(True), "files": sorted(hashes)})
        cached = cache / f"{key}.npz"
        report = FileReport(missing=missing)
        if cached.is_file():
            summary = load_arrays(cached)
            report.evaluated = int(summary.pop("files"))
            report.unreadable = json.loads(str(summary.pop("unreadable")))
            log.info("reference statistics from the cache: %s", cached)
        else:
            clips = _clips(entries, metrics, cache / "features", True, make_trainer, report)
            if len(clips) < 2:
                raise InvalidInputError(f"reference {audio_dir}: {len(clips)} readable files; at least 2 are needed")
            summary = metrics.summarize_reference(clips)
            _save_arrays(
                cached,
                summary | {"files": np.array(len(clips)), "unreadable": np.array(json.dumps(report.unreadable))},
            )
        described |= {"audio": str(audio_dir), "statistics": str(cached), "files": report.__dict__}
    if cfg.fd_openl3 is not None:
        summary["openl3_mu"], summary["openl3_sigma"] = load_fd_reference(cfg.fd_openl3)
        described["fd_openl3"] = str(cfg.fd_openl3)
    if cfg.kl_passt is not None:
        probs = load_passt_reference(cfg.kl_passt)
        summary["passt_ids"] = np.array(list(probs))
        summary["passt_probabilities"] = np.stack(list(probs.values()))
        described["kl_passt"] = str(cfg.kl_passt)
    return summary, described


def evaluate(
    cfg: DictConfig, systems: Sequence[System], prompts: Sequence[Prompt], metrics: torch.nn.Module,
    make_trainer: TrainerFactory, is_global_zero: Callable[[], bool],
) -> dict | None:  # fmt: skip
    """Generate, embed and score every system; the results (rank 0; other ranks get None)."""
    out = Path(cfg.out_dir)
    reference, described = reference_statistics(
        cfg.reference, metrics, prompts, cfg.renderings, cfg.seed, out, make_trainer
    )
    fast = FastPaths(**cfg.fast)
    results = {"metrics": metrics.name, "prompts": len(prompts), "renderings": cfg.renderings,
               "reference": described, "fast_paths": asdict(fast), "systems": {}}  # fmt: skip
    per_item = {}
    for system in systems:
        audio_dir, timing = (Path(system.audio), None) if system.audio is not None else generate_system(
            system, prompts, cfg.renderings, cfg.seed, cfg.seconds, out, make_trainer, cfg.batch_size, fast
        )  # fmt: skip
        clips, report = system_clips(audio_dir, prompts, cfg.renderings, metrics, out, make_trainer)
        if not is_global_zero():
            continue
        timing_path = out / system.name / "generation.json"  # kept, so a resumed evaluation still reports it
        if timing is not None:
            text = json.dumps(timing).encode()
            atomic_write(timing_path, lambda f, text=text: f.write(text))
        values, items = metrics.score(clips, reference)
        source = {k: v for k, v in system.__dict__.items() if v is not None and k != "name"}
        results["systems"][system.name] = {"source": source, "audio": str(audio_dir), "metrics": values,
                                           "files": report.__dict__}  # fmt: skip
        if system.audio is None and timing_path.is_file():
            results["systems"][system.name]["generation"] = json.loads(timing_path.read_text())
        per_item[system.name] = {k: v.tolist() for k, v in items.items()}
    if not is_global_zero():
        return None
    results["per_item"] = per_item
    return results


def run(cfg: DictConfig) -> dict | None:
    """``arc-eval``: instantiate the metric set and trainers from ``cfg``, evaluate, and (rank 0) write and print
    the results (``arc.metrics.report``)."""
    from hydra.utils import instantiate
    from lightning.pytorch.utilities import rank_zero_only

    from arc.metrics.report import markdown_table, write_results

    if OmegaConf.select(cfg, "out_dir", throw_on_resolution_failure=False) is None:
        raise ValueError("out_dir does not resolve: outside arc-eval (Hydra's run directory) set paths.output_dir")
    if cfg.renderings < 1:
        raise InvalidInputError(f"renderings must be >= 1, got {cfg.renderings}")
    systems, prompts = parse_systems(cfg.systems), read_prompts(cfg.prompts, cfg.seed)  # before loading any model
    FastPaths(**cfg.fast)  # its errors too
    metrics = instantiate(cfg.metrics)

    def make_trainer(precision: str | None) -> L.Trainer:
        overrides = {} if precision is None else {"precision": precision}
        return instantiate(cfg.trainer, logger=False, enable_checkpointing=False, enable_model_summary=False,
                           **overrides)  # fmt: skip

    results = evaluate(cfg, systems, prompts, metrics, make_trainer, lambda: rank_zero_only.rank == 0)
    if results is None:
        return None
    paths = write_results(results, Path(cfg.out_dir))
    print(markdown_table(results))
    for name, system in results["systems"].items():
        files = system["files"]
        if files["missing"] or files["unreadable"]:
            print(f"{name}: {len(files['missing'])} missing files (e.g. {files['missing'][:3]}), "
                  f"{len(files['unreadable'])} unreadable (e.g. {list(files['unreadable'])[:3]}): left out, "
                  "listed in results.json")  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in paths))
    return results
