"""``arc-bench train-step``: one ARC training step (D and G) against one pre-training step, with a real Lightning
Trainer on random-weight models: median time per role and the growth of peak memory during ``fit``. Each run is
its own subprocess."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

import lightning as L
import torch

from arc.bench.processes import in_process
from arc.profiling import peak_rss_mib, rss_mib


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
    base = rss_mib()
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
    results = {}
    for kind in ("pretrain", "arc"):
        results[kind] = in_process(_measure_train_step, kind, experiment, batch_size, steps, device)
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
