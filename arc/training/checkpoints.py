"""Loading models trained with ``arc-train``: the checkpoint alone is enough, no YAML needed."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.utils import instantiate

from arc.checkpoint import load_strict, split_prefix
from arc.models.wrapper import AudioDiffusionModel
from arc.training.pretrain import CONFIG_KEY


def read_training_checkpoint(ckpt_path: str | Path) -> dict:
    """A Lightning checkpoint written by ``arc-train``, read with ``weights_only=True``."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if CONFIG_KEY not in checkpoint:
        raise ValueError(
            f"{path} has no {CONFIG_KEY!r} entry, so the model cannot be rebuilt from it: it was not written by "
            "arc-train (FlowPretrainModule with run_config). For an official Stable Audio release use "
            "arc.checkpoint.load_stable_audio"
        )
    return checkpoint


def load_trained_model(ckpt_path: str | Path, use_ema: bool = True) -> AudioDiffusionModel:
    """Rebuild the model from ``checkpoint["arc_config"]["model"]`` and load its trained weights, strictly.

    With ``use_ema`` the DiT gets the EMA weights (what ``arc-train``'s probes sample with); the conditioners and
    pretransform are the trained ones either way. Returned in eval mode on the CPU.
    """
    checkpoint = read_training_checkpoint(ckpt_path)
    model = instantiate(checkpoint[CONFIG_KEY]["model"])
    state = split_prefix(checkpoint["state_dict"], "model.")
    if use_ema:
        ema = split_prefix(checkpoint["state_dict"], "ema.module.")
        if not ema:
            raise ValueError(f"{ckpt_path} holds no EMA weights (ema.module.*); load it with use_ema=False")
        state.update({f"dit.{k}": v for k, v in ema.items()})
    load_strict(model, state, what=str(ckpt_path))
    return model.eval()
