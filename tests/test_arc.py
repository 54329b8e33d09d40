"""ARC post-training: the two steps, the D/G schedule, EMA, logging, ablations, NaN handling, resume and DDP, with
real Lightning Trainers over the REAL Hydra configs (tiny sizes on top)."""

import logging
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import soundfile as sf
import torch
from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy
from omegaconf import OmegaConf

from arc.cli.train import instantiate_run, train
from arc.config import compose_config
from arc.data.audio import collate
from arc.data.tones import TonesDataset
from arc.training.arc import check_strategy
from arc.training.callbacks import AudioSamplesCallback
from arc.training.checkpoints import load_trained_model
from arc.training.steps import NonFiniteLossError, step_generator
from tests.conftest import TINY_DATA

NO_PROBES = ["~callbacks.pingpong8", "~callbacks.pingpong4", "~callbacks.pingpong2", "~callbacks.pingpong1"]
LOGGED = {
    "train/g_adv",
    "train/d_loss",
    "train/d_contrastive",
    "train/d_r1r2",
    "train/d_real_mean",
    "train/d_fake_mean",
    "train/d_acc",
    "train/g_grad_norm",
    "train/d_grad_norm",
    "train/g_lr",
    "train/d_lr",
    "train/d_total",
    "train/g_steps",
    "train/d_steps",
}


def arc_config(pretrained: Path, out: Path, *overrides: str):
    return compose_config(
        "train",
        ["experiment=tones_arc", f"pretrained={pretrained}", *TINY_DATA, f"paths.output_dir={out}", *overrides],
    )


def _batch(n: int = 4) -> dict:
    dataset = TonesDataset(n, 8000, 4096, seed=3)
    return collate([dataset[i] for i in range(n)])


def _grads(module: torch.nn.Module) -> list[bool]:
    return [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters() if p.requires_grad]


# --- the two steps -------------------------------------------------------------------------------------------------


def test_generator_step_reaches_only_g_and_discriminator_step_only_d(pretrained, tmp_path):
    _, module, _ = instantiate_run(arc_config(pretrained, tmp_path, *NO_PROBES))
    batch = _batch()
    module.generator_step(batch, step_generator(torch.device("cpu"), 0))["loss"].backward()
    assert any(_grads(module.model.dit)) and not any(_grads(module.discriminator))
    assert all(p.requires_grad for p in module.discriminator.trunk.parameters())  # restored after the step
    module.zero_grad(set_to_none=True)
    module.discriminator_step(batch, step_generator(torch.device("cpu"), 0))["loss"].backward()
    assert any(_grads(module.discriminator.trunk)) and any(_grads(module.discriminator.head))
    assert not any(_grads(module.model))


def test_discriminator_is_a_copy_of_the_trunk_up_to_the_exit_layer_only(pretrained, tmp_path):
    _, module, _ = instantiate_run(arc_config(pretrained, tmp_path, *NO_PROBES))
    g, d = module.model.dit.state_dict(), module.discriminator.trunk.state_dict()
    assert all(torch.equal(g[k], d[k]) for k in d)
    assert (
        module.model.dit.layers[0].self_attn.to_qkv.weight
        is not module.discriminator.trunk.layers[0].self_attn.to_qkv.weight
    )
    # exit after block 5 of 8: blocks 6 and 7 and the output layers are not copied
    assert len(module.discriminator.trunk.layers) == 6 and module.discriminator.exit_layer == 5
    assert set(g) - set(d) == {k for k in g if k.startswith(("layers.6.", "layers.7.", "project_out.", "postprocess"))}
    d_params = {id(p) for p in module.discriminator.parameters()}
    d_opt_params = {id(p) for group in module.configure_optimizers()[1].param_groups for p in group["params"]}
    assert d_opt_params <= d_params


def test_batch_of_one_has_no_contrastive_term_and_warns_once(pretrained, tmp_path, caplog):
    _, module, _ = instantiate_run(arc_config(pretrained, tmp_path, *NO_PROBES))
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            losses = module.discriminator_step(_batch(1), step_generator(torch.device("cpu"), 0))
    assert losses["d_contrastive"] == 0
    assert caplog.text.count("no contrastive negatives") == 1


# --- whole runs through the real configs -----------------------------------------------------------------------------


