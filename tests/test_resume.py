"""Training never loses work: runs SIGKILLed mid-epoch resume to the uninterrupted result bit for bit; a diverged
run leaves (and names) a checkpoint that recovers; checkpoint files are whole or absent; the last step is saved;
a learning rate given on resume takes effect. Real Trainers, real subprocesses, the REAL configs at tiny size."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from arc.cli.train import instantiate_run
from arc.config import compose_config
from arc.files import FileWriteError
from arc.training.checkpoints import AtomicCheckpointIO, non_finite_tensors
from arc.training.steps import NonFiniteLossError
from tests.conftest import TINY_DATA

NO_ARC_PROBES = ["~callbacks.pingpong8", "~callbacks.pingpong4", "~callbacks.pingpong2", "~callbacks.pingpong1"]
# 24 items in batches of 4: 6 batches an epoch, 2 epochs, a checkpoint after every step
RUN = [*TINY_DATA, "data.train.size=24", "trainer.max_epochs=2", "callbacks.model_checkpoint.every_n_train_steps=1"]


def pretrain_overrides(*extra: str) -> list[str]:
    return ["experiment=tones_pretrain", "~callbacks.probe", *RUN, *extra]


def arc_overrides(pretrained: Path, *extra: str) -> list[str]:
    return ["experiment=tones_arc", f"pretrained={pretrained}", *NO_ARC_PROBES, *RUN, *extra]


def fit(overrides: list[str], out: Path, ckpt_path: Path | None = None) -> L.LightningModule:
    datamodule, module, trainer = instantiate_run(compose_config("train", [*overrides, f"paths.output_dir={out}"]))
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return module


def step_of(path: Path) -> int:
    return int(re.search(r"step(\d+)", path.resolve().name).group(1))


def killed_mid_epoch(overrides: list[str], out: Path, after_step: int) -> Path:
    """Run arc-train in a subprocess and SIGKILL it once a checkpoint past ``after_step`` exists; return the
    last.ckpt left behind (asserted to be mid-epoch)."""
    cmd = [sys.executable, "-m", "arc.cli.train", *overrides, f"paths.output_dir={out}", f"hydra.run.dir={out}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(step_of(p) > after_step for p in (out / "checkpoints").glob("epoch*.ckpt")):
                os.kill(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"not killed (exit {proc.returncode}): {proc.stderr.read()[-2000:]}"
    last = out / "checkpoints" / "last.ckpt"
    assert step_of(last) % 6 != 0, f"{last.resolve().name} is at an epoch end; the test wants mid-epoch"
    return last


def assert_same_final_state(a: Path, b: Path) -> None:
    """Two checkpoints hold exactly the same model, EMA (and its update count), optimiser states and counters."""
    ca, cb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    sa, sb = ca["state_dict"], cb["state_dict"]
    assert sa.keys() == sb.keys()
    differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not differ, f"{len(differ)} tensors differ, e.g. {differ[:3]}"
    assert ca["global_step"] == cb["global_step"] and ca["epoch"] == cb["epoch"]
    for oa, ob in zip(ca["optimizer_states"], cb["optimizer_states"], strict=True):
        assert oa["param_groups"] == ob["param_groups"]
        for key in oa["state"]:
            assert all(torch.equal(oa["state"][key][n], ob["state"][key][n]) for n in oa["state"][key])
    assert ca.get("arc_step_counters") == cb.get("arc_step_counters")


@pytest.mark.slow
def test_pretraining_killed_mid_epoch_resumes_to_the_uninterrupted_run(tmp_path):
    fit(pretrain_overrides(), tmp_path / "straight")
    last = killed_mid_epoch(pretrain_overrides(), tmp_path / "killed", after_step=2)
    fit(pretrain_overrides(), tmp_path / "killed", ckpt_path=last)
    straight, resumed = (tmp_path / d / "checkpoints" / "last.ckpt" for d in ("straight", "killed"))
    assert step_of(straight) == step_of(resumed) == 12  # the final step is saved
    assert_same_final_state(straight, resumed)


@pytest.mark.slow
def test_arc_killed_mid_epoch_resumes_to_the_uninterrupted_run(pretrained, tmp_path):
    fit(arc_overrides(pretrained), tmp_path / "straight")
    last = killed_mid_epoch(arc_overrides(pretrained), tmp_path / "killed", after_step=2)
    fit(arc_overrides(pretrained), tmp_path / "killed", ckpt_path=last)
    straight, resumed = (tmp_path / d / "checkpoints" / "last.ckpt" for d in ("straight", "killed"))
    assert_same_final_state(straight, resumed)


def test_the_pretraining_ema_in_a_checkpoint_matches_its_weights_step(tmp_path):
    """The EMA is updated right after each optimiser step, before the checkpoint hook: the saved EMA has seen
    every saved step."""
    fit(pretrain_overrides("trainer.max_epochs=1", "trainer.max_steps=3"), tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3 and int(checkpoint["state_dict"]["ema.num_updates"]) == 3


class Poison(L.Callback):
    """``action(module)`` at the start of the batch at ``global_step == at`` (``when="start"``), or at the end of
    that step's batch, after its update and before the checkpoint callback saves it (``when="end"``: checkpoint
    callbacks run last)."""

    def __init__(self, at: int, action, when: str = "start"):
        self.at, self.action, self.when = at, action, when

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.when == "start" and trainer.global_step == self.at:
            with torch.no_grad():
                self.action(module)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if self.when == "end" and trainer.global_step == self.at:
            with torch.no_grad():
                self.action(module)


def test_nan_pretraining_stops_and_leaves_the_previous_finite_checkpoint(tmp_path):
    overrides = pretrain_overrides("trainer.max_epochs=1")
    datamodule, module, trainer = instantiate_run(
        compose_config("train", [*overrides, f"paths.output_dir={tmp_path}"])
    )
    trainer.callbacks.append(Poison(3, lambda m: m.model.dit.project_in.weight.fill_(float("nan"))))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at pre-training step 3.*ckpt_path=.*step0000002"):
        trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert step_of(last) == 3  # written after step 3's update, before the poisoned batch
    assert not non_finite_tensors(torch.load(last, weights_only=True)["state_dict"])


def test_a_non_finite_model_is_never_saved_over_a_finite_checkpoint(tmp_path):
    """A NaN lr makes the weights NaN while the loss of the step that applied it is still finite."""
    datamodule, module, trainer = instantiate_run(
        compose_config("train", [*pretrain_overrides("trainer.max_epochs=1"), f"paths.output_dir={tmp_path}"])
    )

    class PoisonLr(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == 2:
                trainer.optimizers[0].param_groups[0]["lr"] = float("nan")

    trainer.callbacks.append(PoisonLr())
    with pytest.raises(Exception, match="not saving .*step0000003.*NaN or inf.*last good checkpoint is .*step0000002"):
        trainer.fit(module, datamodule=datamodule)
    files = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert files == ["epoch000-step0000001.ckpt", "epoch000-step0000002.ckpt", "last.ckpt"]
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 2


def test_an_arc_blowup_names_a_checkpoint_that_recovers_with_a_lower_lr(pretrained, tmp_path):
    def blow_up_d(module):  # D's weights explode in one update: huge but finite, so the step's checkpoint is saved
        for conv in module.discriminator.head.modules():
            if hasattr(conv, "parametrizations"):
                conv.parametrizations.weight.original0.mul_(1e8)

    overrides = arc_overrides(pretrained, "trainer.max_epochs=1")
    datamodule, module, trainer = instantiate_run(
        compose_config("train", [*overrides, f"paths.output_dir={tmp_path}"])
    )
    trainer.callbacks.append(Poison(3, blow_up_d, when="end"))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(module, datamodule=datamodule)
    last = tmp_path / "checkpoints" / "last.ckpt"
    assert step_of(last) == 3  # last.ckpt holds the blown-up D: resuming from it would fail again at once
    named = Path(re.search(r"ckpt_path=(\S+)", str(err.value)).group(1))
    assert named.is_file() and step_of(named) == 2  # the newest checkpoint whose weights gave finite losses
    resumed = fit([*overrides, "module.d_optimizer.lr=1.0e-5"], tmp_path / "resumed", ckpt_path=named)
    assert resumed.d_steps + resumed.g_steps == 6  # trained on to the end of the epoch
    assert resumed.trainer.optimizers[1].param_groups[0]["lr"] == 1.0e-5


def test_a_failed_write_leaves_no_partial_checkpoint_and_no_temp_file(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "run.ckpt"
    io.save_checkpoint({"x": torch.ones(3)}, target)
    good = target.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")  # ENOSPC, mid-write

    original = torch.save
    torch.save = lambda obj, f: (f.write(b"PK partial"), fail())
    try:
        with pytest.raises(FileWriteError, match=f"no space left in {tmp_path}"):
            io.save_checkpoint({"x": torch.zeros(3)}, target)
    finally:
        torch.save = original
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt"]


def test_the_final_step_is_saved_whatever_the_checkpoint_interval(tmp_path):
    fit(
        pretrain_overrides(
            "trainer.max_epochs=-1", "trainer.max_steps=10", "callbacks.model_checkpoint.every_n_train_steps=7"
        ),
        tmp_path,
    )
    assert step_of(tmp_path / "checkpoints" / "last.ckpt") == 10


def test_a_learning_rate_given_on_resume_takes_effect(tmp_path):
    fit(pretrain_overrides("trainer.max_epochs=1"), tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    resumed = fit(pretrain_overrides("trainer.max_epochs=2", "module.optimizer.lr=1.0e-5"), tmp_path, last)
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == 1.0e-5
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert final["optimizer_states"][0]["param_groups"][0]["lr"] == 1.0e-5
