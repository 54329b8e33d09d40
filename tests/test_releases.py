"""Official checkpoint layouts: written here with random values in the official key layout, then loaded."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from diffusers import AutoencoderOobleck, StableAudioDiTModel
from diffusers.models.embeddings import get_1d_rotary_pos_embed
from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
from safetensors.torch import save_file

from arc.errors import NotACheckpointError
from arc.flow import TimeShift
from arc.generate import generate
from arc.hub import MissingWeightsError
from arc.models.conditioners import tiny_t5
from arc.models.pretransforms import OobleckPretransform
from arc.releases import (
    CheckpointMismatchError,
    diffusers_dit_to_arc,
    dit_from_diffusers_config,
    load_stable_audio,
    load_stable_audio_diffusers,
    model_from_sat_config,
)
from arc.sampling import SamplingDefaults, sampling_defaults
from arc.training.checkpoints import load_pretrained_vae, load_pretrained_weights
from tests.official_layouts import sao_small_config, write_hub_t5, write_sat_checkpoint


def _t5_loader(width):
    return lambda name: tiny_t5(d_model=width)


def _randomize(module, seed=0, std=0.1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(std * torch.randn(p.shape, generator=gen))
    return module


def _tiny_vae(seed: int = 0) -> AutoencoderOobleck:
    """diffusers' Oobleck VAE at tiny widths (x8 downsampling, 8 latent channels), random weights."""
    vae = AutoencoderOobleck(
        encoder_hidden_size=16,
        downsampling_ratios=[2, 4],
        channel_multiples=[1, 2],
        decoder_channels=16,
        decoder_input_channels=8,
        audio_channels=2,
    )
    return _randomize(vae, seed, 0.05)


# --- diffusers parity (Stable Audio Open 1.0 architecture, tiny widths) ----------------------------------------

SAO10_TINY = dict(
    sample_size=16,
    in_channels=8,
    num_layers=2,
    attention_head_dim=64,
    num_attention_heads=2,
    num_key_value_attention_heads=1,
    out_channels=8,
    cross_attention_dim=64,
    time_proj_dim=256,
    global_states_input_dim=96,
    cross_attention_input_dim=64,
)


def test_dit_matches_diffusers_stable_audio_dit():
    ref = _randomize(StableAudioDiTModel(**SAO10_TINY)).eval()
    dit = dit_from_diffusers_config(dict(ref.config))
    dit.load_state_dict(diffusers_dit_to_arc(ref.state_dict()), strict=True)
    x, t = torch.randn(2, 8, 16), torch.tensor([0.3, 0.9])
    cond, glob = torch.randn(2, 7, 64), torch.randn(2, 96)
    rotary = get_1d_rotary_pos_embed(32, 16 + 1, use_real=True, repeat_interleave_real=False)
    with torch.no_grad():
        expected = ref(
            x,
            t,
            encoder_hidden_states=cond,
            global_hidden_states=glob[:, None],
            rotary_embedding=rotary,
            return_dict=False,
        )[0]
        ours = dit(x, t, cond, glob)
    assert expected.abs().mean() > 1e-2  # a real signal, not two zero outputs
    assert torch.allclose(ours, expected, atol=1e-5), (ours - expected).abs().max()


def test_oobleck_pretransform_matches_autoencoder_oobleck():
    vae = _tiny_vae()
    pt = OobleckPretransform(vae, sample_posterior=False)
    audio = torch.randn(1, 2, 64)
    with torch.no_grad():
        assert torch.allclose(pt.encode(audio), vae.encode(audio).latent_dist.mean, atol=1e-5)
        latents = torch.randn(1, 8, 8)
        assert torch.allclose(pt.decode(latents), vae.decode(latents).sample, atol=1e-5)
    assert pt.downsampling_ratio == 8 and pt.latent_channels == 8


