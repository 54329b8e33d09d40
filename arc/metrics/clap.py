"""LAION-CLAP ``630k-audioset-fusion-best.pt`` (HTSAT-tiny audio encoder with fusion, RoBERTa text encoder) as
transformers' ``ClapModel``, loaded from LAION's own checkpoint, and stable-audio-metrics' CLAP preprocessing.

LAION's state dict maps one to one onto ``ClapModel`` with a few renames and the audio attention's fused ``qkv``
split into query, key and value; the tensors only LAION has (its STFT/mel extractor, ``tscam_conv``, ``head``,
attention-mask buffers, the unused ``*_transform`` heads) are dropped by name, the buffers only transformers has
(position and token-type ids) keep their defaults; anything else that does not match is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, ClapConfig, ClapFeatureExtractor, ClapModel, PreTrainedTokenizerBase

from arc.hub import pretrained_or_explain
from arc.metrics.audio import int16_round_trip, peak_normalize
from arc.metrics.weights import weight_path
from arc.releases import CheckpointMismatchError, load_checkpoint_file

SAMPLE_RATE = 48000
# substring renames, applied in this order to every key
_RENAMES = [
    ("text_branch", "text_model"),
    ("audio_branch", "audio_model.audio_encoder"),
    ("attn", "attention.self"),
    ("self.proj", "output.dense"),
    ("attention.self_mask", "attn_mask"),
    ("mlp.fc1", "intermediate.dense"),
    ("mlp.fc2", "output.dense"),
    ("norm1", "layernorm_before"),
    ("norm2", "layernorm_after"),
    ("bn0", "batch_norm"),
]
_LAION_ONLY = re.compile(
    r"(spectrogram_extractor|logmel_extractor|tscam_conv|\.head\.|attn_mask|_transform\.|embeddings\.position_ids)"
)
_TRANSFORMERS_ONLY = {"text_model.embeddings.position_ids", "text_model.embeddings.token_type_ids"}


def laion_to_transformers(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LAION-CLAP key names -> ``ClapModel``'s (the LAION-only tensors are kept, under their renamed keys)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for old, new in _RENAMES:
            key = key.replace(old, new)
        key = re.sub(r"_projection\.(\d+)\.", lambda m: f"_projection.linear{1 if m[1] == '0' else 2}.", key)
        if ".qkv." in key:  # HTSAT's fused attention input projection
            for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0), strict=True):
                out[key.replace(".qkv.", f".{name}.")] = part
        else:
            out[key] = value
    return out


def clap_config() -> ClapConfig:
    """``ClapModel``'s configuration of the fused 630k checkpoint (RoBERTa's LayerNorm eps is LAION's 1e-5)."""
    return ClapConfig(audio_config={"enable_fusion": True}, text_config={"layer_norm_eps": 1e-5})


def load_laion_clap(path: str | Path | None = None) -> ClapModel:
    """LAION's ``630k-audioset-fusion-best.pt`` (from the metric weight cache unless ``path`` is given) in a
    ``ClapModel``; every tensor is accounted for (see the module docstring)."""
    path = weight_path("laion_clap_fusion") if path is None else Path(path)
    blob = load_checkpoint_file(path, "LAION-CLAP's 630k-audioset-fusion-best.pt")
    converted = laion_to_transformers(blob.get("state_dict", blob))
    model = ClapModel(clap_config())
    expected = model.state_dict()
    kept = {k: v for k, v in converted.items() if not _LAION_ONLY.search(k)}
    unexpected = sorted(set(kept) - set(expected))
    missing = sorted(set(expected) - set(kept) - _TRANSFORMERS_ONLY)
    mis_shaped = sorted(k for k in set(kept) & set(expected) if kept[k].shape != expected[k].shape)
    if unexpected or missing or mis_shaped:
        raise CheckpointMismatchError(
            f"{path} does not map onto ClapModel: {len(missing)} missing ({', '.join(missing[:5])}), "
            f"{len(unexpected)} unexpected ({', '.join(unexpected[:5])}), {len(mis_shaped)} mis-shaped "
            f"({', '.join(mis_shaped[:5])})"
        )
    model.load_state_dict(kept, strict=False)
    return model.eval()


def clap_feature_extractor() -> ClapFeatureExtractor:
    """transformers' CLAP features with LAION's fusion settings (its ``audio_cfg``: 48 kHz, 10 s, 64 mels from
    50 Hz to 14 kHz, window 1024, hop 480; repeat-padding, fusion)."""
    return ClapFeatureExtractor(
        feature_size=64,
        sampling_rate=SAMPLE_RATE,
        hop_length=480,
        max_length_s=10,
        fft_window_size=1024,
        frequency_min=50,
        frequency_max=14000,
        truncation="fusion",
        padding="repeatpad",
    )


@torch.no_grad()
def clap_audio_embeddings(
    model: ClapModel, extractor: ClapFeatureExtractor, clips: Sequence[np.ndarray], seed: int = 0
) -> np.ndarray:
    """Unit-norm (N, 512) audio embeddings of mono 48 kHz clips, preprocessed as stable-audio-metrics' CLAP score
    does: peak -1 dBFS, int16 round trip, LAION's fusion features. Clips over 10 s are chunked at random by the
    fusion features (NumPy's global generator): it is seeded with ``seed`` first, so a run is reproducible (the
    reference leaves it unseeded)."""
    np.random.seed(seed)
    prepared = [int16_round_trip(peak_normalize(np.asarray(c, dtype=np.float32))) for c in clips]
    features = extractor(prepared, sampling_rate=SAMPLE_RATE, return_tensors="pt")
    # transformers marks a random clip "longer" when none is (a training trick); LAION's inference does not
    is_longer = torch.tensor([[len(c) > extractor.nb_max_samples] for c in prepared])
    device = next(model.parameters()).device
    outputs = model.get_audio_features(
        input_features=features["input_features"].to(device), is_longer=is_longer.to(device)
    )
    return outputs.pooler_output.cpu().double().numpy()  # projected and L2-normalised by transformers


@torch.no_grad()
def clap_text_embeddings(model: ClapModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> np.ndarray:
    """Unit-norm (N, 512) text embeddings of RoBERTa token ids (``laion/clap-htsat-fused``'s tokenizer, or
    LAION's ``roberta-base`` one: the same vocabulary)."""
    device = next(model.parameters()).device
    outputs = model.get_text_features(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device))
    return outputs.pooler_output.cpu().double().numpy()  # projected and L2-normalised by transformers


def clap_tokenizer(name: str = "roberta-base") -> PreTrainedTokenizerBase:
    """LAION-CLAP's text tokenizer (``roberta-base``; ``laion/clap-htsat-fused`` has the same vocabulary) from a
    local directory or the Hugging Face cache."""
    return pretrained_or_explain(AutoTokenizer.from_pretrained, name)
