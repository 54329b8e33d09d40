"""``arc-bench export``: the DiT and the decoder at a real model's shape (default: Stable Audio Open Small, random
weights: timing and size do not depend on them) converted to every backend and precision, each file timed on this
CPU. Per file and thread count: latency (median, min, max over repeats after one warm-up), peak RSS of the process
that ran it, file size, and output SNR against fp32 PyTorch on the same inputs; PyTorch fp32 is the baseline row.

The conditioners are left out: their T5-base weights cannot be built offline, and they run once per generation.
Each measurement runs in its own process, so peak memory is the file's own.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from pathlib import Path

import torch

from arc.bench.processes import in_process
from arc.export import convert
from arc.export.graphs import DecoderGraph, DiTGraph
from arc.export.parity import snr_db
from arc.profiling import peak_rss_mib

FILES = {  # (graph, backend, precision)
    "dit": [("litert", "fp32"), ("litert", "int8"), ("onnx", "fp32"), ("onnx", "int8")],
    "decoder": [("litert", "fp32"), ("litert", "fp16"), ("onnx", "fp32")],
}


def _modules(preset: str) -> tuple[dict, dict]:
    """The DiT (every weight perturbed: a fresh DiT's zero-initialised output layers give v = 0) and the decoder of
    ``conf/model/<preset>.yaml``, with seeded inputs at their shapes."""
    from hydra.utils import instantiate

    from arc.config import compose_config

    cfg = compose_config("train", [f"model={preset}"]).model
    torch.manual_seed(0)
    dit = instantiate(cfg.dit).eval()
    with torch.no_grad():
        for p in dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    pretransform = instantiate(cfg.pretransform).eval()
    frames = cfg.sample_size // pretransform.downsampling_ratio
    tokens = cfg.conditioners.text.max_length + len(cfg.conditioners.numbers)
    width = cfg.conditioners.text.output_dim
    generator = torch.Generator().manual_seed(0)
    inputs = {
        "dit": {"x": torch.randn(1, dit.io_channels, frames, generator=generator), "t": torch.tensor([0.7]),
                "cross_attn_cond": torch.randn(1, tokens, width, generator=generator),
                "global_cond": torch.randn(1, width * len(cfg.conditioners.numbers), generator=generator)},
        "decoder": {"latents": torch.randn(1, dit.io_channels, frames, generator=generator)},
    }  # fmt: skip
    return {"dit": DiTGraph(dit).eval(), "decoder": DecoderGraph(pretransform).eval()}, inputs


def _time(run, repeats: int) -> list[float]:
    run()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _measure(path: str, backend: str, threads: int, repeats: int, inputs: dict, queue: mp.Queue) -> None:
    if backend == "litert":
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(path, num_threads=threads).get_signature_runner()
        run = lambda: runner(**inputs)  # noqa: E731
    else:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        run = lambda: dict(zip(names, session.run(names, inputs), strict=True))  # noqa: E731
    times = _time(run, repeats)
    output = next(iter(run().values()))
    queue.put({"times": times, "peak_mib": peak_rss_mib(), "output": output})


def _measure_torch(preset: str, name: str, threads: int, repeats: int, queue: mp.Queue) -> None:
    torch.set_num_threads(threads)
    modules, inputs = _modules(preset)
    with torch.inference_mode():
        times = _time(lambda: modules[name](**inputs[name]), repeats)
    queue.put({"times": times, "peak_mib": peak_rss_mib()})


HEADER = ("| graph | file | threads | median ms | min ms | max ms | peak RSS MiB | file MiB | SNR dB vs fp32 "
          "| convert s |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip


def _print_row(r: dict) -> None:
    size = "" if r["mib"] is None else f"{r['mib']:.1f}"
    conv = "" if r["convert_s"] is None else f"{r['convert_s']:.0f}"
    print(f"| {r['graph']} | {r['file']} | {r['threads']} | {r['median_ms']:.1f} | {r['min_ms']:.1f} | "
          f"{r['max_ms']:.1f} | {r['peak_mib']:.0f} | {size} | {r['snr_db']:.1f} | {conv} |", flush=True)  # fmt: skip


def bench_export(
    preset: str, out: Path, repeats: int, threads: list[int], names: tuple[str, ...] = tuple(FILES)
) -> list[dict]:
    """Convert (files already in ``out`` are reused), measure, print (as measured) and return one row per file and
    thread count, for the graphs ``names``."""
    modules, inputs = _modules(preset)
    print(f"{preset}: {', '.join(names)}, random weights, this CPU, {repeats} repeats after one warm-up")
    print(HEADER, flush=True)
    rows = []
    for name in names:
        module = modules[name]
        with torch.no_grad():
            reference = next(iter(module(**inputs[name]).values())).numpy()
        arrays = {k: v.numpy() for k, v in inputs[name].items()}
        outputs = list(module(**inputs[name]))
        for n in threads:
            result = in_process(_measure_torch, preset, name, n, repeats)
            rows.append({"graph": name, "file": "PyTorch fp32", "threads": n, "mib": None, "snr_db": float("inf"),
                         "convert_s": None, **_summary(result)})  # fmt: skip
            _print_row(rows[-1])
        for backend, precision in FILES[name]:
            path = out / f"{name}_{precision}{'.tflite' if backend == 'litert' else '.onnx'}"
            start = time.perf_counter()
            if not path.is_file():
                if backend == "litert":
                    convert.to_litert(name, module, inputs[name], path, precision)
                elif precision == "fp32":
                    convert.to_onnx(name, module, inputs[name], path, outputs)
                else:
                    convert.onnx_int8(out / f"{name}_fp32.onnx", path)
                converted = time.perf_counter() - start
            else:
                converted = None
            for n in threads:
                result = in_process(_measure, str(path), backend, n, repeats, arrays)
                rows.append({"graph": name, "file": f"{backend} {precision}", "threads": n,
                             "mib": path.stat().st_size / 2**20, "snr_db": snr_db(reference, result["output"]),
                             "convert_s": converted, **_summary(result)})  # fmt: skip
                _print_row(rows[-1])
    return rows


def _summary(result: dict) -> dict:
    times = [t * 1e3 for t in result["times"]]
    return {"median_ms": statistics.median(times), "min_ms": min(times), "max_ms": max(times),
            "peak_mib": result["peak_mib"]}  # fmt: skip
