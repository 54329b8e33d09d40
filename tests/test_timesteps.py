import math

import pytest
import torch
from scipy import integrate, stats

from arc.flow import TimeShift
from arc.training.timesteps import logit_normal, logsnr_uniform, trunc_logit_normal

time_shift = TimeShift()  # stable-audio-tools' DistributionShift defaults

N = 200_000
LEFT = 0.075


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_trunc_logit_normal_range_and_reproducibility():
    t = trunc_logit_normal(N, _gen())
    assert t.shape == (N,) and t.dtype == torch.float32
    assert t.min() >= 0 and t.max() <= 1
    assert torch.equal(trunc_logit_normal(10, _gen(7)), trunc_logit_normal(10, _gen(7)))


def test_trunc_logit_normal_mean_matches_the_truncated_integral():
    # v = sigmoid(z), z ~ N(0, 1) conditioned on z >= a = logit(left); t = 1 - (v - left) / (1 - left)
    a = math.log(LEFT / (1 - LEFT))
    mass = 1 - stats.norm.cdf(a)
    mean_v = integrate.quad(lambda z: _sigmoid(z) * stats.norm.pdf(z), a, math.inf)[0] / mass
    expected = 1 - (mean_v - LEFT) / (1 - LEFT)
    assert trunc_logit_normal(N, _gen(1)).double().mean().item() == pytest.approx(expected, abs=3e-3)


@pytest.mark.parametrize("x", [0.2, 0.5, 0.9])
def test_trunc_logit_normal_cdf_matches_the_closed_form(x):
    # t <= x  <=>  v >= left + (1 - x)(1 - left)  <=>  z >= logit(that)
    a = math.log(LEFT / (1 - LEFT))
    v = LEFT + (1 - x) * (1 - LEFT)
    expected = (1 - stats.norm.cdf(math.log(v / (1 - v)))) / (1 - stats.norm.cdf(a))
    assert (trunc_logit_normal(N, _gen(2)) <= x).double().mean().item() == pytest.approx(expected, abs=4e-3)


def test_time_shift_at_min_length_is_mu_minus_half():
    # mu = -0.5:  t' = 1 - e^-0.5 / (e^-0.5 + 1) at t = 1/2, i.e. sigmoid(0.5)
    out = time_shift(torch.tensor([0.5], dtype=torch.float64), seq_len=256)
    assert out.item() == pytest.approx(_sigmoid(0.5), abs=1e-12)


def test_time_shift_matches_the_reference_formula_and_clamps_the_length():
    t = torch.linspace(0.01, 0.99, 50, dtype=torch.float64)
    for seq_len, mu in [(256, -0.5), (2176, -0.825), (4096, -1.15)]:
        reference = 1 - math.exp(mu) / (math.exp(mu) + (1 / (1 - t) - 1))
        assert torch.allclose(time_shift(t, seq_len), reference, atol=1e-12)
    assert torch.equal(time_shift(t, 10), time_shift(t, 256))
    assert torch.equal(time_shift(t, 100_000), time_shift(t, 4096))


def test_time_shift_is_monotone_towards_noise_and_fixes_the_ends():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    out = time_shift(t, 1024)
    assert torch.all(out[1:] > out[:-1])
    assert torch.all(out >= t)
    assert out[0] == 0 and out[-1] == 1
    assert torch.all(time_shift(t, 2048)[1:-1] > out[1:-1])  # longer latents: more noise


def test_logsnr_uniform_is_uniform_in_logsnr():
    t = logsnr_uniform(N, _gen(3), low=-6, high=2).double()
    logsnr = torch.log((1 - t) / t)
    assert logsnr.min() >= -6 - 1e-4 and logsnr.max() <= 2 + 1e-4
    assert logsnr.mean().item() == pytest.approx(-2.0, abs=0.02)  # (low + high) / 2
    assert logsnr.var().item() == pytest.approx(64 / 12, rel=0.02)  # (high - low)^2 / 12


def test_logit_normal_is_sigmoid_of_a_standard_normal():
    t = logit_normal(N, _gen(4)).double()
    z = torch.logit(t)
    assert t.mean().item() == pytest.approx(0.5, abs=3e-3)
    assert z.mean().item() == pytest.approx(0.0, abs=0.01)
    assert z.std().item() == pytest.approx(1.0, abs=0.01)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="left"):
        trunc_logit_normal(4, _gen(), left=1.0)
    with pytest.raises(ValueError, match="n must be"):
        logit_normal(0, _gen())
    with pytest.raises(ValueError, match="low"):
        logsnr_uniform(4, _gen(), low=2, high=-6)
    with pytest.raises(ValueError, match="min_length"):
        TimeShift(min_length=10, max_length=5)
