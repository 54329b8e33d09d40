"""``arc-sample``: prompts -> WAV files plus a JSONL record of how each was made.

arc-sample --preset tiny --prompt "a low sine tone" --seconds 1 --num 2
arc-sample --model stabilityai/stable-audio-open-small --prompts-file prompts.txt --fast
arc-sample --checkpoint logs/tones_arc/runs/<date>/checkpoints/last.ckpt --prompt "a low sine tone"

Sampler, steps and CFG scale default to the model's own (``arc.sampling.sampling_defaults``): ping-pong, 8 steps,
no CFG for ARC checkpoints and the Stable Audio Open Small release (``rf_denoiser``); Euler, 50 steps, CFG 7 for
a rectified-flow base model. ``--fast`` and the switches after it are ``arc.fast``'s paths (bf16 DiT, arc's
channels-last bf16 decoder, compilation, CUDA graphs); the decoder's do not apply to a model without a VAE.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from arc.audio_io import write_wav
from arc.cli.errors import debug_requested, report_user_errors
from arc.data.audio import AudioTextDataset
from arc.errors import InvalidInputError, MissingFileError
from arc.fast import DECODERS, DTYPES, FAST, FastPaths, SamplingGraphs, accelerate, check_graph_sampler
from arc.generate import generate, load_generator
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import SAMPLERS, SCHEDULES, sampling_defaults


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="arc-sample", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a model preset from conf/model/ with random weights (smoke tests)")
    source.add_argument(
        "--model",
        "--stable-audio",
        metavar="REPO_OR_DIR",
        help="an official stable-audio-tools release",
    )
    source.add_argument("--checkpoint", type=Path, help="an arc-train checkpoint (.ckpt, pre-training or ARC)")
    parser.add_argument("--no-ema", action="store_true", help="with --checkpoint: the raw DiT instead of its EMA")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    prompts.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    parser.add_argument("--seconds", type=float, default=None, help="duration (default: the model's maximum)")
    parser.add_argument("--num", type=int, default=1, help="samples per prompt (seeds seed, seed + 1, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the model's")
    parser.add_argument("--sampler", choices=sorted(SAMPLERS), default=None, help="default: the model's")
    parser.add_argument("--cfg-scale", type=float, default=None, help="default: the model's")
    parser.add_argument(
        "--schedule", choices=sorted(SCHEDULES), default="logsnr", help="timesteps (reference: logsnr)"
    )
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--init-audio", type=Path, help="audio-to-audio: a file to start from (needs --sigma-max < 1)")
    parser.add_argument("--sigma-max", type=float, default=1.0, help="noise level to start at (1 = pure noise)")
    parser.add_argument("--out", type=Path, default=Path("outputs/samples"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    speed = parser.add_argument_group("fast paths (arc.fast; arc-bench generate measures each)")
    speed.add_argument("--fast", action="store_true", help="bf16 DiT, fast bf16 decoder with a fused snake")
    speed.add_argument("--dit-dtype", choices=sorted(DTYPES), help="DiT weights and activations")
    speed.add_argument("--decoder", choices=DECODERS, help="diffusers' Oobleck decoder or arc's channels-last one")
    speed.add_argument("--fused-snake", action=argparse.BooleanOptionalAction, help="with --decoder fast")
    speed.add_argument("--decoder-dtype", choices=sorted(DTYPES), help="with --decoder fast")
    speed.add_argument("--compile", action=argparse.BooleanOptionalAction, help="torch.compile DiT and decoder")
    speed.add_argument("--cuda-graphs", action=argparse.BooleanOptionalAction, help="capture the sampling loop")
    speed.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return parser.parse_args(argv)


def read_init_audio(path: Path, model: AudioDiffusionModel) -> torch.Tensor:
    """(audio_channels, sample_size) init audio, read exactly as training audio is (``AudioTextDataset``: decoded,
    resampled, channels mapped, cut or zero-padded from the start); a bad file is a ``BadItemError`` naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "init.jsonl"
        manifest.write_text(json.dumps({"path": str(path.resolve()), "caption": "init audio"}) + "\n")
        channels = model.pretransform.audio_channels
        dataset = AudioTextDataset(manifest, tmp, model.sample_rate, channels, model.sample_size, random_crop=False)
        return dataset[0]["audio"]


