"""``arc-export``: a model -> an export directory (SPEC 7) that the torch-free runner uses alone.

    <out>/conditioners_fp32.tflite  dit_fp32.tflite  dit_int8.tflite  decoder_fp32.tflite  [decoder_fp16.tflite]
    <out>/conditioners_fp32.onnx    dit_fp32.onnx    dit_int8.onnx    decoder_fp32.onnx
    <out>/tokenizer.json (unless the tokenizer is byte-level ByT5)   runner.py   manifest.json   parity.{json,md}

``manifest.json`` is written last and removed first: a directory without it is incomplete (an interrupted
export), and every graph file is renamed into place only when whole.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import ByT5Tokenizer

import arc
from arc.export import convert, parity
from arc.export.graphs import example_inputs, graphs
from arc.files import atomic_write, sha256_file
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import sampling_defaults

log = logging.getLogger(__name__)
FORMAT_VERSION = 1  # export/runner.py's FORMAT_VERSION


def _specs(tensors: dict[str, torch.Tensor]) -> dict[str, dict]:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")} for k, v in tensors.items()}


def _tokenizer_entry(model: AudioDiffusionModel, out: Path) -> dict:
    """The tokenizer as the runner reads it: ByT5 is computed (bytes + 3), any other is a ``tokenizers`` file."""
    text = model.conditioners.text
    if isinstance(text.tokenizer, ByT5Tokenizer):
        return {"kind": "byt5", "max_length": text.max_length, "pad_id": text.tokenizer.pad_token_id}
    backend = getattr(text.tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise convert.ExportError(
            f"the tokenizer {type(text.tokenizer).__name__} has no fast (tokenizers) version to export for the runner"
        )
    atomic_write(out / "tokenizer.json", lambda f: f.write(backend.to_str().encode()))
    return {"kind": "tokenizers", "file": "tokenizer.json", "max_length": text.max_length,
            "pad_id": text.tokenizer.pad_token_id}  # fmt: skip


def sampling(model: AudioDiffusionModel) -> dict:
    """What the runner samples with: ping-pong on the logSNR schedule, the model's steps and CFG scale when its
    own sampler is ping-pong (ARC and rf_denoiser models), else 8 steps without guidance."""
    defaults = sampling_defaults(model.diffusion_objective)
    if defaults.sampler == "pingpong":
        return {"sampler": "pingpong", "schedule": "logsnr", "steps": defaults.steps, "cfg_scale": defaults.cfg_scale}
    log.warning("a %s model samples with %s; the device runner uses ping-pong, 8 steps, no CFG",
                model.diffusion_objective, defaults.sampler)  # fmt: skip
    return {"sampler": "pingpong", "schedule": "logsnr", "steps": 8, "cfg_scale": 1.0}


def export_model(
    model: AudioDiffusionModel, out: Path, source: dict, backends: list[str], decoder_fp16: bool, thresholds: dict,
    prompt: str, seed: int = 0,
) -> dict:  # fmt: skip
    """Write every graph file, the tokenizer, the runner and the manifest, then the parity report (raising
    ``ExportError`` if an fp32 file is off). Returns the manifest."""
    unknown = sorted(set(backends) - set(convert.PRECISIONS))
    if unknown or not backends:
        raise convert.ExportError(f"unknown backends {unknown or backends}; choose from {sorted(convert.PRECISIONS)}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    model = model.eval()
    modules, inputs = graphs(model), example_inputs(model)
    precisions = {"conditioners": ["fp32"], "dit": ["fp32", "int8"], "decoder": ["fp32", *(["fp16"] * decoder_fp16)]}
    entries = {}
    with torch.no_grad():
        outputs = {name: module(**inputs[name]) for name, module in modules.items()}
    for name, module in modules.items():
        files = {}
        for backend in backends:
            for precision in precisions[name]:
                if precision not in convert.PRECISIONS[backend]:
                    continue
                suffix = ".tflite" if backend == "litert" else ".onnx"
                path = out / f"{name}_{precision}{suffix}"
                log.info("converting %s (%s, %s)", name, backend, precision)
                if backend == "litert":
                    convert.to_litert(name, module, inputs[name], path, precision)
                elif precision == "fp32":
                    convert.to_onnx(name, module, inputs[name], path, list(outputs[name]))
                else:
                    convert.onnx_int8(out / f"{name}_fp32.onnx", path)
                files[f"{backend}_{precision}"] = path.name
        entries[name] = {"files": files, "inputs": _specs(inputs[name]), "outputs": _specs(outputs[name])}
    shutil.copyfile(parity.RUNNER, out / "runner.py")
    manifest = {
        "format_version": FORMAT_VERSION,
        "arc_version": arc.__version__,
        "source": source,
        "objective": model.diffusion_objective,
        "sample_rate": model.sample_rate,
        "sample_size": model.sample_size,
        "max_seconds": model.max_seconds,
        "audio_channels": model.pretransform.audio_channels,
        "latent_shape": list(model.latent_shape),
        "sampling": sampling(model),
        "tokenizer": _tokenizer_entry(model, out),
        "device_precision": {  # what the runner loads by default, per backend
            backend: {
                name: "int8"
                if name == "dit"
                else "fp16"
                if name == "decoder" and decoder_fp16 and backend == "litert"
                else "fp32"
                for name in entries
            }
            for backend in backends
        },
        "graphs": entries,
    }
    atomic_write(out / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    rows = parity.graph_parity(out, manifest, modules, inputs) + parity.pipeline_parity(
        out, model, manifest, prompt, seed
    )
    parity.write_report(out, rows, thresholds)
    return manifest


def run(cfg: DictConfig) -> dict:
    """``arc-export``: load the configured model, export it, print the parity table."""
    from arc.errors import InvalidInputError
    from arc.generate import load_generator

    sources = {k: cfg[k] for k in ("checkpoint", "model", "preset") if cfg[k] is not None}
    if len(sources) != 1:
        raise InvalidInputError(f"give exactly one of checkpoint=, model= or preset=; got {sorted(sources) or 'none'}")
    ((kind, value),) = sources.items()
    model = load_generator(preset=cfg.preset, checkpoint=cfg.checkpoint, release=cfg.model, use_ema=cfg.use_ema)
    source = {"kind": kind, "path": str(value), "use_ema": cfg.use_ema}
    if kind == "checkpoint":
        source["sha256"] = sha256_file(Path(value))
    out = Path(cfg.out_dir)
    thresholds = {"max_abs_fp32": cfg.parity.max_abs_fp32, "min_snr_db": cfg.parity.min_snr_db}
    manifest = export_model(model, out, source, list(cfg.backends), cfg.decoder_fp16, thresholds,
                            cfg.parity.prompt, cfg.parity.seed)  # fmt: skip
    print((out / "parity.md").read_text(), end="")
    print(f"wrote {out} ({', '.join(sorted(f for e in manifest['graphs'].values() for f in e['files'].values()))}); "
          f"run it with: python {out / 'runner.py'} {out} --prompt '...'")  # fmt: skip
    return manifest
