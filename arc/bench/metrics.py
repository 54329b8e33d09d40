"""How fast the metric models embed on this machine: per model, 10 s stereo 44.1 kHz clips prepared as each
reference metric prepares them, seconds of audio per second, peak memory, and the projected wall time of the
AudioCaps test set (4,875 clips of 10 s). Random weights at the real sizes (timing only, labelled so); each model
runs in its own subprocess so the peak-memory numbers do not mix."""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from arc.bench.processes import in_process
from arc.metrics import embed
from arc.profiling import peak_rss_mib

AUDIOCAPS_CLIPS, CLIP_SECONDS, SOURCE_RATE = 4875, 10, 44100


def _embedder(name: str) -> Callable[[np.ndarray], object]:
    """A function embedding one stereo 44.1 kHz clip as its metric does (``arc.metrics.embed``), random weights."""
    if name == "openl3":
        from arc.metrics.openl3 import OpenL3

        model = OpenL3().eval()
        return lambda clip: embed.openl3_embeddings(model, clip, SOURCE_RATE)
    if name == "passt":
        from arc.metrics.passt import Passt, PasstClassifier

        model = PasstClassifier(Passt()).eval()
        return lambda clip: embed.passt_clip_outputs(model, clip, SOURCE_RATE)
    if name == "clap":
        from transformers import ClapModel

        from arc.metrics.clap import clap_config, clap_feature_extractor

        model, extractor = ClapModel(clap_config()).eval(), clap_feature_extractor()
        return lambda clip: embed.clap_clip_embedding(model, extractor, clip, SOURCE_RATE)
    raise ValueError(f"unknown metric model {name!r}")


def _measure(name: str, clips: int, queue: mp.Queue) -> None:
    torch.manual_seed(0)
    embed_clip = _embedder(name)
    audio = np.random.default_rng(0).normal(0, 0.1, (clips + 1, 2, CLIP_SECONDS * SOURCE_RATE)).astype(np.float32)
    seconds = []
    for i, clip in enumerate(audio):  # the first clip warms up
        start = time.perf_counter()
        embed_clip(clip)
        if i > 0:
            seconds.append(time.perf_counter() - start)
    peak_mib = peak_rss_mib()
    queue.put({"model": name, "median_s": statistics.median(seconds), "min_s": min(seconds), "peak_mib": peak_mib})


def bench_metrics(clips: int = 3) -> list[dict]:
    """Print and return one row per metric model (torch's default thread count)."""
    rows = []
    for name in ("openl3", "passt", "clap"):
        rows.append(in_process(_measure, name, clips))
    print(f"metric models, random weights (timing only), {torch.get_num_threads()} threads, "
          f"{CLIP_SECONDS} s stereo clips at {SOURCE_RATE} Hz, {clips} clips after one warm-up")  # fmt: skip
    print("| model | s per clip (median) | min | audio s per s | peak RSS MiB | AudioCaps test (4,875 clips) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        hours = r["median_s"] * AUDIOCAPS_CLIPS / 3600
        print(f"| {r['model']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {CLIP_SECONDS / r['median_s']:.1f} | "
              f"{r['peak_mib']:.0f} | {hours:.1f} h |")  # fmt: skip
    return rows
