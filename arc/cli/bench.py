"""``arc-bench``: time things and print the numbers (the measurements live in ``arc.bench``).

arc-bench generate device=cpu model=sao_small   # end to end per stage, fast paths, baselines (Hydra: conf/bench/)
arc-bench dit [--device cpu] [--repeats 5]   # SAO Small DiT forward vs diffusers' StableAudioDiTModel
arc-bench train-step [--experiment tones] [--batch-size 8]   # one ARC step vs one pre-training step
arc-bench metrics [--clips 3]   # OpenL3, PaSST and CLAP embedding speed and memory
arc-bench export [--preset sao_small]   # exported DiT and decoder per backend and precision
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from arc.bench.train_step import TRAIN_EXPERIMENTS
from arc.cli.errors import debug_requested, report_user_errors
from arc.config import CONF_DIR


@hydra.main(version_base="1.3", config_path=str(CONF_DIR / "bench"), config_name="generate")
def generate(cfg: DictConfig) -> None:
    from arc.bench.generate import run

    report_user_errors("arc-bench generate", lambda: run(cfg), debug=debug_requested("HYDRA_FULL_ERROR"))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["generate"]:  # Hydra overrides follow
        sys.argv = ["arc-bench generate", *argv[1:]]
        generate()
        return
    parser = argparse.ArgumentParser(prog="arc-bench", description="arc benchmarks: they print numbers")
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("generate", help="generation per stage, fast paths and baselines (Hydra overrides: conf/bench/)")
    dit = sub.add_parser("dit", help="SAO Small DiT forward latency, parameters, peak memory vs diffusers")
    dit.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    dit.add_argument("--repeats", type=int, default=5)
    dit.add_argument("--rounds", type=int, default=2)
    step = sub.add_parser("train-step", help="time and peak memory of one ARC step vs one pre-training step")
    step.add_argument("--experiment", choices=sorted(TRAIN_EXPERIMENTS), default="tones")
    step.add_argument("--batch-size", type=int, default=8)
    step.add_argument("--steps", type=int, default=8, help="batches timed per run (the first of each kind dropped)")
    step.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    metrics = sub.add_parser("metrics", help="metric models: audio seconds embedded per second, peak memory")
    metrics.add_argument("--clips", type=int, default=3, help="10 s clips timed per model (after one warm-up)")
    export = sub.add_parser("export", help="exported DiT and decoder: latency, memory, size, SNR per backend")
    export.add_argument("--preset", default="sao_small", help="a conf/model preset (random weights)")
    export.add_argument("--repeats", type=int, default=5)
    export.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    export.add_argument("--out", type=Path, default=Path("outputs/bench_export"), help="converted files (reused)")
    export.add_argument("--graphs", nargs="+", choices=["dit", "decoder"], default=["dit", "decoder"])
    args = parser.parse_args(argv)
    if args.what == "export":
        from arc.bench.export import bench_export

        bench_export(args.preset, args.out, args.repeats, args.threads, tuple(args.graphs))
    elif args.what == "dit":
        from arc.bench.dit import bench_dit

        bench_dit(args.device, args.repeats, args.rounds)
    elif args.what == "metrics":
        from arc.bench.metrics import bench_metrics

        bench_metrics(args.clips)
    else:
        from arc.bench.train_step import bench_train_step

        bench_train_step(args.experiment, args.batch_size, args.steps, args.device)


if __name__ == "__main__":
    main()
