"""``arc-bench dit``: the SAO Small DiT forward (arc's) against diffusers' ``StableAudioDiTModel`` at the closest
shape: latency, parameters, peak memory. Each model is measured in its own subprocess, so the peak-memory numbers do
not mix."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time

import torch

from arc.bench.processes import in_process
from arc.profiling import peak_rss_mib, rss_mib

SAO_SMALL_TOKENS = 256  # latent frames; the prepended global token makes 257


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


def measure_dit(kind: str, device: str, repeats: int, dtype: torch.dtype, queue: mp.Queue) -> None:
    """One model's forward (``kind``: arc or diffusers) with its weights and float inputs in ``dtype``."""
    cuda = device.startswith("cuda")
    torch.manual_seed(0)
    dit, inputs = _build(kind)
    dit = dit.to(device, dtype).eval()
    inputs = {k: v.to(device, dtype if v.is_floating_point() else v.dtype) if isinstance(v, torch.Tensor) else v
              for k, v in inputs.items()}  # fmt: skip
    if kind == "arc":
        dit.timestep_features.float()  # as arc.fast does
    params = sum(p.numel() for p in dit.parameters())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    base = rss_mib()
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
    best: dict[str, dict] = {}
    for kind in ("arc", "diffusers") * rounds:
        result = in_process(measure_dit, kind, device, repeats, torch.float32)
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