class StepRecorder(L.Callback):
    """Which network each batch updated, and whether the EMA moved."""

    def __init__(self):
        self.roles, self.ema_moved = [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self._counts = (module.g_steps, module.d_steps)
        self._ema = [p.clone() for p in module.ema.parameters()]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.roles.append("G" if module.g_steps > self._counts[0] else "D")
        self.ema_moved.append(
            any(not torch.equal(a, b) for a, b in zip(self._ema, module.ema.parameters(), strict=True))
        )


@pytest.mark.parametrize("ratio, expected", [(1, "DGDGDG"), (2, "DDGDDG")])
def test_dg_schedule_follows_its_argument_and_ema_moves_only_after_g(pretrained, tmp_path, ratio, expected):
    cfg = arc_config(
        pretrained,
        tmp_path,
        *NO_PROBES,
        f"module.d_steps_per_g_step={ratio}",
        "data.train.size=24",
        "trainer.max_steps=6",
    )
    datamodule, module, trainer = instantiate_run(cfg)
    recorder = StepRecorder()
    trainer.callbacks.append(recorder)
    trainer.fit(module, datamodule=datamodule)
    assert "".join(recorder.roles) == expected
    assert recorder.ema_moved == [role == "G" for role in expected]
    assert (module.g_steps, module.d_steps) == (expected.count("G"), expected.count("D"))


@pytest.mark.parametrize("loss", ["arc", "arc_no_contrastive", "arc_lsgan"])
def test_fast_dev_run_of_tones_arc_and_each_ablation_logs_every_key(pretrained, tmp_path, loss):
    probes = [f"callbacks.pingpong{n}.{k}={v}" for n in (1, 2, 4, 8) for k, v in (("prompts", 2), ("per_prompt", 2))]
    cfg = arc_config(pretrained, tmp_path, f"loss={loss}", "trainer.fast_dev_run=2", *probes)  # one D and one G step
    metrics = train(cfg)
    probe_keys = {f"val/pingpong{n}_acc_mean" for n in (1, 2, 4, 8)}
    assert LOGGED | probe_keys | {"val/d_loss", "val/d_acc"} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())
    if loss == "arc_no_contrastive":
        assert metrics["train/d_contrastive"] == 0
    else:
        assert metrics["train/d_contrastive"] > 0


def test_arc_checkpoint_loads_as_a_generator(pretrained, tmp_path):
    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, "trainer.max_steps=2")
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.fit(module, datamodule=datamodule)
    loaded = load_trained_model(tmp_path / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.dit.parameters(), module.ema.module.parameters(), strict=True))
    # the post-trained generator is an rf_denoiser: sampled with 8 ping-pong steps and no CFG by default
    assert loaded.diffusion_objective == "rf_denoiser" and load_trained_model(pretrained).diffusion_objective == (
        "rectified_flow"
    )
    assert int(module.ema.num_updates) == module.g_steps == 1


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(pretrained, tmp_path):
    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, "trainer.max_epochs=1")
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.resolve().read_bytes()

    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            with torch.no_grad():
                module.discriminator.head.proj_out.parametrizations.weight.original0.fill_(float("nan"))

    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, "trainer.max_epochs=2", f"ckpt_path={last}")
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.callbacks.append(Poison())
    with pytest.raises(NonFiniteLossError, match=r"non-finite .*Resume from ckpt_path=.*\.ckpt"):
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    assert last.resolve().read_bytes() == before


def test_resumed_run_equals_the_uninterrupted_one(pretrained, tmp_path):
    straight = arc_config(pretrained, tmp_path / "straight", *NO_PROBES, "trainer.max_epochs=2")
    datamodule, whole, trainer = instantiate_run(straight)
    trainer.fit(whole, datamodule=datamodule)

    first = arc_config(pretrained, tmp_path / "resumed", *NO_PROBES, "trainer.max_epochs=1")
    datamodule, module, trainer = instantiate_run(first)
    trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    second = arc_config(pretrained, tmp_path / "resumed", *NO_PROBES, "trainer.max_epochs=2", f"ckpt_path={last}")
    datamodule, resumed, trainer = instantiate_run(second)
    trainer.fit(resumed, datamodule=datamodule, ckpt_path=second.ckpt_path)

    assert (resumed.g_steps, resumed.d_steps) == (whole.g_steps, whole.d_steps) == (2, 2)
    a, b = whole.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    for opt_a, opt_b in zip(whole.optimizers(), resumed.optimizers(), strict=True):
        steps = [s["step"] for s in opt_a.optimizer.state_dict()["state"].values()]
        assert steps == [s["step"] for s in opt_b.optimizer.state_dict()["state"].values()]