def fast_paths(args: argparse.Namespace) -> FastPaths:
    """``--fast`` (or plain fp32) with each switch given on the command line on top."""
    switches = {f.name: getattr(args, f.name) for f in fields(FastPaths) if getattr(args, f.name) is not None}
    return replace(FAST if args.fast else FastPaths(), **switches)


def read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt is not None:
        return args.prompt
    if not args.prompts_file.is_file():
        raise MissingFileError(f"--prompts-file {args.prompts_file} does not exist")
    lines = [line.strip() for line in args.prompts_file.read_text().splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise InvalidInputError(f"--prompts-file {args.prompts_file} holds no prompts (one per line)")
    return prompts


def sample(argv: list[str] | None = None) -> list[dict]:
    """Run the command line ``argv``; return one record per file."""
    return sample_with(parse_args(argv))


def sample_with(args: argparse.Namespace) -> list[dict]:
    if not 0 < args.sigma_max <= 1:
        raise InvalidInputError(f"--sigma-max must be in (0, 1], got {args.sigma_max}")
    if (args.init_audio is not None) != (args.sigma_max < 1):
        raise InvalidInputError("audio-to-audio takes both --init-audio and --sigma-max < 1 (e.g. 0.7), or neither")
    if args.steps is not None and args.steps < 1:
        raise InvalidInputError(f"--steps must be >= 1, got {args.steps}")
    if args.num < 1 or args.batch_size < 1:
        raise InvalidInputError(f"--num and --batch-size must be >= 1, got {args.num} and {args.batch_size}")
    prompts = read_prompts(args)
    fast = fast_paths(args)
    model = load_generator(args.preset, args.checkpoint, args.model, use_ema=not args.no_ema)
    if args.fast:
        fast = fast.applicable(model)  # --fast on a model without a VAE (the tiny patching)
    model = accelerate(model, fast, args.device)
    defaults = sampling_defaults(model.diffusion_objective)
    sampler = defaults.sampler if args.sampler is None else args.sampler
    steps = defaults.steps if args.steps is None else args.steps
    cfg_scale = defaults.cfg_scale if args.cfg_scale is None else args.cfg_scale
    seconds = args.seconds if args.seconds is not None else model.max_seconds
    model.check_seconds([seconds])
    if fast.cuda_graphs:
        check_graph_sampler(sampler)
    graphs = SamplingGraphs(model) if fast.cuda_graphs else None
    init = None if args.init_audio is None else read_init_audio(args.init_audio, model).to(args.device)
    jobs = [(p, args.seed + k) for p in prompts for k in range(args.num)]
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for start in tqdm(range(0, len(jobs), args.batch_size), desc="arc-sample", unit="batch"):
        batch = jobs[start : start + args.batch_size]
        batch_prompts, seeds = [p for p, _ in batch], [s for _, s in batch]
        init_batch = None if init is None else init.expand(len(batch), -1, -1)
        audio = generate(
            model, batch_prompts, [seconds] * len(batch), seeds, steps, sampler, cfg_scale, args.schedule,
            sigma_max=args.sigma_max, init_audio=init_batch, graphs=graphs,
        )  # fmt: skip
        for j, (prompt, seed) in enumerate(batch):
            index = start + j
            path = write_wav(
                args.out / f"{index:05d}.wav", audio[j, :, : round(seconds * model.sample_rate)], model.sample_rate
            )
            records.append(
                {
                    "index": index,
                    "prompt": prompt,
                    "seed": seed,
                    "sampler": sampler,
                    "steps": steps,
                    "cfg_scale": cfg_scale,
                    "schedule": args.schedule,
                    "seconds": seconds,
                    "sigma_max": args.sigma_max,
                    "init_audio": None if args.init_audio is None else str(args.init_audio),
                    "fast_paths": asdict(fast),
                    "path": str(path),
                }
            )
    with open(args.out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    print(f"wrote {len(records)} files and samples.jsonl to {args.out}")
    return records


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report_user_errors("arc-sample", lambda: sample_with(args), debug=args.debug or debug_requested())


if __name__ == "__main__":
    main()
