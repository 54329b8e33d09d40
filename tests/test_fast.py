"""The fast paths (arc.fast) against plain fp32 eager PyTorch, each within a stated tolerance, and the benchmark
that measures them (``arc-bench generate``)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from arc.bench.flops import count_flops
from arc.bench.generate import snr_db
from arc.errors import InvalidInputError
from arc.fast import FastPaths, SamplingGraphs, accelerate
from arc.flow import ReplayNoise, randn
from arc.generate import generate
from arc.models.fast_decoder import FastOobleckDecoder
from arc.models.pretransforms import oobleck_vae
from arc.sampling import logsnr_timesteps, sample_pingpong

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _snr(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    return snr_db(estimate.detach().float().cpu().numpy(), reference.detach().float().cpu().numpy())


@pytest.fixture(scope="module")
def small_vae():
    """A two-block Oobleck VAE with every weight (snake alpha and beta too) moved off its initial value."""
    torch.manual_seed(0)
    vae = oobleck_vae(channels=16, c_mults=(1, 2), strides=(2, 4), latent_dim=8).eval()
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return vae


def _perturbed(model):
    """A fresh DiT's zero-initialised output layers give v = 0: move every weight so the outputs mean something."""
    with torch.no_grad():
        for p in model.dit.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def test_fast_decoder_is_the_same_function_as_diffusers(small_vae):
    z = torch.randn(2, 8, 40)
    with torch.no_grad():
        reference = small_vae.decoder(z)
        fast = FastOobleckDecoder(small_vae.decoder)(z)
    assert fast.shape == reference.shape == (2, 2, 40 * 8)
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_fused_snake_and_bf16_decoder_within_tolerance(small_vae):
    """Fused snake (compiled) in fp32: the same numbers to 1e-5; bf16 convolutions: audio SNR above 35 dB."""
    z = torch.randn(1, 8, 64)
    with torch.no_grad():
        reference = small_vae.decoder(z)
        fused = FastOobleckDecoder(small_vae.decoder, fused_snake=True)(z)
        bf16 = FastOobleckDecoder(small_vae.decoder, fused_snake=True, dtype=torch.bfloat16)(z)
    torch.testing.assert_close(fused, reference, atol=1e-5, rtol=1e-5)
    assert bf16.dtype == torch.bfloat16
    assert _snr(bf16, reference) > 35


def test_bf16_dit_velocity_within_tolerance(tiny_model):
    """bf16 DiT weights and activations: velocity SNR above 30 dB against fp32; the timestep features stay fp32
    and the model takes and returns fp32 latents."""
    model = _perturbed(tiny_model)
    x, t = torch.randn(2, *model.latent_shape), torch.tensor([0.9, 0.3])
    cond = model.condition(["a low sine tone", "noise"], [1.0, 1.0])
    with torch.no_grad():
        reference = model.velocity(x, t, cond)
        accelerate(model, FastPaths(dit_dtype="bf16"), "cpu")
        fast = model.velocity(x, t, cond)
    assert model.dit.project_in.weight.dtype == torch.bfloat16
    assert model.dit.timestep_features.weight.dtype == torch.float32
    assert fast.dtype == torch.float32
    assert _snr(fast, reference) > 30


@pytest.mark.slow
def test_compiled_bf16_generation_matches_eager(tiny_model):
    """torch.compile (with freezing) of the bf16 DiT: generated audio within 40 dB of the eager bf16 model's."""
    model = accelerate(_perturbed(tiny_model), FastPaths(dit_dtype="bf16"), "cpu")
    args = (["a low sine tone"], [1.0], [3], 4, "pingpong", 1.0)
    eager = generate(model, *args)
    compiled = generate(accelerate(model, FastPaths(dit_dtype="bf16", compile=True), "cpu"), *args)
    assert _snr(compiled, eager) > 40


def test_bad_fast_paths_are_user_errors(tiny_model):
    with pytest.raises(InvalidInputError, match="dit_dtype must be one of"):
        FastPaths(dit_dtype="int8")
    with pytest.raises(InvalidInputError, match="need decoder=fast"):
        FastPaths(decoder_dtype="bf16")
    with pytest.raises(InvalidInputError, match="PatchPretransform"):
        accelerate(tiny_model, FastPaths(decoder="fast"), "cpu")
    with pytest.raises(InvalidInputError, match="needs a CUDA device"):
        accelerate(tiny_model, FastPaths(cuda_graphs=True), "cpu")


