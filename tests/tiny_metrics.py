"""Tiny random metric models for arc-eval's end-to-end tests, put in place of the official loaders through the
metric set's config (``metrics.passt._target_=tests.tiny_metrics.passt``). The official-size weight files are
hundreds of MB; their layouts are tested against the loaders in ``test_metrics_*.py``."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import ByT5Tokenizer, ClapConfig, ClapModel, RobertaConfig

from arc.metrics.passt import Passt, PasstClassifier
from tests.official_layouts import write_hub_snapshot


def passt() -> PasstClassifier:
    """PaSST at 1 block of width 32 (527 classes, as the references' probability files)."""
    torch.manual_seed(0)
    return PasstClassifier(Passt(embed_dim=32, depth=1, num_heads=2)).eval()


def clap() -> ClapModel:
    """ClapModel with a 1-layer text encoder over ByT5's 384 ids and a 4-stage HTSAT of width 16, fusion on."""
    torch.manual_seed(0)
    config = ClapConfig(
        text_config=dict(vocab_size=384, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, layer_norm_eps=1e-5, pad_token_id=0),
        audio_config=dict(enable_fusion=True, patch_embeds_hidden_size=16, depths=[1, 1, 1, 1],
                          num_attention_heads=[1, 1, 1, 1], hidden_size=128),
        projection_dim=16,
    )  # fmt: skip
    return ClapModel(config).eval()


def write_hub_tokenizer(cache: Path, repo_id: str = "roberta-base") -> Path:
    """The vocabulary-free ByT5 tokenizer under the official id ``roberta-base`` in a hub cache, so the real
    ``arc.metrics.clap.clap_tokenizer`` path (hub cache, offline) runs."""

    def save(directory: Path) -> None:
        RobertaConfig().save_pretrained(directory)  # the repo's config.json, which AutoTokenizer reads first
        ByT5Tokenizer().save_pretrained(directory)

    return write_hub_snapshot(cache, repo_id, save)
