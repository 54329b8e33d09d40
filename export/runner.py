"""Text -> WAV from an arc export directory, with no PyTorch and no arc: NumPy, a tokenizer and ``ai_edge_litert``
(or ``onnxruntime`` for the ONNX files). Copy this file next to the exported files (``arc-export`` puts a copy in
every export directory) and run it on the device:

    python runner.py EXPORT_DIR --prompt "a dog barks" --seconds 10 --seed 0 --out dog.wav
    python runner.py EXPORT_DIR --prompt "..." --backend onnx --threads 4

Pipeline (SPEC 7): tokenizer -> conditioners graph -> ``steps`` ping-pong steps of the DiT graph on the logSNR
schedule, noise from ``numpy.random.default_rng(seed)`` (the initial latent first, then one draw per step) ->
decoder graph -> 16-bit WAV. Tensors are looked up by name, never by position. Per-stage times are printed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import wave
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1  # of manifest.json; the runner refuses any other


class ExportError(Exception):
    """An export directory this runner cannot use; the message says which file or field and what to do."""


def read_manifest(directory: Path) -> dict:
    path = directory / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{directory} has no manifest.json: it is not an arc export directory (run arc-export)")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(
            f"{path} has format_version {manifest.get('format_version')!r}; this runner reads {FORMAT_VERSION}: "
            f"use the runner.py written with the export (arc {manifest.get('arc_version')})"
        )
    return manifest


class Graph:
    """One exported graph on one backend, called with named float32 / int32 arrays, returning named arrays."""

    def __init__(self, directory: Path, manifest: dict, name: str, backend: str, threads: int):
        entry = manifest["graphs"][name]
        file = entry["files"].get(backend)
        if file is None:
            raise ExportError(
                f"graph {name!r} was not exported for backend {backend!r} (has {sorted(entry['files'])})"
            )
        path = directory / file
        if not path.is_file():
            raise ExportError(f"{path} is missing: the export directory is incomplete (export again)")
        self.name, self.inputs, self.outputs = name, entry["inputs"], list(entry["outputs"])
        if backend.startswith("litert"):
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(str(path), num_threads=threads)
            signature = interpreter.get_signature_list()["serving_default"]
            if sorted(signature["inputs"]) != sorted(self.inputs) or sorted(signature["outputs"]) != sorted(
                self.outputs
            ):
                raise ExportError(f"{path}: its signature {signature} does not match manifest.json")
            self._run = interpreter.get_signature_runner("serving_default")
        else:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            self._run = lambda **inputs: dict(zip(names, session.run(names, inputs), strict=True))

    def __call__(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        for key, spec in self.inputs.items():
            if tuple(inputs[key].shape) != tuple(spec["shape"]):
                raise ExportError(
                    f"graph {self.name!r}: input {key} has shape {inputs[key].shape}, expected {spec['shape']}"
                )
        return self._run(**{k: np.ascontiguousarray(v, dtype=self.inputs[k]["dtype"]) for k, v in inputs.items()})


def tokenize(directory: Path, manifest: dict, prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """(1, L) int32 token ids and attention mask, as the model's tokenizer makes them (truncated, then padded)."""
    if not prompt.strip():
        raise ExportError("the prompt is empty: give a text prompt")
    spec = manifest["tokenizer"]
    length, pad = spec["max_length"], spec["pad_id"]
    if spec["kind"] == "byt5":  # ByT5: UTF-8 bytes + 3 (ids 0-2 are pad, </s>, unk), then </s>
        ids = [b + 3 for b in prompt.encode("utf-8")][: length - 1] + [1]
    else:
        from tokenizers import Tokenizer

        path = directory / spec["file"]
        if not path.is_file():
            raise ExportError(f"{path} is missing: the tokenizer file belongs in the export directory")
        tokenizer = Tokenizer.from_file(str(path))
        tokenizer.enable_truncation(length)
        ids = tokenizer.encode(prompt).ids
    mask = [1] * len(ids) + [0] * (length - len(ids))
    return np.array([ids + [pad] * (length - len(ids))], np.int32), np.array([mask], np.int32)


def logsnr_schedule(steps: int) -> np.ndarray:
    """stable-audio-tools' ``sample_rf`` times: ``sigmoid(-linspace(-6, 2, steps + 1))`` with ends 1 and 0."""
    t = 1 / (1 + np.exp(np.linspace(-6.0, 2.0, steps + 1)))
    t[0], t[-1] = 1.0, 0.0
    return t.astype(np.float32)


