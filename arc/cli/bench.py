"""``arc-bench``: time things and print the numbers.

    arc-bench dit [--device cpu] [--repeats 5]   # SAO Small DiT forward vs diffusers' StableAudioDiTModel
    arc-bench train-step [--experiment tones] [--batch-size 8]   # one ARC step vs one pre-training step
    arc-bench metrics [--clips 3]   # OpenL3, PaSST and CLAP embedding speed and memory (arc.metrics.bench)
    arc-bench export [--preset sao_small]   # exported DiT and decoder per backend and precision (arc.export.bench)

Each model is measured in its own subprocess, so the peak-memory numbers do not mix.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

import lightning as L
import torch

from arc.profiling import peak_rss_mib

SAO_SMALL_TOKENS = 256  # latent frames; the prepended global token makes 257


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _build(kind: str) -> tuple[torch.nn.Module, dict]:
    """The SAO Small DiT (arc, from conf/model/sao_small.yaml) or diffusers' closest shape, with its inputs."""
    if kind == "arc":
        from hydra.utils import instantiate

        from arc.config import compose_config

        dit = instantiate(compose_config("train", ["model=sao_small"]).model.dit)
        inputs = dict(
            x=torch.randn(1, 64, SAO_SMALL_TOKENS),
            t=torch.rand(1),
            cross_attn_cond=torch.randn(1, 65, 768),
            global_cond=torch.randn(1, 768),
        )
        return dit, inputs
    from diffusers import StableAudioDiTModel
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    # diffusers has no QK LayerNorm; everything else is SAO Small's shape (tokens projected to 1024, 8 kv heads)
    dit = StableAudioDiTModel(
        sample_size=SAO_SMALL_TOKENS,
        in_channels=64,
        num_layers=16,
        attention_head_dim=128,
        num_attention_heads=8,
        num_key_value_attention_heads=8,
        out_channels=64,
        cross_attention_dim=1024,
        global_states_input_dim=768,
        cross_attention_input_dim=768,
    )
    rotary = get_1d_rotary_pos_embed(64, SAO_SMALL_TOKENS + 1, use_real=True, repeat_interleave_real=False)
    inputs = dict(
        hidden_states=torch.randn(1, 64, SAO_SMALL_TOKENS),
        timestep=torch.rand(1),
        encoder_hidden_states=torch.randn(1, 65, 768),
        global_hidden_states=torch.randn(1, 1, 768),
        rotary_embedding=rotary,
        return_dict=False,
    )
    return dit, inputs


def _measure(kind: str, device: str, repeats: int, queue: mp.Queue) -> None:
    cuda = device.startswith("cuda")
    torch.manual_seed(0)
    dit, inputs = _build(kind)
    dit = dit.to(device).eval()
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    params = sum(p.numel() for p in dit.parameters())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base = _rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            sync()
            start = time.perf_counter()
            dit(**inputs)
            sync()
            if i:  # the first call warms up
                times.append(time.perf_counter() - start)
    if cuda:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = peak_rss_mib() - base + sum(p.numel() * p.element_size() for p in dit.parameters()) / 2**20
    queue.put(dict(kind=kind, params=params, median_s=statistics.median(times), min_s=min(times), peak_mib=peak))


def bench_dit(device: str, repeats: int, rounds: int = 2) -> list[dict]:
    """Alternate the two models over ``rounds`` (a busy machine then slows both alike); keep each one's best round."""
    ctx = mp.get_context("spawn")
    best: dict[str, dict] = {}
    for kind in ("arc", "diffusers") * rounds:
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(kind, device, repeats, queue))
        proc.start()
        result = queue.get()
        proc.join()
        if kind not in best or result["median_s"] < best[kind]["median_s"]:
            best[kind] = result
    results = [best["arc"], best["diffusers"]]
    print(
        f"SAO Small DiT forward, batch 1, {SAO_SMALL_TOKENS + 1} tokens, {device}, {torch.get_num_threads()} threads, "
        f"median of {repeats}, best of {rounds} alternating rounds"
    )
    print(f"{'model':<28}{'params':>12}{'median ms':>12}{'min ms':>10}{'peak MiB':>10}")
    names = {"arc": "arc DiffusionTransformer", "diffusers": "diffusers StableAudioDiT"}
    for r in results:
        print(
            f"{names[r['kind']]:<28}{r['params'] / 1e6:>11.1f}M{r['median_s'] * 1e3:>12.1f}"
            f"{r['min_s'] * 1e3:>10.1f}{r['peak_mib']:>10.0f}"
        )
    arc, ref = results
    print(
        f"ratio arc / diffusers: time {arc['median_s'] / ref['median_s']:.2f}x, "
        f"peak memory {arc['peak_mib'] / ref['peak_mib']:.2f}x, params {arc['params'] / ref['params']:.4f}x"
    )
    return results