def test_noise_drawn_ahead_replays_the_eager_sample(tiny_model):
    """What the CUDA graph relies on: a loop's noise drawn ahead, in order, from the item generators (as
    CapturedLoop does) gives the sample the generators give when drawn inside the loop."""
    model = _perturbed(tiny_model)
    cond = model.condition(["a", "b"], [1.0, 1.0])
    ts = logsnr_timesteps(4)

    def velocity(x, t):
        return model.velocity(x, t, cond)

    shape = (2, *model.latent_shape)
    x = torch.randn(shape)
    with torch.no_grad():
        eager = sample_pingpong(velocity, x, ts, [torch.Generator().manual_seed(s) for s in (1, 2)])
        generators = [torch.Generator().manual_seed(s) for s in (1, 2)]
        ahead = ReplayNoise([randn(shape, generators) for _ in range(len(ts) - 1)])
        replayed = sample_pingpong(velocity, x, ts, ahead)
    assert len(ahead) == 0
    torch.testing.assert_close(replayed, eager, atol=0, rtol=0)


def test_flop_count_includes_cpu_attention():
    """FlopCounterMode alone does not count the CPU attention kernel; arc.bench.flops registers it."""
    q, k = torch.randn(1, 4, 10, 16), torch.randn(1, 4, 7, 16)
    linear = torch.nn.Linear(16, 32)
    x = torch.randn(3, 16)
    flops = count_flops(lambda: (torch.nn.functional.scaled_dot_product_attention(q, k, k), linear(x)))
    assert flops == 2 * (2 * 1 * 4 * 10 * 7 * 16) + 2 * 3 * 16 * 32


def _arc_bench(*args: str) -> subprocess.CompletedProcess:
    """``arc-bench`` as a user runs it, in its own process (Hydra configures logging process-wide)."""
    return subprocess.run([sys.executable, "-m", "arc.cli.bench", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_bench_generate_smoke(tmp_path):
    """`arc-bench generate device=cpu model=tiny` (one repeat): every run and baseline reported, with stages,
    FLOPs and the tables; no timing assertions."""
    result = _arc_bench("generate", "device=cpu", "model=tiny", "repeats=1", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    names = [r["name"] for r in results["runs"]]
    # the tiny preset has no VAE: runs differing only in decoder switches are skipped
    assert names == ["fp32", "bf16-dit", "compiled", "sao-euler100-cfg7", "base-euler50-cfg7-fast"]
    for r in results["runs"]:
        assert set(r["stages"]) == {"conditioners", "dit_step", "sampling", "decoder", "end_to_end"}
        assert r["stages"]["sampling"]["flops"] == r["steps"] * r["stages"]["dit_step"]["flops"] > 0
    fp32, bf16 = results["runs"][:2]
    assert np.isinf(fp32["snr_audio_db"]) and bf16["snr_audio_db"] > 30
    assert results["runs"][3]["stages"]["dit_step"]["flops"] == 2 * fp32["stages"]["dit_step"]["flops"]  # CFG
    assert "| run | fast paths |" in result.stdout and "% of peak" in result.stdout
    assert (tmp_path / "stages.png").stat().st_size > 0


def test_bench_generate_bad_run_key_is_one_line(tmp_path):
    result = _arc_bench("generate", "model=tiny", "+runs.mine.dtype=bf16", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2
    assert "run 'mine': unknown keys ['dtype']" in result.stderr


@cuda
@pytest.mark.gpu
def test_cuda_graph_generation_matches_eager(tiny_model):
    """The 8-step loop replayed as a CUDA graph: the same sample as the eager loop from the same seeds (bf16 DiT,
    compiled), and a second call (a replay, new seeds) equal to eager too."""
    model = accelerate(_perturbed(tiny_model), FastPaths(dit_dtype="bf16", compile=True), "cuda")
    graphs = SamplingGraphs(model)
    for seeds in ([1, 2], [3, 4]):
        args = (["a low sine tone", "noise"], [1.0, 1.0], seeds, 8, "pingpong", 1.0)
        eager = generate(model, *args)
        graphed = generate(model, *args, graphs=graphs)
        assert _snr(graphed, eager) > 60
    assert len(graphs._loops) == 1


@cuda
@pytest.mark.gpu
def test_fast_decoder_bf16_on_cuda(small_vae):
    z = torch.randn(1, 8, 64, device="cuda")
    vae = small_vae.to("cuda")
    with torch.no_grad():
        reference = vae.decoder(z)
        fast = FastOobleckDecoder(vae.decoder, fused_snake=True, dtype=torch.bfloat16).to("cuda")
        fast.compile()
        audio = fast(z)
    assert _snr(audio, reference) > 35
    small_vae.to("cpu")


def test_arc_sample_fast_options(tmp_path):
    """--fast on the tiny preset: the bf16 DiT, the decoder switches dropped (no VAE), recorded per file; an
    explicit decoder switch on it is a user error."""
    from arc.cli.sample import sample

    common = ["--preset", "tiny", "--prompt", "a low sine tone", "--seconds", "1", "--steps", "2"]
    records = sample([*common, "--fast", "--out", str(tmp_path / "fast")])
    assert records[0]["fast_paths"]["dit_dtype"] == "bf16" and records[0]["fast_paths"]["decoder"] == "diffusers"
    with pytest.raises(InvalidInputError, match="PatchPretransform"):
        sample([*common, "--decoder", "fast", "--out", str(tmp_path / "bad")])