def test_oobleck_posterior_sample_is_seeded():
    vae = _tiny_vae()
    pt, audio = OobleckPretransform(vae), torch.randn(1, 2, 64)
    with torch.no_grad():
        a = pt.encode(audio, torch.Generator().manual_seed(1))
        b = pt.encode(audio, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.allclose(a, vae.encode(audio).latent_dist.mean)


def _write_diffusers_layout(root, seed=0):
    dit = _randomize(StableAudioDiTModel(**{**SAO10_TINY, "global_states_input_dim": 128}), seed)
    vae = _tiny_vae(seed)
    proj = _randomize(StableAudioProjectionModel(text_encoder_dim=64, conditioning_dim=64, min_value=0, max_value=512))
    encoder, tokenizer = tiny_t5(d_model=64)
    tokenizer.model_max_length = 12
    dit.save_pretrained(root / "transformer")
    vae.save_pretrained(root / "vae")
    proj.save_pretrained(root / "projection_model")
    encoder.save_pretrained(root / "text_encoder")
    tokenizer.save_pretrained(root / "tokenizer")
    return dit, proj


def test_diffusers_layout_loads_strictly_and_matches(tmp_path):
    dit, proj = _write_diffusers_layout(tmp_path)
    model = load_stable_audio_diffusers(str(tmp_path))
    assert model.diffusion_objective == "v" and model.sample_size == 16 * 8
    assert model.conditioners.text.max_length == 12
    seconds = torch.tensor([3.0, 40.0])
    with torch.no_grad():
        ref = proj(start_seconds=seconds, end_seconds=seconds)
        assert torch.allclose(
            model.conditioners.numbers["seconds_total"](seconds), ref.seconds_end_hidden_states[:, 0]
        )
        cond = model.conditioners(
            ["rain on a tin roof", "a dog"], {"seconds_start": seconds, "seconds_total": seconds}
        )
        x, t = torch.randn(2, 8, 16), torch.tensor([0.5, 0.5])
        rotary = get_1d_rotary_pos_embed(32, 17, use_real=True, repeat_interleave_real=False)
        expected = dit(
            x,
            t,
            encoder_hidden_states=cond.cross_attn_cond,
            global_hidden_states=cond.global_cond[:, None],
            rotary_embedding=rotary,
            return_dict=False,
        )[0]
        assert torch.allclose(model.velocity(x, t, cond), expected, atol=1e-5)


def test_diffusers_layout_with_a_missing_component_names_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match="transformer/config.json"):
        load_stable_audio_diffusers(str(tmp_path))


# --- stable-audio-tools layout (Stable Audio Open Small shape) --------------------------------------------------


def test_sat_layout_loads_strictly(tmp_path):
    cfg = sao_small_config()
    state = write_sat_checkpoint(tmp_path, cfg)
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert model.sample_size == 512 and model.sample_rate == 44100 and model.dit.depth == 2
    # spot-check that tensors landed on the matching arc parameters
    p = "model.model.transformer.layers.1."
    assert torch.equal(model.dit.layers[1].self_attn.to_qkv.weight, state[p + "self_attn.to_qkv.weight"])
    assert torch.equal(model.dit.layers[1].ff.proj_in.bias, state[p + "ff.ff.0.proj.bias"])
    assert torch.equal(model.dit.layers[1].cross_attend_norm.weight, state[p + "cross_attend_norm.gamma"])
    number = model.conditioners.numbers["seconds_total"]
    assert torch.equal(number.weights, state["conditioner.conditioners.seconds_total.embedder.embedding.0.weights"])
    vae = model.pretransform.vae
    res = "pretransform.model.decoder.layers.1.layers.3.layers.1.weight_v"  # decoder block 0, 2nd residual, conv1
    assert torch.equal(vae.decoder.block[0].res_unit2.conv1.weight_v, state[res])
    snake = state["pretransform.model.encoder.layers.2.layers.3.alpha"]  # encoder block 1, its snake
    assert torch.equal(vae.encoder.block[1].snake1.alpha, snake[None, :, None])
    audio = torch.zeros(1, 2, model.sample_size)
    with torch.no_grad():
        out = model.velocity(
            torch.randn(1, *model.latent_shape), torch.tensor([0.5]), model.condition(["rain"], [0.01])
        )
        assert model.pretransform.encode(audio).shape == (1, 8, 64)
    assert torch.isfinite(out).all() and out.abs().mean() > 0