# --- configuration errors -----------------------------------------------------------------------------------------


def test_missing_discriminator_exit_layer_names_the_key(pretrained, tmp_path):
    with pytest.raises(ValueError, match=r"set module.discriminator.exit_layer to a block index in \[0, 7\]"):
        instantiate_run(arc_config(pretrained, tmp_path, "module.discriminator.exit_layer=null"))


def test_missing_and_mismatched_pretrained_weights_are_clear_errors(pretrained, tmp_path):
    with pytest.raises(Exception, match="pretrained="):
        instantiate_run(arc_config(pretrained, tmp_path, "pretrained=null"))
    # Hydra wraps the loader's CheckpointMismatchError; its message lists the extra blocks
    with pytest.raises(Exception, match=r"CheckpointMismatchError.*unexpected keys: dit\.layers\.4\."):
        instantiate_run(arc_config(pretrained, tmp_path, "model.dit.depth=4", "module.discriminator.exit_layer=2"))


# --- scale-out -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_cpu_ddp_run(pretrained, tmp_path):
    """`trainer=ddp` on 2 CPU processes (gloo): both ranks train and rank 0 writes a loadable checkpoint."""
    cmd = [
        sys.executable, "-m", "arc.cli.train", "experiment=tones_arc", f"pretrained={pretrained}", *TINY_DATA,
        *NO_PROBES, "trainer=ddp_arc", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true",
        "trainer.max_steps=4", f"paths.output_dir={tmp_path}", f"hydra.run.dir={tmp_path}",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world_size: 2" in result.stderr or "distributed_backend=gloo" in result.stderr
    model = load_trained_model(tmp_path / "checkpoints" / "last.ckpt")
    assert model.dit.depth == 8


def test_audio_samples_callback_writes_wavs_of_the_generator(pretrained, tmp_path):
    cfg = arc_config(pretrained, tmp_path, *NO_PROBES, "trainer.max_steps=2")
    datamodule, module, trainer = instantiate_run(cfg)
    trainer.callbacks.append(AudioSamplesCallback(["a low sine tone, steady, panned left", "rain"], steps=2))
    trainer.fit(module, datamodule=datamodule)
    wavs = sorted((tmp_path / "samples").glob("step*/*.wav"))
    assert [w.name for w in wavs] == ["000.wav", "001.wav"]
    audio, rate = sf.read(wavs[0])
    assert rate == 8000 and audio.shape == (4096, 2) and np.abs(audio).max() > 0


def test_ddp_without_unused_parameter_search_and_fsdp_are_refused():
    check_strategy(DDPStrategy(find_unused_parameters=True))
    with pytest.raises(ValueError, match="trainer=ddp_arc"):
        check_strategy(DDPStrategy())
    with pytest.raises(ValueError, match="FSDP"):
        check_strategy(FSDPStrategy())


@pytest.mark.slow
def test_multirun_sweep_over_the_contrastive_weight(pretrained, tmp_path):
    """`arc-train -m loss.contrastive_weight=0,1`: one run per value, each with its own resolved config."""
    cmd = [
        sys.executable, "-m", "arc.cli.train", "-m", "experiment=tones_arc", f"pretrained={pretrained}", *TINY_DATA,
        *NO_PROBES, "trainer.fast_dev_run=2", "loss.contrastive_weight=0,1", f"hydra.sweep.dir={tmp_path}",
        f"paths.log_dir={tmp_path}",
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = [OmegaConf.load(tmp_path / run / ".hydra" / "config.yaml").loss.contrastive_weight for run in "01"]
    assert weights == [0.0, 1.0]


def test_bf16_mixed_precision_run(pretrained, tmp_path):
    """The autocast path of both steps (GPUs use it; CPU autocast runs bf16 too), with clipping, EMA and the
    R1/R2 penalty (computed in float32 under autocast)."""
    cfg = arc_config(
        pretrained,
        tmp_path,
        *NO_PROBES,
        "trainer.precision=bf16-mixed",
        "trainer.fast_dev_run=2",
        "loss.r1r2_gamma=1.0",
    )
    metrics = train(cfg)
    assert metrics["train/g_steps"] == metrics["train/d_steps"] == 1
    assert all(torch.isfinite(torch.tensor(metrics[k])) for k in ("train/g_adv", "train/d_loss", "val/d_loss"))
    assert metrics["train/d_r1r2"] > 0
