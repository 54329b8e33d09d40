"""How far each exported file is from fp32 PyTorch: per graph and backend on fixed inputs, and for the whole
text -> audio pipeline through the device runner with the same noise as arc's own ping-pong sampler."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from arc.export.convert import ExportError
from arc.files import atomic_write
from arc.flow import ReplayNoise
from arc.generate import generate
from arc.models.wrapper import AudioDiffusionModel

RUNNER = Path(__file__).resolve().parents[2] / "export" / "runner.py"


def load_runner() -> ModuleType:
    """The torch-free device runner (top-level ``export/runner.py``) as a module."""
    if not RUNNER.is_file():
        raise ExportError(f"{RUNNER} is missing: arc-export needs arc's source checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location("arc_export_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def snr_db(reference: np.ndarray, estimate: np.ndarray) -> float:
    """``10 log10(sum ref^2 / sum (est - ref)^2)``; inf when equal."""
    error = float(np.sum((np.asarray(estimate, np.float64) - reference) ** 2))
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return float("inf") if error == 0 else 10 * np.log10(max(signal, 1e-30) / error)


def compare(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    return {
        "max_abs": float(np.abs(np.asarray(estimate, np.float64) - reference).max()),
        "snr_db": snr_db(reference, estimate),
    }


@torch.no_grad()
def graph_parity(directory: Path, manifest: dict, modules: dict, inputs: dict, threads: int = 2) -> list[dict]:
    """One row per graph, backend and precision: max abs error and SNR of every output vs the PyTorch module."""
    runner = load_runner()
    rows = []
    for name, module in modules.items():
        reference = {k: v.numpy() for k, v in module(**inputs[name]).items()}
        arrays = {k: v.numpy() for k, v in inputs[name].items()}
        for backend in manifest["graphs"][name]["files"]:
            outputs = runner.Graph(directory, manifest, name, backend, threads)(**arrays)
            worst = min((compare(reference[k], outputs[k]) for k in reference), key=lambda r: r["snr_db"])
            rows.append({"graph": name, "backend": backend, "precision": backend.split("_")[1], **worst})
    return rows


def pipeline_parity(
    directory: Path, model: AudioDiffusionModel, manifest: dict, prompt: str, seed: int, threads: int = 2
) -> list[dict]:
    """The runner's audio (each backend: all fp32, and the device precisions) against arc's ping-pong sampler on
    the PyTorch model with the runner's noise replayed."""
    runner = load_runner()
    sampling = manifest["sampling"]
    steps, seconds = sampling["steps"], manifest["max_seconds"]
    noises = [torch.from_numpy(n) for n in runner.noise(seed, (1, *manifest["latent_shape"]), steps)]
    reference = generate(model, [prompt], [seconds], [seed], steps, "pingpong", sampling["cfg_scale"],
                         noise=ReplayNoise(noises))[0].numpy()  # fmt: skip
    rows = []
    backends = sorted({b.split("_")[0] for entry in manifest["graphs"].values() for b in entry["files"]})
    for backend in backends:
        for fp32 in (True, False):
            audio, _ = runner.generate(directory, prompt, seconds, seed, steps, backend, threads, fp32=fp32)
            device = manifest["device_precision"][backend]
            label = "fp32" if fp32 else "device (" + ", ".join(f"{k} {v}" for k, v in device.items()) + ")"
            precision = "fp32" if fp32 else "device"
            rows.append({"graph": "pipeline", "backend": f"{backend} {label}", "precision": precision,
                         **compare(reference, audio)})  # fmt: skip
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| graph | backend | max abs error | SNR dB |", "|---|---|---|---|"]
    lines += [f"| {r['graph']} | {r['backend']} | {r['max_abs']:.3g} | {r['snr_db']:.1f} |" for r in rows]
    return "\n".join(lines)


def write_report(directory: Path, rows: list[dict], thresholds: dict) -> None:
    """``parity.json`` and ``parity.md``; then an ``ExportError`` if an fp32 file is off by more than
    ``thresholds["max_abs_fp32"]`` or an int8 / fp16 file's SNR is below ``thresholds["min_snr_db"]`` (the report
    stays, to read)."""
    atomic_write(
        directory / "parity.json",
        lambda f: f.write(json.dumps({"thresholds": thresholds, "rows": rows}, indent=1).encode()),
    )
    atomic_write(directory / "parity.md", lambda f: f.write((markdown(rows) + "\n").encode()))
    failed = [
        r for r in rows
        if (r["precision"] == "fp32" and r["max_abs"] > thresholds["max_abs_fp32"])
        or (r["precision"] != "fp32" and r["snr_db"] < thresholds["min_snr_db"])
    ]  # fmt: skip
    if failed:
        worst = ", ".join(
            f"{r['graph']} {r['backend']} (max abs {r['max_abs']:.3g}, SNR {r['snr_db']:.1f} dB)" for r in failed
        )
        raise ExportError(
            f"exported files differ from PyTorch beyond the thresholds {thresholds}: {worst}; see "
            f"{directory / 'parity.md'}"
        )
