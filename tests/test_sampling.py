import math

import pytest
import torch

from arc.flow import add_noise, denoise, randn
from arc.generate import generate
from arc.models.conditioners import Conditioning
from arc.sampling import (
    SAMPLERS,
    SamplingDefaults,
    guided_velocity,
    initial_latent,
    linear_timesteps,
    logsnr_timesteps,
    sample_dpmpp,
    sample_euler,
    sample_pingpong,
    sampling_defaults,
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


@pytest.mark.parametrize("sampler", [sample_euler, sample_pingpong, sample_dpmpp])
@pytest.mark.parametrize("schedule", [logsnr_timesteps, linear_timesteps])
def test_samplers_recover_data_under_the_exact_velocity(sampler, schedule):
    target = torch.randn(2, 3, 5)
    gen = torch.Generator().manual_seed(0)
    x = initial_latent((2, 3, 5), 1.0, gen)
    out = sampler(_exact_velocity(target), x, schedule(6), gen)
    assert torch.allclose(out, target, atol=1e-5)


def _gaussian_flow_velocity(mu: float, s: float):
    """The exact velocity field when the data is N(mu, s^2): x_t = (1 - t) x0 + t eps is N((1 - t) mu, v(t)),
    v(t) = (1 - t)^2 s^2 + t^2, and E[eps - x0 | x_t] = a (x_t - (1 - t) mu) - mu with a = (t - (1 - t) s^2) / v."""

    def velocity(x, t):
        t = t.view(-1, 1, 1).double()
        var = (1 - t) ** 2 * s**2 + t**2
        return ((t - (1 - t) * s**2) / var * (x - (1 - t) * mu) - mu).to(x.dtype)

    return velocity


def test_dpmpp_transports_a_gaussian_toy_to_its_data_distribution():
    """The probability-flow ODE of N(mu, s^2) data maps each noise value eps to mu + s eps. On a fine linear
    schedule DPM++ 2M lands there, far closer than Euler at equal steps. (On the reference's logSNR schedule the
    last step jumps from t = 0.12 to 0 and returns the posterior mean, so no sampler converges to the ODE's end
    there: that schedule is made for denoisers, not for this check.)"""
    mu, s = 0.7, 0.3
    eps = torch.randn(1, 1, 4096, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    velocity, exact = _gaussian_flow_velocity(mu, s), mu + s * eps
    ts = linear_timesteps(64).double()
    dpmpp = sample_dpmpp(velocity, eps.clone(), ts, torch.Generator())
    euler = sample_euler(velocity, eps.clone(), ts, torch.Generator())
    assert (dpmpp - exact).abs().max() < 1e-2
    assert (euler - exact).abs().max() > 3 * (dpmpp - exact).abs().max()


def test_euler_on_the_logsnr_schedule_equals_a_hand_computation():
    """The reference's sample_rf + sample_discrete_euler, written out step by step for 4 steps."""
    velocity = lambda x, t: torch.sin(3 * x) * t.view(-1, 1, 1) + 0.5 * x  # any smooth field
    x0 = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(2))
    t = [1.0, 1 / (1 + math.exp(-6 + 8 / 4 * 1)), 1 / (1 + math.exp(-6 + 8 / 4 * 2)), 1 / (1 + math.exp(-6 + 6)), 0.0]
    x = x0.clone()
    for i in range(4):
        x = x + (t[i + 1] - t[i]) * velocity(x, torch.full((2,), t[i]))
    out = sample_euler(velocity, x0.clone(), logsnr_timesteps(4), torch.Generator())
    assert torch.allclose(logsnr_timesteps(4), torch.tensor(t), atol=1e-7)
    assert torch.allclose(out, x, atol=1e-6)
    linear = sample_euler(velocity, x0.clone(), linear_timesteps(4), torch.Generator())
    assert (linear - out).abs().max() > 1e-2  # the linear schedule is a different sampler


def _reused_noise_pingpong(velocity, x, ts, generator, callback=None):
    """A WRONG ping-pong sampler (one noise tensor for every step): the fresh-noise test must reject it."""
    noise = randn(tuple(x.shape), generator, like=x)
    ones = x.new_ones(x.shape[0])
    for i in range(len(ts) - 1):
        x0_hat = denoise(x, ts[i], velocity(x, ts[i] * ones))
        x = add_noise(x0_hat, noise, ts[i + 1])
        if callback is not None:
            callback({"i": i, "t": ts[i], "x": x, "denoised": x0_hat})
    return x0_hat


def _renoises_with_fresh_noise(sampler) -> bool:
    """With ``v = x / t`` the clean estimate is 0, so the state after step i is exactly ``t_{i+1} eps_i``: the
    noise of every step can be read back and compared with fresh draws from the same seed."""
    ts, seen = logsnr_timesteps(4), []
    sampler(lambda x, t: x / t.view(-1, 1, 1), torch.ones(1, 1, 8), ts, torch.Generator().manual_seed(0), seen.append)
    noises = [step["x"] / ts[i + 1] for i, step in enumerate(seen[:-1])]
    gen = torch.Generator().manual_seed(0)
    fresh = [torch.randn(1, 1, 8, generator=gen) for _ in noises]
    return all(torch.allclose(n, f, atol=1e-5) for n, f in zip(noises, fresh, strict=True))


def test_pingpong_renoises_with_fresh_noise_each_step():
    assert _renoises_with_fresh_noise(sample_pingpong)
    assert not _renoises_with_fresh_noise(_reused_noise_pingpong)  # the check catches a noise-reusing sampler


def test_sampling_defaults_follow_the_objective():
    assert sampling_defaults("rf_denoiser") == SamplingDefaults("pingpong", 8, 1.0)
    assert sampling_defaults("rectified_flow") == SamplingDefaults("euler", 50, 7.0)
    assert {d.sampler for d in (sampling_defaults("rf_denoiser"), sampling_defaults("rectified_flow"))} <= set(
        SAMPLERS
    )
    with pytest.raises(ValueError, match="v-diffusion"):
        sampling_defaults("v")


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


@pytest.mark.parametrize("sampler", ["pingpong", "euler", "dpmpp"])
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
