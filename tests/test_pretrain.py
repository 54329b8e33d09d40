"""Rectified-flow pre-training: EMA, the loss pieces, and whole runs composed from the REAL Hydra configs."""

import functools

import pytest
import torch
from torch import nn

from arc.cli.train import check_data_fits_model, instantiate_run, train
from arc.config import build_model, compose_config
from arc.data.audio import collate
from arc.data.tones import TonesDataset
from arc.models.conditioners import Conditioning
from arc.training.callbacks import probe_prompts
from arc.training.checkpoints import load_trained_model
from arc.training.ema import EMA
from arc.training.pretrain import FlowPretrainModule, drop_cross_attn_cond, masked_mse
from arc.training.steps import latent_frame_mask

# tiny sizes on top of the experiment, so that a whole run takes seconds on a 2-core CPU
TINY_RUN = [
    "experiment=tones_pretrain",
    "data.train.size=8",
    "data.val.size=4",
    "data.batch_size=4",
    "callbacks.progress_bar=null",
]
TINY_PROBE = ["callbacks.probe.prompts=2", "callbacks.probe.per_prompt=2", "callbacks.probe.steps=2"]


# --- EMA -----------------------------------------------------------------------------------------------------------


def test_ema_update_is_the_exponential_average_and_copies_buffers():
    source = nn.BatchNorm1d(3)
    ema = EMA(source, 0.9, warmup=False)
    start = ema.module.weight.clone()
    with torch.no_grad():
        source.weight.fill_(2.0)
        source.running_mean.fill_(5.0)
    ema.update(source)
    assert torch.allclose(ema.module.weight, 0.9 * start + 0.1 * 2.0)
    assert torch.equal(ema.module.running_mean, source.running_mean)
    assert not any(p.requires_grad for p in ema.parameters())
    assert not ema.train().module.training


@pytest.mark.parametrize("decay, expected", [(1.0, "start"), (0.0, "source")])
def test_ema_decay_extremes(decay, expected):
    source = nn.Linear(2, 2)
    ema = EMA(source, decay, warmup=False)
    start = ema.module.weight.clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    ema.update(source)
    assert torch.equal(ema.module.weight, start if expected == "start" else source.weight)


def test_ema_rejects_a_different_module_and_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(2, 2), 1.5)
    with pytest.raises(ValueError, match="parameters differ"):
        EMA(nn.Linear(2, 2), 0.9).update(nn.Linear(2, 3, bias=False))


# --- loss pieces ---------------------------------------------------------------------------------------------------


def _cond(B: int = 6) -> Conditioning:
    return Conditioning(torch.randn(B, 5, 4) + 3, torch.ones(B, 5, dtype=torch.bool), torch.randn(B, 4))


@pytest.mark.parametrize("p, zeroed", [(1.0, 6), (0.0, 0)])
def test_cfg_dropout_extremes(p, zeroed):
    cond = _cond()
    out = drop_cross_attn_cond(cond, p, torch.Generator().manual_seed(0))
    assert int((out.cross_attn_cond.abs().sum(dim=(1, 2)) == 0).sum()) == zeroed
    assert torch.equal(out.global_cond, cond.global_cond)  # the duration vector is always kept
    assert torch.equal(out.cross_attn_mask, cond.cross_attn_mask)


def test_cfg_dropout_drops_whole_items_at_about_rate_p():
    cond = _cond(4000)
    out = drop_cross_attn_cond(cond, 0.1, torch.Generator().manual_seed(0))
    per_item = out.cross_attn_cond.abs().sum(dim=(1, 2))
    assert torch.equal(out.cross_attn_cond[per_item > 0], cond.cross_attn_cond[per_item > 0])
    assert (per_item == 0).float().mean().item() == pytest.approx(0.1, abs=0.015)


