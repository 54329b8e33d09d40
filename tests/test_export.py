"""arc-export on the tones model: both backends, every graph loaded in a real LiteRT interpreter and onnxruntime;
the torch-free runner in a subprocess against arc's own ping-pong sampler; an export killed mid-write; errors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from arc.config import build_model
from arc.export import convert
from arc.export.graphs import example_inputs, graphs
from arc.export.parity import load_runner
from arc.export.pipeline import export_model
from arc.flow import ReplayNoise
from arc.generate import generate

PROMPT = "a low sine tone, steady, panned left"
THRESHOLDS = {"max_abs_fp32": 1e-4, "min_snr_db": 25.0}


def _tones_model():
    """The tones model with every DiT weight perturbed: a fresh DiT's zero-initialised output layers make v = 0,
    which any file would match."""
    torch.manual_seed(0)
    model = build_model("tones").eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.dit.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=generator))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    model = _tones_model()
    manifest = export_model(model, out, {"kind": "test"}, ["litert", "onnx"], True, THRESHOLDS, PROMPT)
    return out, model, manifest


@pytest.mark.slow
def test_every_file_matches_pytorch_and_int8_is_small(exported):
    out, model, manifest = exported
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".tflite", ".onnx")) == sorted(
        ["conditioners_fp32.tflite", "dit_fp32.tflite", "dit_int8.tflite", "decoder_fp32.tflite",
         "decoder_fp16.tflite", "conditioners_fp32.onnx", "dit_fp32.onnx", "dit_int8.onnx", "decoder_fp32.onnx"]
    )  # fmt: skip
    # independently of the runner: the DiT files in a real interpreter and onnxruntime
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    inputs = example_inputs(model)["dit"]
    with torch.no_grad():
        reference = graphs(model)["dit"](**inputs)["v"].numpy()
    arrays = {k: v.numpy() for k, v in inputs.items()}
    interpreter = Interpreter(str(out / "dit_fp32.tflite"))
    assert sorted(interpreter.get_signature_list()["serving_default"]["inputs"]) == sorted(arrays)
    litert_v = interpreter.get_signature_runner()(**arrays)["v"]
    session = onnxruntime.InferenceSession(str(out / "dit_fp32.onnx"), providers=["CPUExecutionProvider"])
    (onnx_v,) = session.run(["v"], arrays)
    assert np.abs(litert_v - reference).max() < 1e-4 and np.abs(onnx_v - reference).max() < 1e-4

    report = json.loads((out / "parity.json").read_text())
    rows = {(r["graph"], r["backend"]): r for r in report["rows"]}
    for (graph, backend), row in rows.items():
        if row["precision"] == "fp32":
            assert row["max_abs"] <= 1e-4, (graph, backend, row)
        else:
            assert row["snr_db"] >= THRESHOLDS["min_snr_db"], (graph, backend, row)
    assert rows["dit", "litert_int8"]["snr_db"] < 60  # it is quantised: not equal to fp32
    for suffix in (".tflite", ".onnx"):
        ratio = (out / f"dit_int8{suffix}").stat().st_size / (out / f"dit_fp32{suffix}").stat().st_size
        assert ratio < 0.35, (suffix, ratio)
    assert "| pipeline | litert fp32 |" in (out / "parity.md").read_text()
    assert manifest["graphs"]["dit"]["inputs"]["x"] == {"shape": [1, *model.latent_shape], "dtype": "float32"}


@pytest.mark.slow
def test_the_runner_needs_no_torch_and_reproduces_arc_pingpong(exported, tmp_path):
    out, model, manifest = exported
    wav = tmp_path / "runner.wav"
    check = (
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'arc', 'transformers')); "
        "print('imported:', bad); sys.exit(1 if bad else 0)"
    )
    args = [str(out / "runner.py"), str(out), "--prompt", PROMPT, "--seed", "3", "--fp32", "--out", str(wav)]
    result = subprocess.run([sys.executable, "-c", check, *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "imported: []" in result.stdout and "dit" in result.stdout  # per-stage timings printed
    audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    assert rate == model.sample_rate and audio.shape == (model.sample_size, 2)

    runner = load_runner()
    steps = manifest["sampling"]["steps"]
    noise = ReplayNoise([torch.from_numpy(n) for n in runner.noise(3, (1, *model.latent_shape), steps)])
    expected = generate(model, [PROMPT], [model.max_seconds], [3], steps, "pingpong", 1.0, noise=noise)[0].numpy()
    # the WAV's 16-bit rounding (half a step) plus the fp32 tolerance
    assert np.abs(audio.T - np.clip(expected, -1, 1)).max() <= 0.5 / 32767 + 1e-4


def test_runner_refuses_incomplete_or_foreign_directories(exported, tmp_path):
    out, _, manifest = exported
    runner = load_runner()
    with pytest.raises(runner.ExportError, match="no manifest.json"):
        runner.generate(tmp_path, PROMPT, None, 0)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps(manifest | {"format_version": 99}))
    with pytest.raises(runner.ExportError, match="format_version 99"):
        runner.generate(broken, PROMPT, None, 0)
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(runner.ExportError, match="conditioners_fp32.tflite is missing"):
        runner.generate(broken, PROMPT, None, 0)
    with pytest.raises(runner.ExportError, match="the prompt is empty"):
        runner.generate(out, "  ", None, 0)
    with pytest.raises(runner.ExportError, match="outside"):
        runner.generate(out, PROMPT, 60.0, 0)


def test_byt5_tokens_equal_the_model_tokenizer():
    model = build_model("tones")
    runner = load_runner()
    for prompt in (PROMPT, "é" * 80):
        ids, mask = runner.tokenize(Path("."), {"tokenizer": {"kind": "byt5", "max_length": 48, "pad_id": 0}}, prompt)
        expected_ids, expected_mask = model.conditioners.text.tokenize([prompt])
        assert np.array_equal(ids, expected_ids.numpy()) and np.array_equal(mask, expected_mask.numpy())


def test_a_tokenizers_file_gives_the_model_tokenizer_ids(tmp_path):
    """The path of T5-base (a fast tokenizer saved as tokenizer.json): a word-level tokenizer that appends </s>
    like T5's, pad id 5, wrapped as the model's tokenizer; the runner reads the exported file."""
    from types import SimpleNamespace

    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    from arc.export.pipeline import _tokenizer_entry
    from arc.models.conditioners import T5Conditioner, tiny_t5

    vocab = {"<unk>": 0, "</s>": 1, "a": 2, "low": 3, "tone": 4, "<pad>": 5}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", eos_token="</s>", pad_token="<pad>"
    )
    text = T5Conditioner((tiny_t5()[0], tokenizer), max_length=6, output_dim=32)
    entry = _tokenizer_entry(SimpleNamespace(conditioners=SimpleNamespace(text=text)), tmp_path)
    runner = load_runner()
    for prompt in ("a low tone", "a low tone a low tone a"):  # padded; truncated with </s> kept
        ids, mask = runner.tokenize(tmp_path, {"tokenizer": entry}, prompt)
        expected_ids, expected_mask = text.tokenize([prompt])
        assert np.array_equal(ids, expected_ids.numpy()) and np.array_equal(mask, expected_mask.numpy()), prompt


def test_a_converter_failure_names_the_graph_and_module(tmp_path):
    class Unsupported(torch.nn.Module):
        def forward(self, x):
            return {"y": torch.nonzero(x > 0).float()}  # a data-dependent shape: no static graph

    with pytest.raises(convert.ExportError, match=r"converting graph 'odd' \(Unsupported .*\) failed"):
        convert.to_litert("odd", Unsupported(), {"x": torch.randn(4)}, tmp_path / "odd.tflite", "fp32")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_an_export_killed_mid_write_leaves_nothing_that_passes_as_complete(tmp_path):
    out = tmp_path / "export"
    script = Path(sys.executable).parent / "arc-export"
    proc = subprocess.Popen(
        [str(script), "preset=tones", f"out_dir={out}", f"hydra.run.dir={tmp_path / 'run'}", "backends=[litert]"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while not (out / "conditioners_fp32.tflite").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # during the DiT's conversion or write
    proc.wait()
    assert (out / "conditioners_fp32.tflite").is_file() and not (out / "manifest.json").exists()
    from ai_edge_litert.interpreter import Interpreter

    for path in out.glob("*.tflite"):  # any file under its final name is whole
        Interpreter(str(path)).get_signature_list()
    runner = load_runner()
    with pytest.raises(runner.ExportError, match="no manifest.json"):
        runner.generate(out, PROMPT, None, 0)


@pytest.mark.slow
def test_arc_export_logs_its_own_steps_not_each_lowered_op(tmp_path):
    script = Path(sys.executable).parent / "arc-export"
    args = ["preset=tones", f"out_dir={tmp_path / 'export'}", f"hydra.run.dir={tmp_path / 'run'}", "backends=[litert]"]
    result = subprocess.run([str(script), *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[arc.export.pipeline][INFO] - converting dit (litert, int8)" in result.stdout
    assert "JAX lowering" not in result.stdout + result.stderr  # litert-torch's INFO line per op, on the root logger


def test_arc_export_needs_exactly_one_source(tmp_path):
    script = Path(sys.executable).parent / "arc-export"
    result = subprocess.run([str(script), f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "arc-export: error: give exactly one of checkpoint=" in result.stderr


@pytest.mark.slow
def test_export_benchmark_prints_a_row_per_file_and_thread_count(tmp_path, capsys):
    from arc.bench.export import bench_export

    rows = bench_export("tones", tmp_path, repeats=1, threads=[1])
    assert [(r["graph"], r["file"]) for r in rows] == [
        ("dit", "PyTorch fp32"), ("dit", "litert fp32"), ("dit", "litert int8"), ("dit", "onnx fp32"),
        ("dit", "onnx int8"), ("decoder", "PyTorch fp32"), ("decoder", "litert fp32"), ("decoder", "litert fp16"),
        ("decoder", "onnx fp32"),
    ]  # fmt: skip
    dit = {r["file"]: r for r in rows if r["graph"] == "dit"}
    assert dit["litert fp32"]["snr_db"] > 100 and 20 < dit["litert int8"]["snr_db"] < 60
    assert all(r["median_ms"] > 0 and r["peak_mib"] > 0 for r in rows)
    assert "| dit | litert int8 | 1 |" in capsys.readouterr().out