def test_sat_layout_with_a_missing_key_names_it(tmp_path):
    write_sat_checkpoint(tmp_path, sao_small_config(), drop="model.model.transformer.layers.0.self_attn.to_out.weight")
    with pytest.raises(CheckpointMismatchError, match=r"1 missing keys: dit\.layers\.0\.self_attn\.to_out\.weight"):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))


def test_sat_checkpoint_of_the_wrong_size_is_a_clear_error(tmp_path):
    write_sat_checkpoint(tmp_path, sao_small_config(dim=64))
    cfg = sao_small_config(dim=128, heads=2)  # the config says 128 wide, the weights are 64 wide (same head width)
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointMismatchError,
        match=r"40 keys of the wrong shape: dit.layers.0.cross_attend_norm.bias: checkpoint \(64,\) vs model \(128,\)",
    ):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))


def test_sat_unknown_keys_are_reported(tmp_path):
    state = write_sat_checkpoint(tmp_path, sao_small_config())
    state["model.model.transformer.layers.0.self_attn.extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="1 unexpected keys: dit.layers.0.self_attn.extra.weight"):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))


def test_sat_ckpt_file_is_read_without_unpickling_objects(tmp_path):
    state = write_sat_checkpoint(tmp_path, sao_small_config())
    (tmp_path / "model.safetensors").unlink()
    torch.save({"state_dict": state}, tmp_path / "model.ckpt")
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert torch.equal(model.dit.project_in.weight, state["model.model.transformer.project_in.weight"])


def test_unsupported_config_is_named(tmp_path):
    cfg = sao_small_config()
    cfg["model"]["diffusion"]["config"]["adaln_whatever"] = True
    write_sat_checkpoint(tmp_path, cfg)
    with pytest.raises(ValueError, match="unsupported DiT config keys \\['adaln_whatever'\\]"):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))


def test_an_adaln_config_loads_its_modulation_weights(tmp_path):
    cfg = sao_small_config()
    cfg["model"]["diffusion"]["config"]["global_cond_type"] = "adaLN"  # stable-audio-tools' other global mode
    state = write_sat_checkpoint(tmp_path, cfg)
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert model.dit.global_cond_type == "adaLN"
    gate = state["model.model.transformer.layers.1.to_scale_shift_gate.1.weight"]
    assert torch.equal(model.dit.layers[1].to_scale_shift_gate[1].weight, gate)


def test_missing_local_files_explain_where_to_put_them(tmp_path):
    with pytest.raises(MissingWeightsError, match="must hold model_config.json"):
        load_stable_audio(str(tmp_path))


def test_pretrained_vae_alone_loads_into_a_fresh_model(tmp_path):
    cfg = sao_small_config()
    state = write_sat_checkpoint(tmp_path, cfg)
    model = model_from_sat_config(cfg, _t5_loader(64))
    dit_before = {k: v.clone() for k, v in model.dit.state_dict().items()}
    assert load_pretrained_vae(model, str(tmp_path)) is model
    res = "pretransform.model.decoder.layers.1.layers.3.layers.1.weight_v"
    assert torch.equal(model.pretransform.vae.decoder.block[0].res_unit2.conv1.weight_v, state[res])
    assert all(torch.equal(v, model.dit.state_dict()[k]) for k, v in dit_before.items())  # the DiT is untouched


def test_pretrained_weights_from_a_sat_release_load_the_whole_model(tmp_path):
    cfg = sao_small_config()
    state = write_sat_checkpoint(tmp_path, cfg)
    model = load_pretrained_weights(model_from_sat_config(cfg, _t5_loader(64)), str(tmp_path))
    assert torch.equal(
        model.dit.layers[1].self_attn.to_qkv.weight, state["model.model.transformer.layers.1.self_attn.to_qkv.weight"]
    )
    with pytest.raises(ValueError, match="pretrained="):
        load_pretrained_weights(model, None)


