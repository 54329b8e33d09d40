"""Shared fixtures: the REAL Hydra configs, composed at tiny size on CPU."""

from pathlib import Path

import pytest
import torch

from arc.cli.train import instantiate_run
from arc.config import build_model, compose_config

# tiny data on top of an experiment, so that a whole run takes seconds on a 2-core CPU
TINY_DATA = ["data.train.size=8", "data.val.size=4", "data.batch_size=4", "callbacks.progress_bar=null"]


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture
def tiny_model():
    return build_model("tiny").eval()


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory) -> Path:
    """A tones pre-training checkpoint after 2 steps (the real experiment config, tiny data)."""
    out = tmp_path_factory.mktemp("pretrain")
    overrides = ["experiment=tones_pretrain", *TINY_DATA, "~callbacks.probe", "trainer.max_steps=2"]
    datamodule, module, trainer = instantiate_run(compose_config("train", [*overrides, f"paths.output_dir={out}"]))
    trainer.fit(module, datamodule=datamodule)
    return out / "checkpoints" / "last.ckpt"
