"""Official Stable Audio checkpoints -> ``AudioDiffusionModel``.

Two official layouts are read, both strictly (every tensor used, none missing, every shape right):
- stable-audio-tools: ``model_config.json`` + ``model.safetensors`` (or ``model.ckpt``), DiT keys under
  ``model.model.``, conditioners under ``conditioner.conditioners.``, the VAE under ``pretransform.model.``.
  Stable Audio Open Small and 1.0 are published this way. The frozen T5 is not in the file: it comes from
  its own checkpoint (``t5-base`` in the hub cache).
- diffusers (Stable Audio Open 1.0): ``transformer/``, ``projection_model/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/`` sub-folders.

Files are read with safetensors or ``torch.load(weights_only=True)``: nothing arbitrary is unpickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from arc.errors import MissingFileError, NotACheckpointError, UserError
from arc.flow import TimeShift
from arc.hub import MissingWeightsError, hub_file
from arc.models.conditioners import Conditioners, NumberConditioner, T5Conditioner, pretrained_t5
from arc.models.dit import DiffusionTransformer
from arc.models.pretransforms import OobleckPretransform, oobleck_vae
from arc.models.transformer import rotary_frequencies
from arc.models.wrapper import AudioDiffusionModel

log = logging.getLogger(__name__)

StateDict = dict[str, torch.Tensor]
T5Loader = Callable[[str], tuple]


class CheckpointMismatchError(UserError, RuntimeError):
    """A checkpoint does not fit the model built from its config: names the missing, unexpected, mis-shaped keys."""


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, prefix: str = "") -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error that names every offending key.

    Keys are named as in arc's model (``prefix`` + the module's own key); the renames from each official layout
    are the tables in this file.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(
        f"{prefix}{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    )
    if missing or unexpected or mis_shaped:
        lines = [f"{what}: the checkpoint does not match the model built from its config (arc key names)"]
        for title, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                lines.append(f"  {len(keys)} {title} keys: " + ", ".join(prefix + k for k in keys[:20]))
        if mis_shaped:
            lines.append(f"  {len(mis_shaped)} keys of the wrong shape: " + "; ".join(mis_shaped[:20]))
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state_dict, strict=True)


def load_checkpoint_file(path: str | Path, expected: str) -> dict:
    """``torch.load(path, weights_only=True)`` on the CPU, or a ``NotACheckpointError`` that names the file, says
    what arc expected there (``expected``), and never suggests unsafe loading."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path} does not exist: expected {expected}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = (
            "it holds objects other than tensors and plain containers"
            if "weights_only" in str(err)
            else ("it is not a PyTorch checkpoint")
        )
        raise NotACheckpointError(f"{path} is not a readable checkpoint ({reason}): expected {expected}") from err
    except (RuntimeError, EOFError, OSError) as err:  # truncated zip, empty or non-zip file
        raise NotACheckpointError(
            f"{path} is not a readable checkpoint (truncated, corrupt or not a PyTorch file): expected {expected}"
        ) from err
    if not isinstance(blob, dict):
        raise NotACheckpointError(f"{path} holds a {type(blob).__name__}, not a checkpoint dict: expected {expected}")
    return blob


def read_state_dict(path: str | Path) -> StateDict:
    """Tensors of a ``.safetensors`` or ``.ckpt``/``.pt`` file (a Lightning ``state_dict`` entry is unwrapped)."""
    path = Path(path)
    expected = "a stable-audio-tools state dict (model.safetensors or model.ckpt)"
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except SafetensorError as err:
            raise NotACheckpointError(
                f"{path} is not a readable safetensors file ({err}): expected {expected}"
            ) from err
    blob = load_checkpoint_file(path, expected)
    return blob.get("state_dict", blob)


def split_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> StateDict:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


# --- stable-audio-tools layout ---------------------------------------------------------------------------------

