"""Loading models trained with ``arc-train``: the checkpoint alone is enough, no YAML needed."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate

from arc.errors import NotACheckpointError
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
