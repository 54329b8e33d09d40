import logging

import pytest
import torch

from arc.config import build_model
from arc.models import DiffusionTransformer, MdctPretransform, PatchPretransform
from arc.models.transformer import rotary_frequencies


def _small_dit(**overrides):
    args = dict(io_channels=8, embed_dim=64, depth=3, num_heads=2, cond_token_dim=16, global_cond_dim=16)
    dit = DiffusionTransformer(**{**args, **overrides})
    for p in dit.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return dit


def _inputs(batch=2, frames=10):
    return torch.randn(batch, 8, frames), torch.rand(batch), torch.randn(batch, 5, 16), torch.randn(batch, 16)


def test_dit_output_shape():
    x, t, c, g = _inputs()
    assert _small_dit()(x, t, c, g).shape == x.shape


@pytest.mark.parametrize("exit_layer", [0, 1, 2])
def test_exit_layer_returns_that_blocks_hidden_state(exit_layer):
    dit = _small_dit()
    x, t, c, g = _inputs()
    captured = {}
    dit.layers[exit_layer].register_forward_hook(lambda m, args, out: captured.setdefault("h", out))
    dit(x, t, c, g)
    hidden = dit(x, t, c, g, exit_layer=exit_layer)
    assert hidden.shape == (2, 10 + 1, 64)  # the prepended global token is included
    assert torch.equal(hidden, captured["h"])


def test_exit_layer_out_of_range():
    x, t, c, g = _inputs()
    with pytest.raises(ValueError, match="exit_layer must be in"):
        _small_dit()(x, t, c, g, exit_layer=3)


def test_dit_rejects_wrong_channels():
    _, t, c, g = _inputs()
    with pytest.raises(ValueError, match="expected 8 latent channels"):
        _small_dit()(torch.randn(2, 7, 10), t, c, g)


def test_dit_residual_branches_start_at_zero():
    dit = DiffusionTransformer(
        io_channels=8, embed_dim=64, depth=2, num_heads=2, cond_token_dim=16, global_cond_dim=16
    )
    x, t, c, g = _inputs()
    # residual branches and the 1x1 convs start at zero: every block is the identity at initialisation
    expected = dit.project_out(dit.project_in(x.transpose(1, 2))).transpose(1, 2)
    assert torch.allclose(dit(x, t, c, g), expected, atol=1e-6)


def test_qk_norm_changes_the_function():
    torch.manual_seed(1)
    a = _small_dit(qk_norm=True)
    b = _small_dit(qk_norm=False)
    b.load_state_dict({k: v for k, v in a.state_dict().items() if "q_norm" not in k and "k_norm" not in k})
    x, t, c, g = _inputs()
    assert not torch.allclose(a(x, t, c, g), b(x, t, c, g))


def test_adaln_blocks_modulate_and_gate_each_branch():
    """An adaLN DiT runs T tokens (no prepended token); each block is stable-audio-tools' adaLN block."""
    torch.manual_seed(2)
    dit = _small_dit(global_cond_type="adaLN")
    x, t, c, g = _inputs()
    assert dit(x, t, c, g).shape == x.shape
    assert dit(x, t, c, g, exit_layer=1).shape == (2, 10, 64)

    block, h, context = dit.layers[0], torch.randn(2, 10, 64), torch.randn(2, 5, 64)
    rotary, global_embed = rotary_frequencies(10, dit.rotary_dim), torch.randn(2, 64)
    scale_s, shift_s, gate_s, scale_f, shift_f, gate_f = block.to_scale_shift_gate(global_embed)[:, None].chunk(6, -1)
    expected = h + torch.sigmoid(1 - gate_s) * block.self_attn(
        block.pre_norm(h) * (1 + scale_s) + shift_s, rotary=rotary
    )
    expected = expected + block.cross_attn(block.cross_attend_norm(expected), context=context)
    expected = expected + torch.sigmoid(1 - gate_f) * block.ff(block.ff_norm(expected) * (1 + scale_f) + shift_f)
    torch.testing.assert_close(block(h, context, rotary, global_embed), expected)
    with pytest.raises(ValueError, match="global_cond must be given"):
        block(h, context, rotary)


def test_adaln_modulation_starts_at_zero():
    dit = DiffusionTransformer(io_channels=8, embed_dim=64, depth=2, num_heads=2, cond_token_dim=16,
                               global_cond_dim=16, global_cond_type="adaLN")  # fmt: skip
    assert all(not block.to_scale_shift_gate[1].weight.any() for block in dit.layers)