_SAT_DIT_RENAMES = [
    (r"^transformer\.layers\.", "layers."),
    (r"^transformer\.project_(in|out)\.", r"project_\1."),
    (r"\.(pre_norm|cross_attend_norm|ff_norm)\.gamma$", r".\1.weight"),
    (r"\.(pre_norm|cross_attend_norm|ff_norm)\.beta$", r".\1.bias"),
    (r"\.ff\.ff\.0\.proj\.", ".ff.proj_in."),
    (r"\.ff\.ff\.2\.", ".ff.proj_out."),
]


def _rename(key: str, rules: list[tuple[str, str]]) -> str:
    for pattern, repl in rules:
        key = re.sub(pattern, repl, key)
    return key


def sat_dit_to_arc(state_dict: Mapping[str, torch.Tensor], rotary_dim: int) -> StateDict:
    """stable-audio-tools ``DiffusionTransformer`` keys -> arc's. The rotary ``inv_freq`` buffer is derived, not
    stored, in arc: it is checked against the config instead of loaded."""
    out = {}
    for key, value in state_dict.items():
        if key == "transformer.rotary_pos_emb.inv_freq":
            expected = rotary_frequencies(2, rotary_dim)[1, : rotary_dim // 2]
            if value.shape != expected.shape or not torch.allclose(value.float(), expected):
                raise CheckpointMismatchError(
                    f"{key}: rotary frequencies {tuple(value.shape)} do not match the config"
                )
            continue
        out[_rename(key, _SAT_DIT_RENAMES)] = value
    return out


def sat_number_to_arc(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """``embedder.embedding.0.weights`` / ``embedder.embedding.1.*`` -> ``weights`` / ``linear.*``."""
    return {
        _rename(k, [(r"^embedder\.embedding\.0\.", ""), (r"^embedder\.embedding\.1\.", "linear.")]): v
        for k, v in state_dict.items()
    }


def sat_oobleck_to_diffusers(state_dict: Mapping[str, torch.Tensor], depth: int) -> StateDict:
    """stable-audio-tools Oobleck encoder/decoder (``nn.Sequential`` indices) -> ``AutoencoderOobleck`` names.

    Encoder: 0 conv, 1..depth blocks (res units 0-2, snake 3, strided conv 4), depth+1 snake, depth+2 conv.
    Decoder: 0 conv, 1..depth blocks (snake 0, transposed conv 1, res units 2-4), depth+1 snake, depth+2 conv.
    Snake parameters are (C,) there and (1, C, 1) here.
    """
    residual = {"0": "snake1", "1": "conv1", "2": "snake2", "3": "conv2"}
    block_parts = {
        "encoder": {"0": "res_unit1", "1": "res_unit2", "2": "res_unit3", "3": "snake1", "4": "conv1"},
        "decoder": {"0": "snake1", "1": "conv_t1", "2": "res_unit1", "3": "res_unit2", "4": "res_unit3"},
    }
    out = {}
    for key, value in state_dict.items():
        match = re.fullmatch(r"(encoder|decoder)\.layers\.(\d+)\.(.+)", key)
        if match is None:
            raise CheckpointMismatchError(f"pretransform: unexpected key {key!r} in the Oobleck autoencoder")
        side, index, rest = match.group(1), int(match.group(2)), match.group(3)
        if index == 0:
            name = f"{side}.conv1.{rest}"
        elif index == depth + 1:
            name = f"{side}.snake1.{rest}"
        elif index == depth + 2:
            name = f"{side}.conv2.{rest}"
        else:
            part, _, tail = rest.removeprefix("layers.").partition(".")
            part = block_parts[side].get(part, f"?{part}")
            if part.startswith("res_unit"):
                sub, _, tail = tail.removeprefix("layers.").partition(".")
                part = f"{part}.{residual.get(sub, '?' + sub)}"
            name = f"{side}.block.{index - 1}.{part}.{tail}"
        out[name] = value[None, :, None] if name.endswith(("alpha", "beta")) and value.ndim == 1 else value
    return out


_DIT_KEYS = {
    "io_channels",
    "embed_dim",
    "depth",
    "num_heads",
    "cond_token_dim",
    "global_cond_dim",
    "project_cond_tokens",
    "project_global_cond",
    "transformer_type",
    "global_cond_type",
    "attn_kwargs",
}


def dit_from_sat_config(config: Mapping) -> DiffusionTransformer:
    unknown = set(config) - _DIT_KEYS
    if unknown:
        raise ValueError(f"unsupported DiT config keys {sorted(unknown)}; arc supports {sorted(_DIT_KEYS)}")
    if config.get("transformer_type", "continuous_transformer") != "continuous_transformer":
        raise ValueError(f"unsupported transformer_type {config['transformer_type']!r}")
    qk_norm = dict(config.get("attn_kwargs", {})).get("qk_norm", "none")
    if qk_norm not in ("ln", "none"):
        raise ValueError(f"unsupported qk_norm {qk_norm!r} (arc supports 'ln' and 'none')")
    return DiffusionTransformer(
        io_channels=config["io_channels"],
        embed_dim=config["embed_dim"],
        depth=config["depth"],
        num_heads=config["num_heads"],
        cond_token_dim=config["cond_token_dim"],
        global_cond_dim=config.get("global_cond_dim", 0),
        project_cond_tokens=config.get("project_cond_tokens", True),
        project_global_cond=config.get("project_global_cond", True),
        qk_norm=qk_norm == "ln",
        global_cond_type=config.get("global_cond_type", "prepend"),
    )


def conditioners_from_sat_config(config: Mapping, t5_loader: T5Loader) -> Conditioners:
    cond_dim = config["cond_dim"]
    text, numbers = None, {}
    for entry in config["configs"]:
        kind, cfg = entry["type"], entry["config"]
        if kind == "t5":
            text = T5Conditioner(t5_loader(cfg.get("t5_model_name", "t5-base")), cfg.get("max_length", 128), cond_dim)
        elif kind == "number":
            numbers[entry["id"]] = NumberConditioner(cond_dim, cfg.get("min_val", 0), cfg.get("max_val", 1))
        else:
            raise ValueError(f"unsupported conditioner type {kind!r} (id {entry['id']!r}); arc supports t5 and number")
    if text is None:
        raise ValueError("the conditioning config has no t5 text conditioner")
    return Conditioners(text, numbers)


def oobleck_from_sat_config(config: Mapping, sample_rate: int) -> OobleckPretransform:
    if config.get("type") != "autoencoder":
        raise ValueError(f"unsupported pretransform type {config.get('type')!r}; arc supports the Oobleck autoencoder")
    enc, dec = config["config"]["encoder"], config["config"]["decoder"]
    if enc["type"] != "oobleck" or dec["type"] != "oobleck":
        raise ValueError(f"unsupported autoencoder {enc['type']!r}/{dec['type']!r}; arc supports oobleck")
    return OobleckPretransform(
        oobleck_vae(
            channels=enc["config"]["channels"],
            c_mults=tuple(enc["config"]["c_mults"]),
            strides=tuple(enc["config"]["strides"]),
            latent_dim=config["config"]["latent_dim"],
            audio_channels=config["config"].get("io_channels", 2),
            sample_rate=sample_rate,
        )
    )


def time_shift_from_sat_config(diffusion: Mapping) -> TimeShift | None:
    """``distribution_shift_options`` of a diffusion config (stable-audio-tools' ``DistributionShift`` arguments)."""
    if diffusion.get("sampling_distribution_shift_options") is not None:
        log.warning(
            "the config's sampling_distribution_shift_options are not applied: public stable-audio-tools does "
            "not read them, and its sample_rf uses the plain logSNR schedule (as arc does)"
        )
    options = diffusion.get("distribution_shift_options")
    if options is None:
        return None
    options = dict(options)
    if options.pop("use_sine", False):
        raise ValueError("distribution_shift_options.use_sine is not supported by arc")
    unknown = set(options) - {f.name for f in dataclasses.fields(TimeShift)}
    if unknown:
        raise ValueError(f"unsupported distribution_shift_options {sorted(unknown)}")
    return TimeShift(**options)


def model_from_sat_config(config: Mapping, t5_loader: T5Loader = pretrained_t5) -> AudioDiffusionModel:
    """Build the model a stable-audio-tools ``model_config.json`` describes (``diffusion_cond`` with a DiT).

    The objective is the config's ``diffusion_objective`` (``rectified_flow``, ``rf_denoiser`` or ``v``, which
    stable-audio-tools assumes when the key is absent); it decides how arc samples the model by default."""
    if config.get("model_type") != "diffusion_cond" or config["model"]["diffusion"].get("type") != "dit":
        raise ValueError("arc loads conditional DiT models (model_type 'diffusion_cond', diffusion type 'dit')")
    model_cfg = config["model"]
    pretransform = oobleck_from_sat_config(model_cfg["pretransform"], config["sample_rate"])
    return AudioDiffusionModel(
        conditioners=conditioners_from_sat_config(model_cfg["conditioning"], t5_loader),
        dit=dit_from_sat_config(model_cfg["diffusion"]["config"]),
        pretransform=pretransform,
        sample_size=config["sample_size"],
        diffusion_objective=model_cfg["diffusion"].get("diffusion_objective", "v"),
        time_shift=time_shift_from_sat_config(model_cfg["diffusion"]),
    )


def load_sat_state_dict(model: AudioDiffusionModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a stable-audio-tools state dict into ``model``, strictly, component by component."""
    known = ("model.model.", "conditioner.conditioners.", "pretransform.model.")
    stray = sorted(k for k in state_dict if not k.startswith(known))
    if stray:
        raise CheckpointMismatchError(f"{len(stray)} unexpected keys outside {known}: {', '.join(stray[:20])}")
    dit = split_prefix(state_dict, "model.model.")
    load_strict(model.dit, sat_dit_to_arc(dit, model.dit.rotary_dim), "DiT", prefix="dit.")
    conditioners = split_prefix(state_dict, "conditioner.conditioners.")
    text_keys = {k: v for k, v in conditioners.items() if k.startswith("prompt.")}
    load_strict(
        model.conditioners.text.proj_out,
        split_prefix(text_keys, "prompt.proj_out."),
        "text projection",
        prefix="conditioner.conditioners.prompt.proj_out.",
    )
    for name, number in model.conditioners.numbers.items():
        load_strict(
            number,
            sat_number_to_arc(split_prefix(conditioners, f"{name}.")),
            f"conditioner {name}",
            prefix=f"conditioner.conditioners.{name}.",
        )
    extra = sorted(k for k in conditioners if k.split(".")[0] not in {"prompt", *model.conditioners.numbers})
    if extra:
        raise CheckpointMismatchError(f"unexpected conditioner keys: {', '.join(extra[:20])}")
    load_sat_pretransform(model, state_dict)


def load_sat_pretransform(model: AudioDiffusionModel, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load the Oobleck VAE (``pretransform.model.*``) of a stable-audio-tools state dict, strictly."""
    if not isinstance(model.pretransform, OobleckPretransform):
        raise CheckpointMismatchError(
            f"the checkpoint holds an Oobleck VAE but the model's pretransform is {type(model.pretransform).__name__}"
        )
    vae = sat_oobleck_to_diffusers(
        split_prefix(state_dict, "pretransform.model."), len(model.pretransform.vae.config.downsampling_ratios)
    )
    load_strict(model.pretransform.vae, vae, "pretransform (Oobleck VAE)", prefix="pretransform.vae.")


def sat_weights(repo_or_dir: str) -> StateDict:
    """The state dict of a stable-audio-tools release: ``model.safetensors``, or ``model.ckpt`` if that is absent."""
    try:
        path = hub_file(repo_or_dir, "model.safetensors")
    except MissingWeightsError:
        try:
            path = hub_file(repo_or_dir, "model.ckpt")
        except MissingWeightsError as err:
            raise MissingWeightsError(f"{repo_or_dir}: neither model.safetensors nor model.ckpt ({err})") from err
    return read_state_dict(path)


def load_stable_audio(repo_or_dir: str, t5_loader: T5Loader = pretrained_t5) -> AudioDiffusionModel:
    """An official stable-audio-tools release (e.g. ``stabilityai/stable-audio-open-small``): a local directory
    or hub id holding ``model_config.json`` and ``model.safetensors`` (``model.ckpt`` is used if that is absent)."""
    config = json.loads(hub_file(repo_or_dir, "model_config.json").read_text())
    model = model_from_sat_config(config, t5_loader)
    load_sat_state_dict(model, sat_weights(repo_or_dir))
    return model.eval()


# --- diffusers layout (Stable Audio Open 1.0) ------------------------------------------------------------------

_DIFFUSERS_DIT_RENAMES = [
    (r"^time_proj\.weight$", "timestep_features.weight"),
    (r"^timestep_proj\.", "to_timestep_embed."),
    (r"^global_proj\.", "to_global_embed."),
    (r"^cross_attention_proj\.", "to_cond_embed."),
    (r"^proj_(in|out)\.", r"project_\1."),
    (r"^transformer_blocks\.", "layers."),
    (r"\.norm1\.", ".pre_norm."),
    (r"\.norm2\.", ".cross_attend_norm."),
    (r"\.norm3\.", ".ff_norm."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_out\.0\.", ".to_out."),
    (r"\.ff\.net\.0\.proj\.", ".ff.proj_in."),
    (r"\.ff\.net\.2\.", ".ff.proj_out."),
]


def diffusers_dit_to_arc(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """``StableAudioDiTModel`` keys -> arc's: renames, the timestep Fourier weight gains its input axis, and the
    separate q/k/v (self-attention) and k/v (cross-attention) projections are fused, as in stable-audio-tools."""
    renamed = {_rename(k, _DIFFUSERS_DIT_RENAMES): v for k, v in state_dict.items()}
    out = {}
    for key, value in renamed.items():
        if key == "timestep_features.weight":
            out[key] = value[:, None]
        elif key.endswith((".self_attn.to_k.weight", ".self_attn.to_v.weight", ".cross_attn.to_v.weight")):
            continue  # fused below with its to_q / to_k
        elif key.endswith(".self_attn.to_q.weight"):
            stem = key.removesuffix("to_q.weight")
            out[stem + "to_qkv.weight"] = torch.cat(
                [value, renamed[stem + "to_k.weight"], renamed[stem + "to_v.weight"]]
            )
        elif key.endswith(".cross_attn.to_k.weight"):
            stem = key.removesuffix("to_k.weight")
            out[stem + "to_kv.weight"] = torch.cat([value, renamed[stem + "to_v.weight"]])
        else:
            out[key] = value
    return out


def dit_from_diffusers_config(config: Mapping) -> DiffusionTransformer:
    embed_dim = config["num_attention_heads"] * config["attention_head_dim"]
    if config["cross_attention_dim"] not in (embed_dim, config["cross_attention_input_dim"]):
        raise ValueError(
            f"cross_attention_dim {config['cross_attention_dim']} must equal the width ({embed_dim}) or the "
            f"conditioning width ({config['cross_attention_input_dim']})"
        )
    expected_kv = config["cross_attention_dim"] // config["attention_head_dim"]
    if config.get("num_key_value_attention_heads", expected_kv) != expected_kv:
        raise ValueError(
            f"num_key_value_attention_heads must be cross_attention_dim // attention_head_dim = {expected_kv}"
        )
    return DiffusionTransformer(
        io_channels=config["in_channels"],
        embed_dim=embed_dim,
        depth=config["num_layers"],
        num_heads=config["num_attention_heads"],
        cond_token_dim=config["cross_attention_input_dim"],
        global_cond_dim=config["global_states_input_dim"],
        project_cond_tokens=config["cross_attention_dim"] == embed_dim,
        qk_norm=False,
        timestep_features_dim=config.get("time_proj_dim", 256),
    )


def diffusers_projection_to_arc(state_dict: Mapping[str, torch.Tensor]) -> dict[str, StateDict]:
    """``StableAudioProjectionModel`` -> {"text_proj", "seconds_start", "seconds_total"} state dicts."""
    parts = {
        "text_proj": "text_projection.",
        "seconds_start": "start_number_conditioner.",
        "seconds_total": "end_number_conditioner.",
    }
    stray = sorted(k for k in state_dict if not k.startswith(tuple(parts.values())))
    if stray:
        raise CheckpointMismatchError(f"projection_model: unexpected keys {', '.join(stray)}")
    renames = [(r"^time_positional_embedding\.0\.", ""), (r"^time_positional_embedding\.1\.", "linear.")]
    return {
        name: {_rename(k, renames): v for k, v in split_prefix(state_dict, prefix).items()}
        for name, prefix in parts.items()
    }


def load_stable_audio_diffusers(repo_or_dir: str) -> AudioDiffusionModel:
    """Stable Audio Open 1.0 in the diffusers layout (a local directory or a hub id such as
    ``stabilityai/stable-audio-open-1.0``), every component loaded strictly."""
    from diffusers import AutoencoderOobleck
    from transformers import AutoTokenizer, T5EncoderModel

    from arc.hub import pretrained_or_explain

    def component(sub: str) -> tuple[dict, StateDict]:
        config = json.loads(hub_file(repo_or_dir, f"{sub}/config.json").read_text())
        return config, read_state_dict(hub_file(repo_or_dir, f"{sub}/diffusion_pytorch_model.safetensors"))

    dit_config, dit_weights = component("transformer")
    dit = dit_from_diffusers_config(dit_config)
    load_strict(dit, diffusers_dit_to_arc(dit_weights), "DiT (diffusers transformer/)", prefix="dit.")

    vae_config, vae_weights = component("vae")
    vae = AutoencoderOobleck.from_config(vae_config)
    load_strict(vae, vae_weights, "VAE (diffusers vae/)")

    proj_config, proj_weights = component("projection_model")
    proj = diffusers_projection_to_arc(proj_weights)
    encoder = pretrained_or_explain(
        lambda name: T5EncoderModel.from_pretrained(name, subfolder="text_encoder"), repo_or_dir
    )
    tokenizer = pretrained_or_explain(
        lambda name: AutoTokenizer.from_pretrained(name, subfolder="tokenizer"), repo_or_dir
    )
    cond_dim = proj_config["conditioning_dim"]
    text = T5Conditioner((encoder, tokenizer), max_length=tokenizer.model_max_length, output_dim=cond_dim)
    load_strict(text.proj_out, split_prefix(proj["text_proj"], ""), "text projection")
    numbers = {}
    for name in ("seconds_start", "seconds_total"):
        numbers[name] = NumberConditioner(cond_dim, proj_config["min_value"], proj_config["max_value"])
        load_strict(numbers[name], proj[name], f"conditioner {name}")
    pretransform = OobleckPretransform(vae)
    model = AudioDiffusionModel(
        conditioners=Conditioners(text, numbers),
        dit=dit,
        pretransform=pretransform,
        sample_size=dit_config["sample_size"] * pretransform.downsampling_ratio,
        diffusion_objective="v",
    )
    return model.eval()
