"""Inside ARCModule's steps (not only the pure loss functions): what G and D are fed, masks, the penalty path,
gradient clipping and the EMA warm-up, on the REAL tones_arc config at tiny size."""

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from arc.cli.train import instantiate_run
from arc.data.audio import collate
from arc.data.tones import TonesDataset
from arc.flow import denoise
from arc.losses import mismatched_prompts
from arc.training.ema import EMA, warmup_decay
from arc.training.steps import batch_conditioning, step_generator
from tests.test_arc import NO_PROBES, arc_config

CPU = torch.device("cpu")


def _batch(prompts: list[str]) -> dict:
    dataset = TonesDataset(len(prompts), 8000, 4096, seed=3)
    items = [dict(dataset[i], prompt=p) for i, p in enumerate(prompts)]
    return collate(items)


class Recorder:
    """Wraps ``module.forward`` to record each call's inputs and output."""

    def __init__(self, module: torch.nn.Module):
        self.calls = []
        forward = module.forward

        def recording(x, t, *cond):
            out = forward(x, t, *cond)
            self.calls.append({"x": x.detach(), "t": t.detach(), "out": out.detach()})
            return out

        module.forward = recording


@pytest.fixture
def module(pretrained, tmp_path):
    return instantiate_run(arc_config(pretrained, tmp_path, *NO_PROBES))[1]


def test_real_and_fake_are_renoised_with_the_same_noise_and_level(module):
    g, d = Recorder(module.model.dit), Recorder(module.discriminator)
    batch = _batch(["a low sine tone", "a high square tone", "a noise", "a mid sawtooth tone"])
    module.generator_step(batch, step_generator(CPU, 1))
    (gen,) = g.calls
    real, fake = d.calls
    x0 = module.model.pretransform.encode(batch["audio"])
    x0_fake = denoise(gen["x"], gen["t"], gen["out"])
    s = real["t"].view(-1, 1, 1)
    assert torch.equal(real["t"], fake["t"])
    # x_s = (1 - s) x0 + s n: the noise recovered from the real and from the fake input is the same tensor
    noise_real = (real["x"] - (1 - s) * x0) / s
    noise_fake = (fake["x"] - (1 - s) * x0_fake) / s
    assert torch.allclose(noise_real, noise_fake, atol=1e-4)
    assert not torch.allclose(x0, x0_fake, atol=1e-3)  # the pair differs in its clean part only


def test_generator_levels_follow_gen_logsnr(pretrained, tmp_path):
    module = instantiate_run(arc_config(pretrained, tmp_path, *NO_PROBES, "module.gen_logsnr=[-1.0,0.5]"))[1]
    g = Recorder(module.model.dit)
    batch = _batch(["a low sine tone", "a high square tone", "a noise", "a mid sawtooth tone"])
    with torch.no_grad():
        for step in range(16):
            module.generator_step(batch, step_generator(CPU, step))
    t = torch.cat([c["t"] for c in g.calls]).double()
    logsnr = torch.log((1 - t) / t)
    assert logsnr.min() >= -1 - 1e-5 and logsnr.max() <= 0.5 + 1e-5
    assert logsnr.max() - logsnr.min() > 1.0  # spread over the range, not one value


def _spread_d_scores(module):
    """A fresh head scores everything near 0; a larger weight-norm gain spreads the scores so means differ."""
    with torch.no_grad():
        module.discriminator.head.proj_out.parametrizations.weight.original0.fill_(30.0)


def test_duplicate_captions_are_masked_out_of_the_contrastive_loss(module):
    _spread_d_scores(module)
    d = Recorder(module.discriminator)
    prompts = ["a low sine tone", "a low sine tone", "a noise", "a mid sawtooth tone"]
    losses = module.discriminator_step(_batch(prompts), step_generator(CPU, 7))
    real, _, mismatched = d.calls
    negatives, valid = mismatched_prompts(prompts)
    assert negatives == ["a low sine tone", "a noise", "a mid sawtooth tone", "a low sine tone"]
    assert valid.tolist() == [False, True, True, True]  # item 0's "negative" is its own caption
    per_item = F.softplus(-(real["out"] - mismatched["out"])).flatten(1).mean(dim=1)
    # item 0 is scored under its own prompt twice: softplus(0) = log 2, which must not enter the mean
    assert per_item[0].item() == pytest.approx(math.log(2), abs=1e-6)
    assert losses["d_contrastive"].item() == pytest.approx(per_item[1:].mean().item(), rel=1e-6)
    assert abs(losses["d_contrastive"] - per_item.mean()) > 1e-5