def test_pooled_tokens_enter_the_global_embedding_and_vanish_with_them():
    """pool_cond_tokens adds the caption to the global embedding; all-zero tokens (CFG's unconditional branch)
    give exactly the model without it."""
    torch.manual_seed(3)
    pooled = _small_dit(global_cond_type="adaLN", pool_cond_tokens=True)
    plain = _small_dit(global_cond_type="adaLN")
    plain.load_state_dict({k: v for k, v in pooled.state_dict().items() if not k.startswith("to_pooled_embed")})
    x, t, c, g = _inputs()
    zeros = torch.zeros_like(c)
    torch.testing.assert_close(pooled(x, t, zeros, g), plain(x, t, zeros, g))
    assert not torch.allclose(pooled(x, t, c, g), plain(x, t, c, g), atol=1e-4)


def test_unknown_global_cond_type_is_refused():
    with pytest.raises(ValueError, match="global_cond_type must be one of"):
        _small_dit(global_cond_type="film")


def test_patch_pretransform_round_trips_exactly():
    pt = PatchPretransform(sample_rate=16000, audio_channels=2, patch_size=16)
    audio = torch.randn(3, 2, 16 * 20)
    latents = pt.encode(audio)
    assert latents.shape == (3, 32, 20)
    assert torch.equal(pt.decode(latents), audio)
    # frame n holds samples [16 n, 16 n + 16) of each channel
    assert torch.equal(latents[0, :16, 5], audio[0, 0, 80:96])


def test_patch_pretransform_scale_divides_latents():
    plain, scaled = PatchPretransform(8000, 2, 16), PatchPretransform(8000, 2, 16, scale=0.25)
    audio = torch.randn(2, 2, 16 * 8)
    assert torch.allclose(scaled.encode(audio), plain.encode(audio) * 4)
    assert torch.allclose(scaled.decode(scaled.encode(audio)), audio)
    with pytest.raises(ValueError, match="scale"):
        PatchPretransform(8000, 2, 16, scale=0)


def test_patch_pretransform_rejects_bad_lengths():
    with pytest.raises(ValueError, match="not a multiple"):
        PatchPretransform(16000, 2, 16).encode(torch.randn(1, 2, 100))


def test_mdct_pretransform_is_orthogonal_and_puts_a_harmonic_in_fixed_channels():
    """Exact inverse and energy kept (an orthogonal transform); a sine's energy stays in the same few channels
    whatever its phase (raw patches spread it over all of them)."""
    pt = MdctPretransform(sample_rate=8000, audio_channels=2, patch_size=64, scale=0.5)
    audio = torch.randn(3, 2, 4096)
    latents = pt.encode(audio)
    assert latents.shape == (3, 128, 64)
    torch.testing.assert_close(pt.decode(latents), audio, atol=1e-5, rtol=0)
    torch.testing.assert_close((latents * 0.5).pow(2).sum(), audio.pow(2).sum(), rtol=1e-5, atol=0)
    t = torch.arange(4096) / 8000
    for phase in (0.0, 1.0, 2.5):
        sine = torch.sin(2 * torch.pi * 500 * t + phase).expand(1, 2, -1).contiguous()
        energy = pt.encode(sine).pow(2).sum(-1)[0, :64]  # left channel's 64 coefficients
        assert energy[:6].sum() / energy.sum() < 0.01 and energy[6:10].sum() / energy.sum() > 0.95  # 500 Hz: bin 8


def test_long_prompt_is_truncated_with_a_warning(tiny_model, caplog):
    text = tiny_model.conditioners.text
    with caplog.at_level(logging.WARNING):
        ids, mask = text.tokenize(["x" * (text.max_length + 20), "short"])
    assert ids.shape == (2, text.max_length) and mask[0].all()
    assert "truncated" in caplog.text and "items [0]" in caplog.text


def test_conditioning_shapes_and_padding_is_zero(tiny_model):
    cond = tiny_model.condition(["a tone", "a much longer prompt about a tone"], [0.5, 1.0])
    L = tiny_model.conditioners.text.max_length
    assert cond.cross_attn_cond.shape == (2, L + 1, 64)
    assert cond.global_cond.shape == (2, 64)
    padded = ~cond.cross_attn_mask[0, :L]
    assert padded.any() and torch.count_nonzero(cond.cross_attn_cond[0, :L][padded]) == 0


def test_model_rejects_mismatched_widths():
    with pytest.raises(Exception, match="io_channels=128 but the pretransform makes 64"):
        build_model("tiny", ["model.pretransform.patch_size=32"])


def test_presets_compose_with_the_published_sizes():
    from hydra.utils import instantiate

    from arc.config import compose_config

    cfg = compose_config("train", ["model=sao_small"])
    dit = instantiate(cfg.model.dit)
    n = sum(p.numel() for p in dit.parameters())
    assert 330e6 < n < 350e6, n  # "about 341M parameters"
    assert cfg.model.sample_size / 44100 == pytest.approx(11.89, abs=0.01)
