"""Composing arc's Hydra configs (``conf/``) from Python, for tests, benchmarks and the sampling script."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def compose_config(config_name: str = "train", overrides: Sequence[str] = ()) -> DictConfig:
    """The composed config ``conf/<config_name>.yaml`` with command-line style ``overrides``."""
    if not (CONF_DIR / f"{config_name}.yaml").is_file():
        raise FileNotFoundError(f"no config {config_name!r} in {CONF_DIR}")
    if GlobalHydra.instance().is_initialized():  # inside an arc entry point, whose search path is CONF_DIR
        return compose(config_name=config_name, overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def build_model(preset: str = "tiny", overrides: Sequence[str] = ()):
    """Instantiate the model preset ``conf/model/<preset>.yaml`` (random weights)."""
    cfg = compose_config("train", [f"model={preset}", *overrides])
    return instantiate(cfg.model)
