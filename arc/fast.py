"""Fast paths for generation. Each is one switch of ``FastPaths``, all off by default (plain fp32 eager PyTorch, the
reference every fast path is checked against); ``arc-bench generate`` measures each one
(experiments/benchmarks/README.md) and ``arc-sample`` / ``arc-eval`` take them as options.

- ``dit_dtype``: the DiT's weights and activations in bf16 (AMX on Xeon CPUs, tensor cores on GPUs) or fp16. The
  timestep's Fourier features, the rotary angles and the samplers' arithmetic stay fp32.
- ``decoder``: ``fast`` swaps diffusers' Oobleck decoder for ``arc.models.fast_decoder`` (the same function:
  channels-last 2-D convolutions, weight norm folded); ``fused_snake`` makes its snake one compiled kernel;
  ``decoder_dtype`` runs its convolutions in bf16 / fp16 (the snake computes in fp32 inside).
- ``compile``: ``torch.compile`` of the DiT (static shapes) and of an Oobleck decoder, with inductor's weight
  freezing (constant-folded, prepacked weights: inference only; it is a process-wide inductor setting).
- ``cuda_graphs``: the whole sampling loop captured once as a CUDA graph per shape and replayed (``SamplingGraphs``).
- ``threads``: torch's intra-op threads (``torch.set_num_threads``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch._inductor.config

from arc.errors import InvalidInputError
from arc.flow import Generators, ReplayNoise, randn
from arc.models.conditioners import Conditioning
from arc.models.fast_decoder import FastOobleckDecoder
from arc.models.pretransforms import OobleckPretransform
from arc.models.wrapper import AudioDiffusionModel
from arc.sampling import SAMPLERS, guided_velocity

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
DECODERS = ("diffusers", "fast")
GRAPH_SAMPLERS = ("pingpong", "euler")  # dpmpp branches on a schedule value (a host sync: not capturable)


@dataclass(frozen=True)
class FastPaths:
    """How to run generation; see the module docstring for what each switch does."""

    dit_dtype: str = "fp32"
    decoder: str = "diffusers"
    fused_snake: bool = False
    decoder_dtype: str = "fp32"
    compile: bool = False
    cuda_graphs: bool = False
    threads: int | None = None

    def __post_init__(self):
        for key in ("dit_dtype", "decoder_dtype"):
            if getattr(self, key) not in DTYPES:
                raise InvalidInputError(f"{key} must be one of {sorted(DTYPES)}, got {getattr(self, key)!r}")
        if self.decoder not in DECODERS:
            raise InvalidInputError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder != "fast" and (self.fused_snake or self.decoder_dtype != "fp32"):
            raise InvalidInputError("fused_snake and a decoder_dtype other than fp32 need decoder=fast")
        if self.threads is not None and self.threads < 1:
            raise InvalidInputError(f"threads must be >= 1, got {self.threads}")

    def without_decoder(self) -> FastPaths:
        """These paths with the decoder switches off: for a model without an Oobleck VAE (the tiny patching)."""
        return replace(self, decoder="diffusers", fused_snake=False, decoder_dtype="fp32")

    def applicable(self, model: AudioDiffusionModel) -> FastPaths:
        """These paths, without the decoder switches for a model that has no Oobleck VAE to speed up."""
        return self if isinstance(model.pretransform, OobleckPretransform) else self.without_decoder()

    def describe(self) -> str:
        parts = [f"{self.dit_dtype} DiT"]
        if self.decoder == "fast":
            parts.append(f"fast {self.decoder_dtype} decoder" + (" (fused snake)" if self.fused_snake else ""))
        parts += [name for name, on in (("compiled", self.compile), ("CUDA graphs", self.cuda_graphs)) if on]
        return ", ".join(parts)


# `arc-sample --fast`: the paths that pay off at once on a CPU or a GPU (compilation and CUDA graphs cost a first
# call of a minute or more on a CPU, so they stay opt-in)
FAST = FastPaths(dit_dtype="bf16", decoder="fast", fused_snake=True, decoder_dtype="bf16")


def accelerate(model: AudioDiffusionModel, fast: FastPaths, device: str | torch.device) -> AudioDiffusionModel:
    """``model`` moved to ``device`` in eval mode with ``fast``'s paths applied, in place (the conditioners run as
    loaded). A decoder switch on a model without an Oobleck VAE, or CUDA graphs off CUDA, is an error."""
    device = torch.device(device)
    if fast.cuda_graphs and device.type != "cuda":
        raise InvalidInputError(f"cuda_graphs needs a CUDA device, got {device}")
    if fast.decoder != "diffusers" and not isinstance(model.pretransform, OobleckPretransform):
        raise InvalidInputError(
            f"decoder={fast.decoder} replaces the Oobleck VAE decoder; this model's pretransform is "
            f"{type(model.pretransform).__name__} (no weights to speed up): leave the decoder switches at defaults"
        )
    if fast.threads is not None:
        torch.set_num_threads(fast.threads)
    model.to(device).eval()
    dit = model.dit.to(DTYPES[fast.dit_dtype])
    dit.timestep_features.float()  # 2 pi t W reaches tens of radians: bf16 would move the phase
    if fast.compile:
        torch._inductor.config.freezing = True
        dit.compile(dynamic=False)
    if isinstance(model.pretransform, OobleckPretransform):
        vae = model.pretransform.vae
        if fast.decoder == "fast":
            vae.decoder = FastOobleckDecoder(vae.decoder, fast.fused_snake, DTYPES[fast.decoder_dtype]).to(device)
        if fast.compile:
            vae.decoder.compile()
    return model


def check_graph_sampler(sampler: str) -> None:
    if sampler not in GRAPH_SAMPLERS:
        raise InvalidInputError(f"cuda_graphs captures the {' and '.join(GRAPH_SAMPLERS)} samplers, not {sampler!r}")


class CapturedLoop:
    """One sampling loop (sampler, schedule, CFG scale, shapes) as a CUDA graph. Its inputs (conditioning, start
    latent and the noise of every step) live in static buffers: a call copies them in, replays, and returns a
    copy of the output. The noise is drawn outside the graph from the same generators in the same order as the
    eager sampler draws it, so a seed gives the same sample either way."""

    def __init__(self, model: AudioDiffusionModel, sampler: str, ts: torch.Tensor, cfg_scale: float,
                 cond: Conditioning, x: torch.Tensor):  # fmt: skip
        self.model, self.sampler, self.ts, self.cfg_scale = model, sampler, ts, cfg_scale
        self.cond = Conditioning(*(t.clone() for t in (cond.cross_attn_cond, cond.cross_attn_mask, cond.global_cond)))
        self.x = x.clone()
        self.noise = [torch.zeros_like(x) for _ in range(len(ts) - 1)]  # at most one draw per step
        stream = torch.cuda.Stream()  # warm-up on a side stream before capture, as torch.cuda.graphs requires
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            self.draws = self._count_draws()
            self._loop()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self._loop()

    def _count_draws(self) -> int:
        replay = ReplayNoise(self.noise)
        SAMPLERS[self.sampler](
            guided_velocity(self.model.velocity, self.cond, self.cfg_scale), self.x, self.ts, replay
        )
        return len(self.noise) - len(replay)

    def _loop(self) -> torch.Tensor:
        velocity = guided_velocity(self.model.velocity, self.cond, self.cfg_scale)  # its CFG batch: in the graph
        return SAMPLERS[self.sampler](velocity, self.x, self.ts, ReplayNoise(self.noise[: self.draws]))

    def __call__(self, cond: Conditioning, x: torch.Tensor, generators: Generators) -> torch.Tensor:
        for static, value in zip(
            (self.cond.cross_attn_cond, self.cond.cross_attn_mask, self.cond.global_cond, self.x),
            (cond.cross_attn_cond, cond.cross_attn_mask, cond.global_cond, x),
            strict=True,
        ):
            static.copy_(value)
        for buffer in self.noise[: self.draws]:
            buffer.copy_(randn(tuple(x.shape), generators, like=x))
        self.graph.replay()
        return self.out.clone()


class SamplingGraphs:
    """The captured loops of one model, keyed by what fixes a graph: sampler, schedule, CFG scale and shapes.
    The first call with a new key captures (a few eager passes); later ones replay."""

    def __init__(self, model: AudioDiffusionModel):
        self.model = model
        self._loops: dict[tuple, CapturedLoop] = {}

    def sample(self, sampler: str, ts: torch.Tensor, cfg_scale: float, cond: Conditioning, x: torch.Tensor,
               generators: Generators) -> torch.Tensor:  # fmt: skip
        check_graph_sampler(sampler)
        key = (sampler, tuple(ts.tolist()), cfg_scale, tuple(x.shape), tuple(cond.cross_attn_cond.shape))
        if key not in self._loops:
            self._loops[key] = CapturedLoop(self.model, sampler, ts, cfg_scale, cond, x)
        return self._loops[key](cond, x, generators)
