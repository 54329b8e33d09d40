import math

import torch

from arc.losses import (
    approx_r1r2_penalty,
    contrastive_d_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    mismatched_prompts,
    relativistic_d_loss,
    relativistic_g_loss,
)


def sp(x):
    return math.log1p(math.exp(x))


def test_relativistic_losses_by_hand():
    real = torch.tensor([[[1.0, 2.0]], [[0.0, -1.0]]])  # (B=2, 1, T'=2)
    fake = torch.tensor([[[0.5, 3.0]], [[1.0, -1.0]]])
    diffs = [0.5, -1.0, -1.0, 0.0]
    assert math.isclose(relativistic_d_loss(real, fake).item(), sum(sp(-d) for d in diffs) / 4, rel_tol=1e-6)
    assert math.isclose(relativistic_g_loss(real, fake).item(), sum(sp(d) for d in diffs) / 4, rel_tol=1e-6)


def test_relativistic_losses_pair_items_elementwise():
    real, fake = torch.tensor([[[5.0]], [[-5.0]]]), torch.tensor([[[4.0]], [[-6.0]]])
    # each real beats its own fake by 1, although the first fake beats the second real
    assert math.isclose(relativistic_d_loss(real, fake).item(), sp(-1.0), rel_tol=1e-6)


def test_contrastive_loss_masks_invalid_items():
    matched = torch.tensor([[[2.0]], [[0.0]], [[9.0]]])
    mismatched = torch.tensor([[[1.0]], [[1.0]], [[-9.0]]])
    valid = torch.tensor([True, True, False])
    expected = (sp(-1.0) + sp(1.0)) / 2
    assert math.isclose(contrastive_d_loss(matched, mismatched, valid).item(), expected, rel_tol=1e-6)
    assert contrastive_d_loss(matched, mismatched, torch.zeros(3, dtype=torch.bool)).item() == 0


def test_lsgan_by_hand():
    real, fake = torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.5, 1.0]]])
    assert math.isclose(lsgan_d_loss(real, fake).item(), (0 + 1) / 2 + (0.25 + 1) / 2)
    assert math.isclose(lsgan_g_loss(real, fake).item(), (0.25 + 0) / 2)


def test_approx_r1r2_of_a_linear_critic_is_its_squared_slope():
    w = torch.tensor(3.0)
    score = lambda x: w * x.sum(dim=1, keepdim=True)  # (B, 1, T)  # noqa: E731
    real, fake = torch.randn(4, 2, 5), torch.randn(4, 2, 5)
    gen = torch.Generator().manual_seed(0)
    r1, r2 = approx_r1r2_penalty(score, real, fake, score(real), score(fake), sigma=0.1, generator=gen)
    # D(x + s z) - D(x) = w s sum_c z: variance w^2 s^2 * 2 per patch, 5 patches summed
    assert abs(r1.item() - 9 * 0.01 * 2 * 5) < 0.6 and abs(r2.item() - 0.9) < 0.6


def test_mismatched_prompts_are_a_new_list_and_differ():
    prompts = ["a", "b"]
    shifted, valid = mismatched_prompts(prompts)
    assert prompts == ["a", "b"] and shifted == ["b", "a"] and valid.all()


def test_mismatched_prompts_mask_duplicates_and_singletons():
    _, valid = mismatched_prompts(["a", "a", "b"])
    assert valid.tolist() == [False, True, True]
    assert mismatched_prompts(["solo"])[1].tolist() == [False]
