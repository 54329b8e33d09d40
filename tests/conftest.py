"""Shared fixtures: the REAL Hydra model configs, composed at tiny size on CPU."""

import pytest
import torch

from arc.config import build_model


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)


@pytest.fixture
def tiny_model():
    return build_model("tiny").eval()
