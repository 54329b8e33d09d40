"""arc-train's checkpoints: reading them back (the checkpoint alone rebuilds the model, no YAML needed) and writing
them so that no crash, kill, full disk or diverged run can leave a partial or broken file in place of a good one."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from arc.errors import NotACheckpointError
from arc.files import atomic_write
from arc.models.wrapper import AudioDiffusionModel
from arc.releases import (
    load_checkpoint_file,
    load_sat_pretransform,
    load_sat_state_dict,
    load_strict,
    sat_weights,
    split_prefix,
)

# The key under which a checkpoint carries the resolved run config (``load_trained_model`` rebuilds from it).
CONFIG_KEY = "arc_config"


def read_training_checkpoint(ckpt_path: str | Path) -> dict:
    """A Lightning checkpoint written by ``arc-train``, read with ``weights_only=True``."""
    path = Path(ckpt_path)
    checkpoint = load_checkpoint_file(path, "a Lightning .ckpt written by arc-train")
    if CONFIG_KEY not in checkpoint:
        raise NotACheckpointError(
            f"{path} has no {CONFIG_KEY!r} entry, so the model cannot be rebuilt from it: it was not written by "
            "arc-train (FlowPretrainModule with run_config). For an official Stable Audio release use "
            "arc.releases.load_stable_audio"
        )
    return checkpoint


def model_state(checkpoint: dict, use_ema: bool, what: str) -> dict[str, torch.Tensor]:
    """The ``AudioDiffusionModel`` state dict inside an arc-train checkpoint (pre-training or ARC: both keep the
    model under ``model.`` and the EMA DiT under ``ema.module.``); with ``use_ema`` the DiT is the EMA one."""
    state = split_prefix(checkpoint["state_dict"], "model.")
    if use_ema:
        ema = split_prefix(checkpoint["state_dict"], "ema.module.")
        if not ema:
            raise ValueError(f"{what} holds no EMA weights (ema.module.*); load it with use_ema=False")
        state.update({f"dit.{k}": v for k, v in ema.items()})
    return state


def load_trained_model(ckpt_path: str | Path, use_ema: bool = True) -> AudioDiffusionModel:
    """Rebuild the model from ``checkpoint["arc_config"]["model"]`` and load its trained weights, strictly.

    With ``use_ema`` the DiT gets the EMA weights (what ``arc-train``'s probes sample with); the conditioners and
    pretransform are the trained ones either way. Returned in eval mode on the CPU.
    """
    checkpoint = read_training_checkpoint(ckpt_path)
    model = instantiate(checkpoint[CONFIG_KEY]["model"])
    load_strict(model, model_state(checkpoint, use_ema, str(ckpt_path)), what=str(ckpt_path))
    return model.eval()


def load_pretrained_weights(model: AudioDiffusionModel, source: str, use_ema: bool = True) -> AudioDiffusionModel:
    """Load pre-trained weights into ``model`` (built from a preset) strictly, and return it.

    ``source`` is an ``arc-train`` checkpoint (a ``.ckpt`` file; its EMA DiT with ``use_ema``) or an official
    stable-audio-tools release (a local directory or hub id, e.g. ``stabilityai/stable-audio-open-small``).
    A checkpoint of another architecture raises ``CheckpointMismatchError`` listing the differing keys.
    """
    if not source:
        raise ValueError(
            "no pre-trained weights given: set pretrained=<arc-train .ckpt, or a stable-audio-tools release "
            "directory or hub id>"
        )
    path = Path(source).expanduser()
    if path.suffix == ".ckpt" and not path.is_dir():
        checkpoint = read_training_checkpoint(path)
        load_strict(model, model_state(checkpoint, use_ema, str(path)), what=str(path))
        return model
    load_sat_state_dict(model, sat_weights(source))
    return model


def load_pretrained_vae(model: AudioDiffusionModel, source: str) -> AudioDiffusionModel:
    """Load only the Oobleck VAE of an official stable-audio-tools release (directory or hub id) into ``model``,
    strictly, and return it: pre-training from scratch on latents encoded by that VAE (``arc-encode
    --stable-audio``) then decodes its samples with the same VAE."""
    load_sat_pretransform(model, sat_weights(source))
    return model


# --- writing: whole files only, never non-finite weights, always the final step ---------------------------------


class NonFiniteWeightsError(RuntimeError):
    """The model holds NaN or infinite values: saving it would replace a good checkpoint with a broken one."""


def non_finite_tensors(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors of ``state`` with any NaN or infinite value."""
    return [k for k, v in state.items() if torch.is_floating_point(v) and not torch.isfinite(v).all()]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``torch.save`` checkpoints, written with ``atomic_write``: a crash, a kill or a full disk
    mid-write leaves the previous file in place and no partial or temporary file behind."""

    def save_checkpoint(self, checkpoint: dict, path: str | Path, storage_options: object | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"AtomicCheckpointIO takes no storage_options, got {storage_options!r}")
        atomic_write(Path(path), lambda f: torch.save(checkpoint, f))


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` with the guarantees arc-train relies on:

    - a model with non-finite weights is never saved (``NonFiniteWeightsError``), so it cannot replace a good
      checkpoint;
    - ``last.ckpt`` is re-pointed atomically (a new link renamed over the old), so it never dangles;
    - the final training step is always saved, whatever ``every_n_train_steps`` is;
    - ``verified_path`` is the newest checkpoint whose weights have since produced finite losses (the next
      training step ran on them): the one to resume from after a divergence, when the newest file may already
      hold the diverged weights. Keep at least two checkpoints (``save_top_k: 2`` over ``monitor: step``) so
      that it stays on disk.
    """

    verified_path: str = ""
    _unverified_path: str = ""  # saved after the last batch; verified when the next batch's losses are finite

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        bad = non_finite_tensors(trainer.lightning_module.state_dict())
        if bad:
            raise NonFiniteWeightsError(
                f"not saving {filepath}: {len(bad)} tensors hold NaN or inf ({', '.join(bad[:5])}); the last good "
                f"checkpoint is {self.verified_path or self.last_model_path or 'none yet'}"
            )
        self._unverified_path = filepath  # before saving: the file records itself as the one to verify on resume
        super()._save_checkpoint(trainer, filepath)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # this batch's losses were computed (finite: a non-finite one stops training before this hook) on the
        # weights of the checkpoint saved after the previous batch
        if self._unverified_path:
            self.verified_path, self._unverified_path = self._unverified_path, ""
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    @staticmethod
    def _link_checkpoint(trainer: L.Trainer, filepath: str, linkpath: str) -> None:
        if trainer.is_global_zero and os.path.abspath(filepath) != os.path.abspath(linkpath):
            link = Path(linkpath)
            tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            try:
                os.symlink(os.path.relpath(filepath, link.parent), tmp)
                os.replace(tmp, link)
            except OSError:  # a filesystem without symbolic links: an atomic copy instead
                with open(filepath, "rb") as source:
                    atomic_write(link, lambda f: shutil.copyfileobj(source, f))
        trainer.strategy.barrier()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._should_skip_saving_checkpoint(trainer):  # the final step was not saved yet
            candidates = self._monitor_candidates(trainer)
            self._save_topk_checkpoint(trainer, candidates)
            self._save_last_checkpoint(trainer, candidates)
        super().on_train_end(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return super().state_dict() | {"verified_path": self.verified_path, "unverified_path": self._unverified_path}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.verified_path = state_dict.get("verified_path", "")
        self._unverified_path = state_dict.get("unverified_path", "")
