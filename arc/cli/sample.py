"""``arc-sample``: prompts -> WAV files plus a JSONL record of how each was made.

arc-sample --preset tiny --prompt "a low sine tone" --seconds 1 --num 2
arc-sample --stable-audio stabilityai/stable-audio-open-small --prompts-file prompts.txt --steps 8
arc-sample --checkpoint logs/tones_arc/runs/<date>/checkpoints/last.ckpt --prompt "a low sine tone"
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from arc.audio_io import write_wav
from arc.data.audio import AudioTextDataset
from arc.generate import SCHEDULES, generate
from arc.models.wrapper import AudioDiffusionModel


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="arc-sample", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--preset", help="a model preset from conf/model/ with random weights (smoke tests)")
    source.add_argument("--stable-audio", metavar="REPO_OR_DIR", help="an official stable-audio-tools release")
    source.add_argument("--checkpoint", type=Path, help="an arc-train checkpoint (.ckpt, pre-training or ARC)")
    parser.add_argument("--no-ema", action="store_true", help="with --checkpoint: the raw DiT instead of its EMA")
    prompts = parser.add_mutually_exclusive_group(required=True)
    prompts.add_argument("--prompt", action="append", help="a prompt (repeat for several)")
    prompts.add_argument("--prompts-file", type=Path, help="a text file with one prompt per line")
    parser.add_argument("--seconds", type=float, default=None, help="duration (default: the model's maximum)")
    parser.add_argument("--num", type=int, default=1, help="samples per prompt (seeds seed, seed + 1, ...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--sampler", choices=sorted(SCHEDULES), default="pingpong")
    parser.add_argument("--cfg-scale", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--init-audio", type=Path, help="audio-to-audio: a file to start from (needs --sigma-max < 1)")
    parser.add_argument("--sigma-max", type=float, default=1.0, help="noise level to start at (1 = pure noise)")
    parser.add_argument("--out", type=Path, default=Path("outputs/samples"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def load_model(args: argparse.Namespace) -> AudioDiffusionModel:
    if args.preset is not None:
        from arc.config import build_model

        return build_model(args.preset)
    if args.checkpoint is not None:
        from arc.training.checkpoints import load_trained_model

        return load_trained_model(args.checkpoint, use_ema=not args.no_ema)
    from arc.releases import load_stable_audio

    return load_stable_audio(args.stable_audio)


def read_init_audio(path: Path, model: AudioDiffusionModel) -> torch.Tensor:
    """(audio_channels, sample_size) init audio, read exactly as training audio is (``AudioTextDataset``: decoded,
    resampled, channels mapped, cut or zero-padded from the start); a bad file is a ``BadItemError`` naming it."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "init.jsonl"
        manifest.write_text(json.dumps({"path": str(path.resolve()), "caption": "init audio"}) + "\n")
        channels = model.pretransform.audio_channels
        dataset = AudioTextDataset(manifest, tmp, model.sample_rate, channels, model.sample_size, random_crop=False)
        return dataset[0]["audio"]


def read_prompts(args: argparse.Namespace) -> list[str]:
    if args.prompt is not None:
        return args.prompt
    lines = [line.strip() for line in args.prompts_file.read_text().splitlines()]
    prompts = [line for line in lines if line]
    if not prompts:
        raise SystemExit(f"{args.prompts_file} holds no prompts")
    return prompts


def sample(argv: list[str] | None = None) -> list[dict]:
    """Run the command line ``argv``; return one record per file."""
    args = parse_args(argv)
    model = load_model(args).to(args.device).eval()
    seconds = args.seconds if args.seconds is not None else model.max_seconds
    model.check_seconds([seconds])
    if not 0 < args.sigma_max <= 1:
        raise SystemExit(f"--sigma-max must be in (0, 1], got {args.sigma_max}")
    if (args.init_audio is not None) != (args.sigma_max < 1):
        raise SystemExit("audio-to-audio takes both --init-audio and --sigma-max < 1 (e.g. 0.7), or neither")
    init = None if args.init_audio is None else read_init_audio(args.init_audio, model).to(args.device)
    jobs = [(p, args.seed + k) for p in read_prompts(args) for k in range(args.num)]
    args.out.mkdir(parents=True, exist_ok=True)
    records = []
    for start in tqdm(range(0, len(jobs), args.batch_size), desc="arc-sample", unit="batch"):
        batch = jobs[start : start + args.batch_size]
        prompts, seeds = [p for p, _ in batch], [s for _, s in batch]
        init_batch = None if init is None else init.expand(len(batch), -1, -1)
        audio = generate(
            model, prompts, [seconds] * len(batch), seeds, args.steps, args.sampler, args.cfg_scale,
            sigma_max=args.sigma_max, init_audio=init_batch,
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
                    "sampler": args.sampler,
                    "steps": args.steps,
                    "cfg_scale": args.cfg_scale,
                    "seconds": seconds,
                    "sigma_max": args.sigma_max,
                    "init_audio": None if args.init_audio is None else str(args.init_audio),
                    "path": str(path),
                }
            )
    with open(args.out / "samples.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    print(f"wrote {len(records)} files and samples.jsonl to {args.out}")
    return records


def main(argv: list[str] | None = None) -> None:
    sample(argv)


if __name__ == "__main__":
    main()
