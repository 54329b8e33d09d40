"""``arc-probe``: score tones models with the probe metrics and print one table row per run.

arc-probe --run base <pretrain.ckpt> euler 50 3 --run arc <arc.ckpt> pingpong 8 1 --out outputs/demo

Each run is ``LABEL CHECKPOINT SAMPLER STEPS CFG_SCALE`` (an ``arc-train`` checkpoint of a tones model, its EMA
weights). Every run samples the same prompts from the same seeds; the clips go to ``OUT/LABEL/*.wav`` and the
table to ``OUT/probes.md``, ``OUT/probes.json`` and, as bars against chance, ``OUT/probes.png``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from arc.audio_io import write_wav
from arc.cli.errors import debug_requested, report_user_errors
from arc.errors import InvalidInputError
from arc.sampling import SAMPLERS
from arc.training.callbacks import probe_prompts, probe_samples
from arc.training.checkpoints import load_trained_model

COLUMNS = ("acc_waveform", "acc_pitch", "acc_envelope", "acc_pan", "acc_mean", "acc_all", "fd", "diversity")
# what a random guess scores on each accuracy column (4 waveforms, 3 classes of the others)
CHANCE = {"acc_waveform": 1 / 4, "acc_pitch": 1 / 3, "acc_envelope": 1 / 3, "acc_pan": 1 / 3}
CHANCE |= {"acc_mean": sum(CHANCE.values()) / 4, "acc_all": 1 / 108}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="arc-probe", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run",
        nargs=5,
        action="append",
        required=True,
        metavar=("LABEL", "CHECKPOINT", "SAMPLER", "STEPS", "CFG_SCALE"),
        help="a model and how to sample it (repeat for several)",
    )
    parser.add_argument("--prompts", type=int, default=24, help="distinct tones captions to draw (of 108)")
    parser.add_argument("--per-prompt", type=int, default=2, help="clips per caption (>= 2 for diversity)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=24)
    parser.add_argument("--out", type=Path, default=Path("outputs/probes"))
    parser.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    return parser.parse_args(argv)


def markdown_table(rows: list[dict]) -> str:
    """Rows of ``{"label", "sampler", "steps", "cfg_scale", <COLUMNS>}`` plus a chance row, as a markdown table."""
    header = ["run", "sampler", "steps", "cfg", *COLUMNS, "wavs"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["label"], row["sampler"], str(row["steps"]), f"{row['cfg_scale']:g}"]
        cells += [f"{row[c]:.3f}" for c in COLUMNS] + [row["wavs"]]
        lines.append("| " + " | ".join(cells) + " |")
    chance = ["chance", "", "", "", *(f"{CHANCE[c]:.3f}" if c in CHANCE else "" for c in COLUMNS), ""]
    lines.append("| " + " | ".join(chance) + " |")
    return "\n".join(lines)


def parse_run(label: str, ckpt: str, sampler: str, steps: str, cfg_scale: str) -> tuple[str, Path, str, int, float]:
    """One ``--run`` (five strings), checked."""
    if sampler not in SAMPLERS:
        raise InvalidInputError(f"run {label!r}: unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    try:
        steps_n, cfg = int(steps), float(cfg_scale)
    except ValueError as err:
        raise InvalidInputError(f"run {label!r}: STEPS must be an integer and CFG_SCALE a number ({err})") from err
    if steps_n < 1:
        raise InvalidInputError(f"run {label!r}: STEPS must be >= 1, got {steps_n}")
    return label, Path(ckpt), sampler, steps_n, cfg


def probe(argv: list[str] | None = None) -> list[dict]:
    """Run the command line ``argv``; return one record per run."""
    return probe_with(parse_args(argv))


def probe_with(args: argparse.Namespace) -> list[dict]:
    runs = [parse_run(*run) for run in args.run]
    prompts = [p for p in probe_prompts(args.prompts, args.seed) for _ in range(args.per_prompt)]
    rows = []
    models = [load_trained_model(ckpt) for _, ckpt, *_ in runs]  # every file is checked before any sampling
    for (label, ckpt, sampler, steps, cfg_scale), model in zip(runs, models, strict=True):
        clips, report = probe_samples(
            model, prompts, args.seed, sampler, steps, cfg_scale, args.batch_size, progress=True
        )
        wav_dir = args.out / label
        for i, clip in enumerate(clips):
            write_wav(wav_dir / f"{i:03d}.wav", torch.from_numpy(clip), model.sample_rate)
        settings = {"label": label, "checkpoint": str(ckpt), "sampler": sampler, "steps": steps}
        rows.append(settings | {"cfg_scale": cfg_scale, "wavs": str(wav_dir)} | report)
    table = markdown_table(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "probes.md").write_text(table + "\n")
    (args.out / "probes.json").write_text(json.dumps({"prompts": prompts, "runs": rows}, indent=1) + "\n")
    print(table)
    print(f"plot: {plot_accuracies(rows, args.out / 'probes.png')}")
    return rows


def plot_accuracies(rows: list[dict], path: Path) -> Path:
    """Grouped bars of each run's attribute accuracies, chance marked per attribute; saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attributes = ["acc_waveform", "acc_pitch", "acc_envelope", "acc_pan", "acc_mean"]
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(8, 3.5), layout="constrained")
    for i, row in enumerate(rows):
        offsets = [a + (i - (len(rows) - 1) / 2) * width for a in range(len(attributes))]
        ax.bar(offsets, [row[a] for a in attributes], width, label=f"{row['label']} ({row['sampler']} {row['steps']})")
    for a, name in enumerate(attributes):
        ax.hlines(
            CHANCE[name], a - 0.45, a + 0.45, colors="black", linestyles="dashed", label="chance" if a == 0 else None
        )
    ax.set_xticks(range(len(attributes)), [a.removeprefix("acc_") for a in attributes])
    ax.set_ylim(0, 1)
    ax.set_ylabel("probe accuracy")
    ax.legend(fontsize="small", loc="upper left")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report_user_errors("arc-probe", lambda: probe_with(args), debug=args.debug or debug_requested())


if __name__ == "__main__":
    main()