def noise(seed: int, shape: tuple[int, ...], steps: int) -> list[np.ndarray]:
    """The sampler's noise: the initial latent, then one draw per ping-pong step, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(steps + 1)]


def generate(
    directory: Path, prompt: str, seconds: float | None, seed: int, steps: int | None = None, backend: str = "litert",
    threads: int = 2, fp32: bool = False,
) -> tuple[np.ndarray, dict[str, float]]:  # fmt: skip
    """``(audio (channels, samples) float32, seconds per stage)``; every graph in its device precision (the
    manifest's ``device_precision`` of the backend: the DiT in int8), or all in fp32 with ``fp32`` (parity)."""
    manifest = read_manifest(directory)
    seconds = manifest["max_seconds"] if seconds is None else seconds
    if not 0 < seconds <= manifest["max_seconds"] + 1e-6:
        raise ExportError(f"--seconds {seconds} is outside (0, {manifest['max_seconds']:.2f}], what the model makes")
    steps = manifest["sampling"]["steps"] if steps is None else steps
    if steps < 1:
        raise ExportError(f"--steps must be >= 1, got {steps}")
    times: dict[str, float] = {}
    start = time.perf_counter()
    precisions = {name: "fp32" for name in manifest["graphs"]} if fp32 else manifest["device_precision"][backend]
    graphs = {
        name: Graph(directory, manifest, name, f"{backend}_{precisions[name]}", threads) for name in manifest["graphs"]
    }
    times["load"] = time.perf_counter() - start

    start = time.perf_counter()
    ids, mask = tokenize(directory, manifest, prompt)
    cond = graphs["conditioners"](input_ids=ids, attention_mask=mask, seconds_total=np.array([seconds], np.float32))
    times["conditioners"] = time.perf_counter() - start

    start = time.perf_counter()
    x, *renoise = noise(seed, (1, *manifest["latent_shape"]), steps)
    ts = logsnr_schedule(steps)
    cfg_scale = manifest["sampling"]["cfg_scale"]
    tokens, unconditional, global_cond = (
        cond["cross_attn_cond"],
        np.zeros_like(cond["cross_attn_cond"]),
        cond["global_cond"],
    )
    for i in range(steps):  # ping-pong: jump to the clean estimate, re-noise to the next time
        v = graphs["dit"](x=x, t=ts[i : i + 1], cross_attn_cond=tokens, global_cond=global_cond)["v"]
        if cfg_scale != 1:  # classifier-free guidance: zeroed tokens, the same duration vector (as Stable Audio)
            v_uncond = graphs["dit"](x=x, t=ts[i : i + 1], cross_attn_cond=unconditional, global_cond=global_cond)["v"]
            v = v_uncond + cfg_scale * (v - v_uncond)
        x0 = x - ts[i] * v
        x = (1 - ts[i + 1]) * x0 + ts[i + 1] * renoise[i]
    times["dit"] = time.perf_counter() - start

    start = time.perf_counter()
    audio = graphs["decoder"](latents=x0)["audio"]
    times["decoder"] = time.perf_counter() - start
    return audio[:, : round(seconds * manifest["sample_rate"])], times


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM WAV, samples clipped to [-1, 1] (the standard library's ``wave``)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as f:
        f.setnchannels(audio.shape[0])
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(np.ascontiguousarray(pcm.T).tobytes())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="text -> WAV from an arc export directory (LiteRT or ONNX Runtime)")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--seconds", type=float, default=None, help="default: the model's longest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="default: the manifest's")
    parser.add_argument("--backend", choices=("litert", "onnx"), default="litert")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fp32", action="store_true", help="every graph in fp32 (the DiT too): parity checks")
    parser.add_argument("--out", type=Path, default=Path("out.wav"))
    args = parser.parse_args(argv)
    try:
        audio, times = generate(
            args.directory, args.prompt, args.seconds, args.seed, args.steps, args.backend, args.threads, args.fp32
        )
    except ExportError as err:
        print(f"runner: error: {err}", file=sys.stderr)
        sys.exit(2)
    manifest = read_manifest(args.directory)
    write_wav(args.out, audio, manifest["sample_rate"])
    total = sum(v for k, v in times.items() if k != "load")
    stages = ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in times.items())
    print(f"wrote {args.out} ({audio.shape[1] / manifest['sample_rate']:.2f} s): {stages}; generation {total:.3f} s "
          f"({args.backend}, {args.threads} threads)")  # fmt: skip


if __name__ == "__main__":
    main()
