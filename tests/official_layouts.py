"""Write checkpoints in the official stable-audio-tools layout, with random values, for the loader tests.

The key names and shapes are spelled out here from stable-audio-tools' module tree (``DiffusionTransformer`` ->
``ContinuousTransformer`` -> ``TransformerBlock``; ``NumberEmbedder``; ``OobleckEncoder``/``OobleckDecoder`` as
``nn.Sequential``s with weight-normed convs), independently of arc's own conversion code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file


def sao_small_config(
    dim=64, depth=2, heads=1, cond=64, latent=8, channels=16, c_mults=(1, 2), strides=(2, 4), qk="ln"
):
    """The ``model_config.json`` of the Stable Audio Open Small release (``stabilityai/stable-audio-open-small``),
    with its widths scaled down for CPU tests (the arguments; the release's sizes are in the comments).

    Sources: [A] the authors' SAO Small base config (GitHub ZacharyNovack/flash-foley, saos_base_model_config.json);
    [R] the release's config as public code that reads it reports (objective rf_denoiser, sample_size 524288,
    io_channels 64, 44.1 kHz); [S] stable-audio-tools' factory (the keys it reads and their defaults).
    """
    return {
        "model_type": "diffusion_cond",  # [A][S]
        "sample_size": 64 * 8,  # release: 524288 [R][A] (256 latent frames; here 64 frames of a x8 VAE)
        "sample_rate": 44100,  # [R][A]
        "audio_channels": 2,  # [A]
        "model": {
            "pretransform": {
                "type": "autoencoder",  # [A]
                "iterate_batch": False,  # [A]
                "model_half": True,  # [A]
                "config": {
                    "encoder": {
                        "type": "oobleck",  # [A]
                        "requires_grad": False,  # [A]
                        "config": {
                            "in_channels": 2,
                            "channels": channels,  # release: 128 [A]
                            "c_mults": list(c_mults),  # release: [1, 2, 4, 8, 16] [A]
                            "strides": list(strides),  # release: [2, 4, 4, 8, 8] [A]
                            "latent_dim": 2 * latent,  # release: 128 [A]
                            "use_snake": True,  # [A]
                        },
                    },
                    "decoder": {
                        "type": "oobleck",
                        "config": {
                            "out_channels": 2,
                            "channels": channels,
                            "c_mults": list(c_mults),
                            "strides": list(strides),
                            "latent_dim": latent,  # release: 64 [A]
                            "use_snake": True,
                            "final_tanh": False,  # [A]
                        },
                    },
                    "bottleneck": {"type": "vae"},  # [A]
                    "latent_dim": latent,  # release: 64 [A]
                    "downsampling_ratio": 8,  # release: 2048 [A]
                    "io_channels": 2,  # [A]
                },
            },
            "conditioning": {
                "configs": [
                    # T5-base, 64 tokens [A]; the test's T5 loader stands in for t5-base
                    {"id": "prompt", "type": "t5", "config": {"t5_model_name": "t5-base", "max_length": 64}},
                    # seconds_total only, range [0, 256] [A] (no seconds_start, unlike SAO 1.0)
                    {"id": "seconds_total", "type": "number", "config": {"min_val": 0, "max_val": 256}},
                ],
                "cond_dim": cond,  # release: 768 [A]
            },
            "diffusion": {
                "cross_attention_cond_ids": ["prompt", "seconds_total"],  # [A]
                "global_cond_ids": ["seconds_total"],  # [A]
                "diffusion_objective": "rf_denoiser",  # the release is the post-trained few-step model [R]
                # [A]'s base model; whether the release keeps it is not verified (generation ignores it [S])
                "distribution_shift_options": {"min_length": 256, "max_length": 4096},
                "type": "dit",  # [A]
                "config": {
                    "io_channels": latent,  # release: 64 [R][A]
                    "embed_dim": dim,  # release: 1024 [A]
                    "depth": depth,  # release: 16 [A]
                    "num_heads": heads,  # release: 8 [A]
                    "cond_token_dim": cond,  # release: 768 [A]
                    "global_cond_dim": cond,  # release: 768 [A]
                    "transformer_type": "continuous_transformer",  # [A]
                    "attn_kwargs": {"qk_norm": qk},  # "ln" [A]
                },
            },
            "io_channels": latent,  # release: 64 [A]
        },
    }


def sat_dit_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    c = cfg["model"]["diffusion"]["config"]
    d, io, cond, glob = c["embed_dim"], c["io_channels"], c["cond_token_dim"], c["global_cond_dim"]
    head = d // c["num_heads"]
    shapes = {
        "timestep_features.weight": (128, 1),
        "to_timestep_embed.0.weight": (d, 256),
        "to_timestep_embed.0.bias": (d,),
        "to_timestep_embed.2.weight": (d, d),
        "to_timestep_embed.2.bias": (d,),
        "to_cond_embed.0.weight": (d, cond),
        "to_cond_embed.2.weight": (d, d),
        "to_global_embed.0.weight": (d, glob),
        "to_global_embed.2.weight": (d, d),
        "transformer.project_in.weight": (d, io),
        "transformer.project_out.weight": (io, d),
        "transformer.rotary_pos_emb.inv_freq": (max(head // 2, 32) // 2,),
        "preprocess_conv.weight": (io, io, 1),
        "postprocess_conv.weight": (io, io, 1),
    }
    for i in range(c["depth"]):
        p = f"transformer.layers.{i}."
        for norm in ("pre_norm", "cross_attend_norm", "ff_norm"):
            shapes[p + norm + ".gamma"] = (d,)
            shapes[p + norm + ".beta"] = (d,)
        shapes[p + "self_attn.to_qkv.weight"] = (3 * d, d)
        shapes[p + "self_attn.to_out.weight"] = (d, d)
        shapes[p + "cross_attn.to_q.weight"] = (d, d)
        shapes[p + "cross_attn.to_kv.weight"] = (2 * d, d)
        shapes[p + "cross_attn.to_out.weight"] = (d, d)
        if c.get("attn_kwargs", {}).get("qk_norm") == "ln":
            for attn in ("self_attn", "cross_attn"):
                for n in ("q_norm", "k_norm"):
                    shapes[f"{p}{attn}.{n}.weight"] = (head,)
                    shapes[f"{p}{attn}.{n}.bias"] = (head,)
        if c.get("global_cond_type") == "adaLN":  # stable-audio-tools' blocks get global_cond_dim = embed_dim
            shapes[p + "to_scale_shift_gate.1.weight"] = (6 * d, d)
        shapes[p + "ff.ff.0.proj.weight"] = (8 * d, d)
        shapes[p + "ff.ff.0.proj.bias"] = (8 * d,)
        shapes[p + "ff.ff.2.weight"] = (d, 4 * d)
        shapes[p + "ff.ff.2.bias"] = (d,)
    return {"model.model." + k: v for k, v in shapes.items()}


def _wn_conv(prefix: str, c_out: int, c_in: int, k: int, bias: bool = True, transposed: bool = False) -> dict:
    shapes = {
        prefix + "weight_g": (c_in, 1, 1) if transposed else (c_out, 1, 1),
        prefix + "weight_v": (c_in, c_out, k) if transposed else (c_out, c_in, k),
    }
    if bias:
        shapes[prefix + "bias"] = (c_out,)
    return shapes


def _snake(prefix: str, c: int) -> dict:
    return {prefix + "alpha": (c,), prefix + "beta": (c,)}


def _residual(prefix: str, c: int) -> dict:
    return {
        **_snake(prefix + "layers.0.", c),
        **_wn_conv(prefix + "layers.1.", c, c, 7),
        **_snake(prefix + "layers.2.", c),
        **_wn_conv(prefix + "layers.3.", c, c, 1),
    }


def sat_oobleck_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    ae = cfg["model"]["pretransform"]["config"]
    enc = ae["encoder"]["config"]
    ch, strides = enc["channels"], enc["strides"]
    mults = [1, *enc["c_mults"]]
    depth = len(strides)
    shapes = _wn_conv("encoder.layers.0.", ch, 2, 7)
    for i in range(depth):
        c_in, c_out, p = mults[i] * ch, mults[i + 1] * ch, f"encoder.layers.{i + 1}.layers."
        for j in range(3):
            shapes.update(_residual(f"{p}{j}.", c_in))
        shapes.update(_snake(f"{p}3.", c_in))
        shapes.update(_wn_conv(f"{p}4.", c_out, c_in, 2 * strides[i]))
    shapes.update(_snake(f"encoder.layers.{depth + 1}.", mults[-1] * ch))
    shapes.update(_wn_conv(f"encoder.layers.{depth + 2}.", 2 * ae["latent_dim"], mults[-1] * ch, 3))
    shapes.update(_wn_conv("decoder.layers.0.", mults[-1] * ch, ae["latent_dim"], 7))
    for n, i in enumerate(range(depth, 0, -1)):
        c_in, c_out, p = mults[i] * ch, mults[i - 1] * ch, f"decoder.layers.{n + 1}.layers."
        shapes.update(_snake(f"{p}0.", c_in))
        shapes.update(_wn_conv(f"{p}1.", c_out, c_in, 2 * strides[i - 1], transposed=True))
        for j in range(3):
            shapes.update(_residual(f"{p}{j + 2}.", c_out))
    shapes.update(_snake(f"decoder.layers.{depth + 1}.", ch))
    shapes.update(_wn_conv(f"decoder.layers.{depth + 2}.", 2, ch, 7, bias=False))
    return {"pretransform.model." + k: v for k, v in shapes.items()}


def sat_number_shapes(name: str, cond: int) -> dict[str, tuple[int, ...]]:
    p = f"conditioner.conditioners.{name}.embedder.embedding."
    return {p + "0.weights": (128,), p + "1.weight": (cond, 257), p + "1.bias": (cond,)}


def random_state_dict(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    out = {k: 0.1 * torch.randn(s, generator=gen) for k, s in shapes.items()}
    for k in out:  # the real file stores these exactly
        if k.endswith("rotary_pos_emb.inv_freq"):
            n = out[k].shape[0]
            out[k] = 1.0 / (10000 ** (torch.arange(0, 2 * n, 2).float() / (2 * n)))
        if k.endswith(".beta") and "norm" in k:
            out[k] = torch.zeros_like(out[k])
    return out


def write_sat_checkpoint(
    directory: Path, cfg: dict, seed: int = 0, drop: str | None = None, filename: str = "model.safetensors"
) -> dict:
    """``model_config.json`` + the weights as stable-audio-tools releases them (``model.safetensors``, or
    ``model.ckpt``: a ``torch.save``d ``{"state_dict": ...}``, the file the SAO Small release ships); returns the
    tensors."""
    cond = cfg["model"]["conditioning"]["cond_dim"]
    shapes = {**sat_dit_shapes(cfg), **sat_oobleck_shapes(cfg), **sat_number_shapes("seconds_total", cond)}
    state = random_state_dict(shapes, seed)
    if drop is not None:
        state.pop(drop)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model_config.json").write_text(json.dumps(cfg))
    if filename == "model.safetensors":
        save_file(state, str(directory / filename))
    elif filename == "model.ckpt":
        torch.save({"state_dict": state}, directory / filename)
    else:
        raise ValueError(f"releases ship model.safetensors or model.ckpt, not {filename}")
    return state


def write_hub_snapshot(cache: Path, repo_id: str, save: Callable[[Path], None]) -> Path:
    """A Hugging Face hub cache entry for ``repo_id`` (``models--<org>--<name>/snapshots/<commit>/`` plus
    ``refs/main``), filled by ``save(snapshot_dir)``: what ``from_pretrained(repo_id)`` finds offline."""
    commit = "0" * 40
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    save(snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def write_hub_t5(cache: Path, d_model: int, repo_id: str = "t5-base") -> Path:
    """A tiny T5 encoder (and the vocabulary-free ByT5 tokenizer) cached under the official id ``t5-base``, so the
    real loading path (``pretrained_t5``, hub cache, offline) runs without the 900 MB download."""
    from arc.models.conditioners import tiny_t5

    encoder, tokenizer = tiny_t5(d_model=d_model)

    def save(directory: Path) -> None:
        encoder.save_pretrained(directory)
        tokenizer.save_pretrained(directory)

    return write_hub_snapshot(cache, repo_id, save)


def write_keras_h5(path, seed=0, drop_last=False):
    """OpenL3 mel256 weights in the official files' layout (openl3 0.4.x, Keras 2 ``save_weights``): root
    attribute ``layer_names``; each layer group lists ``weight_names`` and holds ``<layer>/<name>:0`` datasets."""
    rng = np.random.default_rng(seed)
    layers = [("input_1", {}), ("melspectrogram", {}), ("batch_normalization", {"bn": 1})]
    widths, conv, bn = [1, 64, 128, 256, 512], 0, 1
    for block in range(4):
        for j, (c_in, c_out) in enumerate([(widths[block], widths[block + 1]), (widths[block + 1],) * 2]):
            last = block == 3 and j == 1
            layers.append(
                ("audio_embedding_layer" if last else f"conv2d_{conv}".replace("_0", ""), {"conv": (c_in, c_out)})
            )
            conv += 1
            if not last:
                layers.append((f"batch_normalization_{bn}", {"bn": c_out}))
                layers.append((f"activation_{bn}", {}))
                bn += 1
        if block < 3:
            layers.append((f"max_pooling2d_{block}", {}))
    if drop_last:
        layers = [item for item in layers if item[0] != "audio_embedding_layer"]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode() for name, _ in layers]
        for name, spec in layers:
            group = f.create_group(name)
            weights = {}
            if "conv" in spec:
                c_in, c_out = spec["conv"]
                weights = {"kernel": rng.normal(0, 0.05, (3, 3, c_in, c_out)), "bias": rng.normal(0, 0.05, c_out)}
            elif "bn" in spec:
                n = spec["bn"]
                weights = {"gamma": 1 + 0.1 * rng.normal(size=n), "beta": 0.1 * rng.normal(size=n),
                           "moving_mean": rng.normal(size=n), "moving_variance": 1 + rng.random(n)}  # fmt: skip
            group.attrs["weight_names"] = [f"{name}/{k}:0".encode() for k in weights]
            for k, v in weights.items():
                group.create_dataset(f"{name}/{k}:0", data=v.astype(np.float32))
    return layers