class _StepTimer(L.Callback):
    """Lightning callback timing each training batch (its forward, backward and optimiser step)."""

    def __init__(self, sync):
        self.sync, self.times, self.roles = sync, [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.sync()
        self.start = time.perf_counter()
        self.g_before = getattr(module, "g_steps", None)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.sync()
        self.times.append(time.perf_counter() - self.start)
        self.roles.append("step" if self.g_before is None else ("G" if module.g_steps > self.g_before else "D"))


# model -> (pre-training, ARC) experiment; SAO Small needs its T5 and VAE weights in the hub cache, so only tones
TRAIN_EXPERIMENTS = {"tones": ("tones_pretrain", "tones_arc")}


def _measure_train_step(kind: str, experiment: str, batch_size: int, steps: int, device: str, queue: mp.Queue) -> None:
    """Train ``steps`` batches with a real Trainer on random-weight models, timing each; report the median per role
    and the growth of peak memory during ``fit`` (activations, gradients, optimiser state; not the weights)."""
    from hydra.utils import instantiate

    from arc.config import compose_config
    from arc.data.module import AudioDataModule
    from arc.data.tones import TonesDataset

    cuda = device.startswith("cuda")
    pretrain_exp, arc_exp = TRAIN_EXPERIMENTS[experiment]
    cfg = compose_config("train", [f"experiment={pretrain_exp if kind == 'pretrain' else arc_exp}"])
    if kind == "arc":
        cfg.module.model = "${model}"  # random weights: the step's cost does not depend on them
    torch.manual_seed(0)
    module = instantiate(cfg.module, _partial_=True)()
    model = module.model
    data = AudioDataModule(TonesDataset(batch_size * steps, model.sample_rate, model.sample_size), None, batch_size)
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    timer = _StepTimer(sync)
    precision = "bf16-mixed" if cuda else "32-true"
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu", devices=1, precision=precision,
        max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[timer], num_sanity_val_steps=0,
    )  # fmt: skip
    base = _rss_mib()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(module, datamodule=data)
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else peak_rss_mib() - base
    # the first batch of each role warms up
    per_role = {}
    for role in sorted(set(timer.roles)):
        times = [t for t, r in zip(timer.times, timer.roles, strict=True) if r == role][1:]
        per_role[role] = statistics.median(times)
    queue.put(dict(kind=kind, per_role=per_role, peak_mib=peak))


def bench_train_step(experiment: str, batch_size: int, steps: int, device: str) -> dict:
    """Median time of a pre-training step and of ARC's D and G steps, and each run's peak memory, with the ratios."""
    ctx = mp.get_context("spawn")
    results = {}
    for kind in ("pretrain", "arc"):
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure_train_step, args=(kind, experiment, batch_size, steps, device, queue))
        proc.start()
        results[kind] = queue.get()
        proc.join()
    pre, arc = results["pretrain"], results["arc"]
    pre_s = pre["per_role"]["step"]
    arc_s = (arc["per_role"]["D"] + arc["per_role"]["G"]) / 2  # one ARC training step, averaged over D and G
    print(
        f"one training step, {experiment} model, batch {batch_size}, {device}, {torch.get_num_threads()} threads, "
        f"median over {steps} steps (first of each kind dropped)"
    )
    print(f"{'step':<22}{'median ms':>12}{'fit peak MiB':>14}")
    print(f"{'pre-training':<22}{pre_s * 1e3:>12.1f}{pre['peak_mib']:>14.0f}")
    print(f"{'ARC D step':<22}{arc['per_role']['D'] * 1e3:>12.1f}{arc['peak_mib']:>14.0f}")
    print(f"{'ARC G step':<22}{arc['per_role']['G'] * 1e3:>12.1f}{'':>14}")
    print(f"ratio ARC / pre-training: time {arc_s / pre_s:.2f}x (mean of D and G), peak memory "
          f"{arc['peak_mib'] / pre['peak_mib']:.2f}x")  # fmt: skip
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="arc-bench", description="arc benchmarks: they print numbers")
    sub = parser.add_subparsers(dest="what", required=True)
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
        from arc.export.bench import bench_export

        bench_export(args.preset, args.out, args.repeats, args.threads, tuple(args.graphs))
    elif args.what == "dit":
        bench_dit(args.device, args.repeats, args.rounds)
    elif args.what == "metrics":
        from arc.metrics.bench import bench_metrics

        bench_metrics(args.clips)
    else:
        bench_train_step(args.experiment, args.batch_size, args.steps, args.device)


if __name__ == "__main__":
    main()