# --- the Stable Audio Open Small release as published (rf_denoiser, model.ckpt) -----------------------------------


def test_sao_small_release_loads_from_model_ckpt_and_samples_with_its_defaults(tmp_path):
    cfg = sao_small_config()
    state = write_sat_checkpoint(tmp_path, cfg, filename="model.ckpt")
    assert not (tmp_path / "model.safetensors").exists()
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert torch.equal(model.dit.project_in.weight, state["model.model.transformer.project_in.weight"])
    assert model.diffusion_objective == "rf_denoiser"
    assert model.time_shift == TimeShift(min_length=256, max_length=4096)
    assert sampling_defaults(model.diffusion_objective) == SamplingDefaults("pingpong", 8, 1.0)
    args = (model, ["rain on a tin roof"], [0.01], [3])
    default = generate(*args)
    assert torch.equal(default, generate(*args, steps=8, sampler="pingpong", cfg_scale=1.0))
    assert not torch.allclose(default, generate(*args, steps=8, sampler="euler", cfg_scale=1.0))


def test_a_base_rectified_flow_config_defaults_to_euler_with_cfg(tmp_path):
    cfg = sao_small_config()
    cfg["model"]["diffusion"]["diffusion_objective"] = "rectified_flow"  # the authors' base model [A]
    write_sat_checkpoint(tmp_path, cfg)
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert sampling_defaults(model.diffusion_objective) == SamplingDefaults("euler", 50, 7.0)


def test_arc_sample_runs_the_release_directory_with_the_real_t5_loading_path(tmp_path):
    """`arc-sample --model <dir>` through the installed entry point: t5-base comes from the (offline) hub cache."""
    write_sat_checkpoint(tmp_path / "release", sao_small_config(), filename="model.ckpt")
    write_hub_t5(tmp_path / "hub", d_model=64)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    script = Path(sys.executable).parent / "arc-sample"
    cmd = [str(script), "--model", str(tmp_path / "release"), "--prompt", "rain", "--out", str(tmp_path / "out")]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "samples.jsonl").read_text().splitlines()]
    assert (record["sampler"], record["steps"], record["cfg_scale"], record["schedule"]) == (
        "pingpong",
        8,
        1.0,
        "logsnr",
    )
    audio, rate = sf.read(record["path"])
    assert rate == 44100 and audio.shape == (512, 2)


def test_time_shift_options_of_a_config_are_read_and_applied_by_pretraining_only(tmp_path):
    cfg = sao_small_config()
    cfg["model"]["diffusion"]["distribution_shift_options"] = {"base_shift": 0.4, "max_shift": 1.0, "min_length": 8}
    write_sat_checkpoint(tmp_path, cfg)
    model = load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert model.time_shift == TimeShift(base_shift=0.4, max_shift=1.0, min_length=8, max_length=4096)
    cfg["model"]["diffusion"]["distribution_shift_options"] = {"min_length": 8, "use_sine": True}
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="use_sine"):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))


def test_a_checkpoint_holding_objects_is_refused_without_suggesting_unsafe_loading(tmp_path):
    state = write_sat_checkpoint(tmp_path, sao_small_config(), filename="model.ckpt")
    torch.save({"state_dict": state, "hparams": argparse.Namespace(lr=1)}, tmp_path / "model.ckpt")
    with pytest.raises(NotACheckpointError, match="model.ckpt is not a readable checkpoint") as err:
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
    assert "weights_only=False" not in str(err.value) and "objects other than tensors" in str(err.value)
    (tmp_path / "model.ckpt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(NotACheckpointError, match="truncated, corrupt or not a PyTorch file"):
        load_stable_audio(str(tmp_path), t5_loader=_t5_loader(64))