def test_masked_mse_ignores_padded_frames():
    pred, target = torch.zeros(1, 2, 3), torch.tensor([[[1.0, 2.0, 100.0], [3.0, 4.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_mse(pred, target, mask).item() == pytest.approx((1 + 4 + 9 + 16) / 4)
    assert latent_frame_mask(torch.tensor([[True] * 5 + [False] * 3]), 4).tolist() == [[True, True, True, False]]


def _tones_batch(model, n: int = 4) -> dict:
    data = TonesDataset(n, model.sample_rate, model.sample_size, seed=0)
    return collate([data[i] for i in range(n)])


def test_gradients_reach_the_dit_and_conditioners_but_not_t5_or_pretransform():
    model = build_model("tiny")
    module = FlowPretrainModule(model, functools.partial(torch.optim.AdamW, lr=1e-3))
    loss = module.flow_loss(_tones_batch(model), torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is not None for p in model.dit.parameters())
    assert model.dit.layers[-1].ff.proj_out.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.conditioners.numbers.parameters())
    assert all(p.grad is None and not p.requires_grad for p in model.conditioners.text.encoder.parameters())
    assert all(p.grad is None for p in model.pretransform.parameters())
    assert all(p.grad is None for p in module.ema.parameters())
    optimised = {id(p) for group in module.configure_optimizers().param_groups for p in group["params"]}
    assert optimised == {id(p) for p in module.parameters() if p.requires_grad}
    assert not optimised & {id(p) for p in model.conditioners.text.encoder.parameters()}


def test_run_config_must_be_plain():
    cfg = compose_config("train", ["paths.output_dir=/tmp"])
    with pytest.raises(TypeError, match="plain dict"):
        FlowPretrainModule(build_model("tiny"), functools.partial(torch.optim.AdamW), run_config=cfg)


# --- whole runs ----------------------------------------------------------------------------------------------------


def test_fast_dev_run_of_the_tones_experiment_logs_every_metric(tmp_path):
    cfg = compose_config(
        "train", [*TINY_RUN, *TINY_PROBE, "trainer.fast_dev_run=true", f"paths.output_dir={tmp_path}"]
    )
    metrics = train(cfg)
    probes = {f"val/probe_acc_{a}" for a in ("waveform", "pitch", "envelope", "pan", "all", "mean")}
    assert {"train/loss", "train/lr", "val/loss", "val/probe_fd", "val/probe_diversity"} | probes <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_short_run_writes_a_checkpoint_that_rebuilds_the_model(tmp_path):
    cfg = compose_config(
        "train", [*TINY_RUN, "~callbacks.probe", "trainer.max_steps=5", f"paths.output_dir={tmp_path}"]
    )
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.fit(module, datamodule=datamodule)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()

    model = module.model.eval()
    batch = _tones_batch(model, 2)
    x, t = torch.randn(2, *model.latent_shape), torch.tensor([0.3, 0.8])
    cond = model.condition(batch["prompt"], batch["seconds_total"].tolist())
    with torch.no_grad():
        raw = model.velocity(x, t, cond)
        ema = module.sampling_model(use_ema=True).velocity(x, t, cond)
        assert torch.allclose(load_trained_model(ckpt, use_ema=False).velocity(x, t, cond), raw, atol=1e-6)
        assert torch.allclose(load_trained_model(ckpt, use_ema=True).velocity(x, t, cond), ema, atol=1e-6)
    assert not torch.allclose(raw, ema)  # 5 steps at decay 0.995: the average lags the raw weights


def test_checkpoint_without_arc_config_is_refused(tmp_path):
    path = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="no 'arc_config'"):
        load_trained_model(path)


def test_composing_without_an_output_dir_is_a_clear_error():
    with pytest.raises(ValueError, match="paths.output_dir"):
        instantiate_run(compose_config("train"))


def test_probe_prompts_are_distinct_tones_captions():
    prompts = probe_prompts(24, seed=0)
    assert len(set(prompts)) == 24 and prompts == probe_prompts(24, seed=0)
    assert probe_prompts(["a low sine tone, steady, panned left"], seed=0) == ["a low sine tone, steady, panned left"]
    with pytest.raises(ValueError, match="tones template"):
        probe_prompts(["a dog barking"], seed=0)


def test_data_at_another_sample_rate_is_refused():
    model = build_model("tiny")
    check_data_fits_model([TonesDataset(2, model.sample_rate, model.sample_size)], model)
    with pytest.raises(ValueError, match="8000 Hz"):
        check_data_fits_model([TonesDataset(2, 8000, model.sample_size)], model)


def test_tensorboard_logger_writes_event_files(tmp_path):
    overrides = [*TINY_RUN, "~callbacks.probe", "logger=tensorboard", "trainer.max_steps=2"]
    train(compose_config("train", [*overrides, f"paths.output_dir={tmp_path}"]))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
