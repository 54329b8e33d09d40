"""LAION-CLAP's checkpoint layout -> transformers' ClapModel, and the CLAP preprocessing.

``fixtures/laion_clap_fusion_keys.json`` lists the 447 tensors (names, shapes, dtypes) of
``CLAP_Module(enable_fusion=True, amodel="HTSAT-tiny").model.state_dict()`` in laion-clap 1.1.7 — the layout of
``630k-audioset-fusion-best.pt`` — as written by ``eval/parity/parity_clap.py reference`` (with the ``module.``
prefix of the released file).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import ClapModel

from arc.metrics.audio import int16_round_trip, peak_normalize
from arc.metrics.clap import (
    clap_audio_embeddings,
    clap_config,
    clap_feature_extractor,
    laion_to_transformers,
    load_laion_clap,
)
from arc.releases import CheckpointMismatchError

LAION_KEYS = json.loads((Path(__file__).parent / "fixtures" / "laion_clap_fusion_keys.json").read_text())


@pytest.fixture(scope="module")
def laion_checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    gen = torch.Generator().manual_seed(0)
    derived = laion_to_transformers  # integer buffers (relative position indices) are derived, not learned:
    fresh = ClapModel(clap_config()).state_dict()  # take them from a fresh model under their converted names
    state = {}
    for key, (shape, dtype) in LAION_KEYS.items():
        if dtype != "float32":
            (name,) = derived({key: torch.zeros(shape)})
            state[key] = fresh[name].clone() if name in fresh else torch.zeros(shape, dtype=getattr(torch, dtype))
        elif key.endswith("running_var"):
            state[key] = 1 + torch.rand(shape, generator=gen)
        else:
            state[key] = 0.02 * torch.randn(shape, generator=gen)
    path = tmp_path_factory.mktemp("clap") / "630k-audioset-fusion-best.pt"
    torch.save({"state_dict": state}, path)
    return path, state


def test_the_laion_layout_maps_onto_clap_model_one_to_one(laion_checkpoint):
    path, state = laion_checkpoint
    model = load_laion_clap(path)
    qkv = state["module.audio_branch.layers.1.blocks.0.attn.qkv.weight"]
    attention = model.audio_model.audio_encoder.layers[1].blocks[0].attention.self
    assert torch.equal(attention.key.weight, qkv.chunk(3)[1])
    assert torch.equal(model.text_projection.linear2.weight, state["module.text_projection.2.weight"])
    assert torch.equal(model.logit_scale_a, state["module.logit_scale_a"])
    converted = laion_to_transformers(state)
    used = set(converted) & set(model.state_dict())
    assert len(used) == 475  # as transformers' own conversion maps it (EVAL-ORACLES)


def test_a_checkpoint_that_does_not_map_is_a_clear_error(laion_checkpoint, tmp_path):
    _, state = laion_checkpoint
    cut = {k: v for k, v in state.items() if "text_branch.pooler" not in k}
    torch.save({"state_dict": cut}, tmp_path / "cut.pt")
    with pytest.raises(CheckpointMismatchError, match=r"2 missing \(text_model.pooler.dense"):
        load_laion_clap(tmp_path / "cut.pt")


def test_audio_embeddings_are_unit_vectors_and_seeded(laion_checkpoint):
    model = load_laion_clap(laion_checkpoint[0])
    rng = np.random.default_rng(0)
    clips = [0.1 * rng.normal(size=3 * 48000), 0.1 * rng.normal(size=12 * 48000)]
    extractor = clap_feature_extractor()
    a = clap_audio_embeddings(model, extractor, clips, seed=0)
    assert a.shape == (2, 512) and np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)
    assert np.array_equal(a, clap_audio_embeddings(model, extractor, clips, seed=0))  # the 12 s clip's chunks


def test_reference_preprocessing_steps():
    x = np.array([0.5, -0.25, 0.1], dtype=np.float32)
    y = peak_normalize(x)
    assert y.dtype == np.float32 and np.abs(y).max() == pytest.approx(10 ** (-1 / 20))
    assert np.array_equal(
        int16_round_trip(np.array([1.5, -1.0, 0.99999])), np.array([1.0, -1.0, 32766 / 32767], np.float32)
    )
