import pytest
import torch

from arc.generate import generate
from arc.models.conditioners import Conditioning
from arc.sampling import (
    guided_velocity,
    initial_latent,
    linear_timesteps,
    logsnr_timesteps,
    sample_euler,
    sample_pingpong,
)


def test_logsnr_timesteps_match_spec():
    expected8 = [1, 0.9933, 0.9820, 0.9526, 0.8808, 0.7311, 0.5, 0.2689, 0]
    expected4 = [1, 0.9820, 0.8808, 0.5, 0]
    assert torch.allclose(logsnr_timesteps(8), torch.tensor(expected8), atol=5e-5)
    assert torch.allclose(logsnr_timesteps(4), torch.tensor(expected4), atol=5e-5)


def test_logsnr_timesteps_audio_to_audio_starts_at_sigma_max():
    ts = logsnr_timesteps(4, sigma_max=0.8)
    assert ts[0] == pytest.approx(0.8) and ts[-1] == 0
    assert torch.all(ts[1:] < ts[:-1])


@pytest.mark.parametrize("bad", [0, -1])
def test_schedules_reject_bad_steps(bad):
    with pytest.raises(ValueError, match="steps"):
        logsnr_timesteps(bad)
    with pytest.raises(ValueError, match="steps"):
        linear_timesteps(bad)


def _exact_velocity(target):
    """The true flow velocity when all data is ``target``: x_t = (1 - t) c + t eps  =>  v = (x_t - c) / t."""
    return lambda x, t: (x - target) / t.view(-1, 1, 1)


@pytest.mark.parametrize("sampler, schedule", [(sample_euler, linear_timesteps), (sample_pingpong, logsnr_timesteps)])
def test_samplers_recover_data_under_the_exact_velocity(sampler, schedule):
    target = torch.randn(2, 3, 5)
    gen = torch.Generator().manual_seed(0)
    x = initial_latent((2, 3, 5), 1.0, gen)
    out = sampler(_exact_velocity(target), x, schedule(6), gen)
    assert torch.allclose(out, target, atol=1e-5)


def test_pingpong_renoises_with_fresh_noise_each_step():
    seen = []
    gen = torch.Generator().manual_seed(0)
    sample_pingpong(lambda x, t: torch.zeros_like(x), torch.zeros(1, 1, 4), logsnr_timesteps(3), gen, seen.append)
    # with v = 0 the clean estimate is the current x, so consecutive x differ only by the fresh noise
    xs = [s["x"] for s in seen[:-1]]
    assert not torch.allclose(xs[0] / logsnr_timesteps(3)[1], xs[1] / logsnr_timesteps(3)[2])


def test_cfg_scale_one_is_the_conditional_prediction(tiny_model):
    cond = tiny_model.condition(["a high sine tone"], [1.0])
    x, t = torch.randn(1, *tiny_model.latent_shape), torch.tensor([0.7])
    assert torch.equal(guided_velocity(tiny_model.velocity, cond, 1.0)(x, t), tiny_model.velocity(x, t, cond))


def test_cfg_combines_conditional_and_zeroed_unconditional(tiny_model):
    for p in tiny_model.dit.parameters():  # leave zero-init so both branches differ
        torch.nn.init.normal_(p, std=0.05)
    cond = tiny_model.condition(["a high sine tone"], [1.0])
    uncond = Conditioning(torch.zeros_like(cond.cross_attn_cond), cond.cross_attn_mask, cond.global_cond)
    x, t = torch.randn(1, *tiny_model.latent_shape), torch.tensor([0.7])
    v_c, v_u = tiny_model.velocity(x, t, cond), tiny_model.velocity(x, t, uncond)
    assert not torch.allclose(v_c, v_u)
    guided = guided_velocity(tiny_model.velocity, cond, 3.0)(x, t)
    assert torch.allclose(guided, v_u + 3.0 * (v_c - v_u), atol=1e-5)


@pytest.mark.parametrize("sampler", ["pingpong", "euler"])
def test_same_seed_same_sample_and_batch_independent(tiny_model, sampler):
    for p in tiny_model.dit.parameters():
        torch.nn.init.normal_(p, std=0.05)
    kwargs = dict(steps=3, sampler=sampler, cfg_scale=2.0)
    a = generate(tiny_model, ["a low sine tone", "a noise"], [1.0, 1.0], [7, 8], **kwargs)
    b = generate(tiny_model, ["a low sine tone", "a noise"], [1.0, 1.0], [7, 8], **kwargs)
    alone = generate(tiny_model, ["a noise"], [1.0], [8], **kwargs)
    other = generate(tiny_model, ["a low sine tone"], [1.0], [9], **kwargs)
    assert torch.equal(a, b)
    assert torch.allclose(a[1:], alone, atol=1e-5)
    assert not torch.allclose(a[:1], other)


def test_audio_to_audio_starts_near_the_init(tiny_model):
    init = torch.randn(1, 2, tiny_model.sample_size) * 0.1
    gen = torch.Generator().manual_seed(0)
    x = initial_latent((1, *tiny_model.latent_shape), 0.1, gen, tiny_model.pretransform.encode(init))
    assert torch.corrcoef(torch.stack([x.flatten(), tiny_model.pretransform.encode(init).flatten()]))[0, 1] > 0.6
    out = generate(tiny_model, ["a tone"], [1.0], [0], steps=2, sigma_max=0.5, init_audio=init)
    assert out.shape == init.shape


def test_sigma_max_below_one_needs_an_init_latent():
    with pytest.raises(ValueError, match="initial latent"):
        initial_latent((1, 2, 3), 0.5, torch.Generator())


def test_duration_above_the_maximum_is_a_clear_error(tiny_model):
    too_long = tiny_model.max_seconds + 1
    with pytest.raises(ValueError, match=r"outside \(0, 1\.02\] s"):
        generate(tiny_model, ["a tone"], [too_long], [0])


def test_empty_prompt_is_a_clear_error(tiny_model):
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        tiny_model.condition(["a tone", "  "], [1.0, 1.0])