def test_padded_frames_are_masked_out_of_d_scores(module):
    _spread_d_scores(module)
    d = Recorder(module.discriminator)
    batch = _batch(["a low sine tone", "a high square tone"])
    padding = torch.ones(2, batch["audio"].shape[-1], dtype=torch.bool)
    padding[1, batch["audio"].shape[-1] // 2 :] = False  # item 1: its second half is padding
    d_loss = module.discriminator_step(dict(batch, padding_mask=padding), step_generator(CPU, 3))["d_loss"]
    real, fake = d.calls[:2]
    frames = torch.ones(2, 64, dtype=torch.bool)
    frames[1, 32:] = False
    # 65 tokens (global + 64 frames) -> 16 patches by nearest neighbour: patch j starts at token floor(65 j / 16)
    mask = module.discriminator.patch_mask(frames, 16)
    assert mask[0].all() and mask[1, 0].tolist() == [j * 65 // 16 <= 32 for j in range(16)]
    per_patch = F.softplus(-(real["out"] - fake["out"]))
    assert d_loss.item() == pytest.approx(per_patch[mask].mean().item(), rel=1e-5)
    assert abs(per_patch[mask].mean() - per_patch.mean()) > 1e-4


def test_d_total_is_the_sum_of_its_logged_parts(pretrained, tmp_path):
    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, "loss.r1r2_gamma=2.0", "loss.contrastive_weight=0.5")
    module = instantiate_run(cfg)[1]
    losses = module.discriminator_step(_batch(["a low sine tone", "a noise"]), step_generator(CPU, 4))
    assert losses["d_r1r2"] > 0
    total = losses["d_loss"] + 0.5 * losses["d_contrastive"] + losses["d_r1r2"]
    assert losses["d_total"].item() == pytest.approx(total.item(), rel=1e-6)


class StepNorms(L.Callback):
    """The global gradient norm each optimiser sees when it steps (after clipping)."""

    def __init__(self):
        self.norms = []

    def on_fit_start(self, trainer, module):
        for opt in trainer.optimizers:
            opt.register_step_pre_hook(self._record)

    def _record(self, opt, args, kwargs):
        grads = [p.grad for group in opt.param_groups for p in group["params"] if p.grad is not None]
        self.norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())


def test_gradient_clipping_acts_on_both_networks(pretrained, tmp_path):
    clip = 1e-3
    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, f"module.gradient_clip_val={clip}", "trainer.max_steps=4")
    datamodule, module, trainer = instantiate_run(cfg)
    norms = StepNorms()
    trainer.callbacks.append(norms)
    trainer.fit(module, datamodule=datamodule)
    logged = trainer.callback_metrics
    assert len(norms.norms) == 4
    assert all(n <= clip * (1 + 1e-4) for n in norms.norms)
    assert logged["train/g_grad_norm"] > clip and logged["train/d_grad_norm"] > clip  # before clipping


def test_ema_warmup_matches_ema_pytorch_closed_form_over_many_steps():
    """ema-pytorch (beta 0.9999, power 3/4, inv_gamma 1, update_after_step 1): copies on updates 1 and 2."""

    def closed_form(n):  # written from ema-pytorch's get_current_decay, step = n after the increment
        epoch = max(n - 1 - 1, 0)
        return 0.0 if epoch <= 0 else min(max(1 - (1 + epoch) ** -0.75, 0.0), 0.9999)

    assert [warmup_decay(n, 0.9999) for n in (1, 2)] == [0.0, 0.0]
    assert warmup_decay(3, 0.9999) == pytest.approx(1 - 2**-0.75)
    source = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(source, 0.9999)
    expected = source.weight.item()
    for n in range(1, 3001):
        with torch.no_grad():
            source.weight.fill_(math.sin(n / 50))
        ema.update(source)
        expected = closed_form(n) * expected + (1 - closed_form(n)) * math.sin(n / 50)
        assert ema.module.weight.item() == pytest.approx(expected, abs=1e-6)
    assert int(ema.num_updates) == 3000
    assert warmup_decay(10**9, 0.9999) == 0.9999


def test_ema_warmup_continues_across_a_state_dict_round_trip():
    source = torch.nn.Linear(2, 2)
    ema = EMA(source, 0.9999)
    for _ in range(5):
        ema.update(source)
    restored = EMA(torch.nn.Linear(2, 2), 0.9999)
    restored.load_state_dict(ema.state_dict())
    assert int(restored.num_updates) == 5 and restored.next_decay() == ema.next_decay() == warmup_decay(6, 0.9999)
    assert EMA(source, 0.99, warmup=False).next_decay() == 0.99


def test_r1r2_under_bf16_autocast_is_computed_in_float32(module):
    batch = _batch(["a low sine tone", "a noise"])
    xs_real, xs_fake, s, frames = module._fake_and_noised(batch, step_generator(CPU, 5))
    d, cond = module.discriminator, batch_conditioning(module.discriminator.conditioners, batch)
    mask = d.patch_mask(frames, 16)
    reference = module._r1r2(
        xs_real, xs_fake, d(xs_real, s, cond), d(xs_fake, s, cond), s, cond, mask, step_generator(CPU, 9)
    )
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cond16 = batch_conditioning(d.conditioners, batch)
        real16, fake16 = d(xs_real, s, cond16), d(xs_fake, s, cond16)
        assert real16.dtype == torch.bfloat16
        penalty = module._r1r2(xs_real, xs_fake, real16, fake16, s, cond16, mask, step_generator(CPU, 9))
    assert penalty.dtype == torch.float32 and reference > 0
    assert penalty.item() == pytest.approx(reference.item(), rel=1e-4)
    penalty.backward()  # gradients reach D through the float32 passes
    assert d.head.proj_out.parametrizations.weight.original1.grad is not None
