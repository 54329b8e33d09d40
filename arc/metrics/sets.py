"""The metric sets of ``arc-eval``: what is computed from each audio file (its *features*), what a reference set
is summarised into, and how a system's features become its numbers.

- ``AudioMetrics``: FD_openl3, KL_passt, CLAP score, CCDS and R_passt / C_passt, prepared as stable-audio-metrics
  prepares them (SPEC 6, ``arc.metrics.embed``).
- ``ProbeMetrics``: the tones probes (SPEC 8, ``arc.metrics.probes``): attribute accuracy, probe FD, diversity.

Features and reference summaries are dicts of NumPy arrays, so they are cached as ``.npz`` files (no pickle).
``AudioMetrics``' table metrics (FD, KL, CLAP score, R/C) use each prompt's first rendering, one clip per prompt
as in the published tables (FD and R/C depend on the number of clips); the probes score every rendering, as the
training probes do. The diversity metrics (CCDS, probe diversity) use every rendering of the prompts that have
two or more.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import ClapModel, PreTrainedTokenizerBase

from arc.data.tones import ToneAttributes
from arc.metrics import embed, probes
from arc.metrics.accumulators import (
    CCDS,
    ClapScore,
    FrechetDistanceToReference,
    KLToReference,
    RecallCoverageToReference,
)
from arc.metrics.clap import clap_feature_extractor, clap_text_embeddings
from arc.metrics.openl3 import OpenL3
from arc.metrics.passt import PasstClassifier
from arc.metrics.statistics import ccds, embedding_statistics, frechet_distance

Arrays = dict[str, np.ndarray]
CLAP_TEXT_MAX_LENGTH = 77  # laion-clap's tokenize(): padding="max_length", truncation=True, max_length=77


@dataclass(frozen=True)
class Clip:
    """One evaluated file: the prompt it renders (``id``, ``caption``), which rendering (0 = the first seed) and
    its features."""

    id: str
    caption: str
    rendering: int
    features: Arrays


def fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state (names, shapes, dtypes and values): which weights computed a cached feature."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _first_renderings(clips: Sequence[Clip]) -> list[Clip]:
    return [c for c in clips if c.rendering == 0]


def _items(clips: Sequence[Clip]) -> dict[str, np.ndarray]:
    """The per-item keys that say which clip a per-item value belongs to, and the caption it renders."""
    return {
        "id": np.array([c.id for c in clips]),
        "rendering": np.array([c.rendering for c in clips]),
        "caption": np.array([c.caption for c in clips]),
    }


def _by_prompt(clips: Sequence[Clip], key: str) -> list[np.ndarray]:
    """``features[key]`` of every rendering, grouped by prompt id, for the prompts with two or more."""
    groups: dict[str, list[np.ndarray]] = defaultdict(list)
    for clip in clips:
        groups[clip.id].append(clip.features[key])
    return [np.stack(group) for group in groups.values() if len(group) >= 2]


class AudioMetrics(nn.Module):
    """FD_openl3 (``openl3``), KL_passt and R_passt / C_passt (``passt``), CLAP score and CCDS (``clap`` with its
    RoBERTa ``clap_tokenizer``). A model left out (``None``) leaves its metrics out. ``clap_seed`` seeds the
    reference's random chunking of clips over 10 s; ``recall_k`` is the k of recall and coverage."""

    name = "audio"

    def __init__(
        self,
        openl3: OpenL3 | None,
        passt: PasstClassifier | None,
        clap: ClapModel | None,
        clap_tokenizer: PreTrainedTokenizerBase | None,
        clap_seed: int = 0,
        recall_k: int = 5,
    ):
        super().__init__()
        if (clap is None) != (clap_tokenizer is None):
            raise ValueError("the CLAP model and its tokenizer go together: give both or neither")
        if openl3 is None and passt is None and clap is None:
            raise ValueError("AudioMetrics needs at least one of its models (openl3, passt, clap)")
        self.openl3, self.passt, self.clap, self.clap_tokenizer = openl3, passt, clap, clap_tokenizer
        self.clap_extractor = clap_feature_extractor() if clap is not None else None
        self.clap_seed, self.recall_k = clap_seed, recall_k

    def settings(self, reference: bool) -> dict:
        """Everything the features of a file depend on (cache keys): the models' weights and the settings."""
        models = {"openl3": self.openl3, "passt": self.passt} | ({} if reference else {"clap": self.clap})
        fingerprints = {name: fingerprint(model) for name, model in models.items() if model is not None}
        return {"set": self.name, "models": fingerprints, "clap_seed": self.clap_seed}

    def features(self, audio: np.ndarray, sample_rate: int, reference: bool) -> Arrays:
        """A clip's OpenL3 frames (frames, 1024), PaSST probabilities (527,) and embedding (768,), and unless it
        is a reference clip (no text to compare with), its CLAP audio embedding (512,)."""
        out = {}
        if self.openl3 is not None:
            out["openl3"] = embed.openl3_embeddings(self.openl3, audio, sample_rate)
        if self.passt is not None:
            out["passt_probabilities"], out["passt_embedding"] = embed.passt_clip_outputs(
                self.passt, audio, sample_rate
            )
        if self.clap is not None and not reference:
            out["clap"] = embed.clap_clip_embedding(self.clap, self.clap_extractor, audio, sample_rate, self.clap_seed)
        return out

    def summarize_reference(self, clips: Sequence[Clip]) -> Arrays:
        """The reference statistics: OpenL3 mean and covariance over all frames of all files, PaSST probabilities
        by id (first renderings) and the PaSST embeddings of all files."""
        out = {}
        if self.openl3 is not None:
            out["openl3_mu"], out["openl3_sigma"] = embedding_statistics(
                np.concatenate([c.features["openl3"] for c in clips])
            )
        if self.passt is not None:
            first = _first_renderings(clips)
            out["passt_ids"] = np.array([c.id for c in first])
            out["passt_probabilities"] = np.stack([c.features["passt_probabilities"] for c in first])
            out["passt_embeddings"] = np.stack([c.features["passt_embedding"] for c in clips])
        return out

    @torch.no_grad()
    def _text_embeddings(self, captions: Sequence[str], batch: int = 64) -> np.ndarray:
        chunks = []
        for start in range(0, len(captions), batch):
            tokens = self.clap_tokenizer(
                list(captions[start : start + batch]), padding="max_length", truncation=True,
                max_length=CLAP_TEXT_MAX_LENGTH, return_tensors="pt",
            )  # fmt: skip
            chunks.append(clap_text_embeddings(self.clap, tokens["input_ids"], tokens["attention_mask"]))
        return np.concatenate(chunks)

    def score(self, clips: Sequence[Clip], reference: Arrays) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """``(metrics, per_item)``: the set's numbers for one system, and per first rendering the values behind
        them that are per clip (``id``, ``rendering``, ``caption`` and ``clap``: the cosine with that caption)."""
        first = _first_renderings(clips)
        metrics: dict[str, float] = {}
        per_item: dict[str, np.ndarray] = {}
        if self.openl3 is not None and "openl3_mu" in reference:
            fd = FrechetDistanceToReference(reference["openl3_mu"], reference["openl3_sigma"])
            for clip in first:
                fd.update(torch.from_numpy(clip.features["openl3"]))
            metrics["fd_openl3"] = fd.compute()
        if self.passt is not None and "passt_ids" in reference:
            refs = dict(zip(reference["passt_ids"].tolist(), reference["passt_probabilities"], strict=True))
            kl = KLToReference(refs)
            kl.update(
                [c.id for c in first], torch.from_numpy(np.stack([c.features["passt_probabilities"] for c in first]))
            )
            metrics["kl_passt"] = kl.compute()
            metrics["kl_passt_unmatched"] = float(len(kl.unmatched))
        if self.passt is not None and "passt_embeddings" in reference:
            rc = RecallCoverageToReference(reference["passt_embeddings"], self.recall_k)
            rc.update(torch.from_numpy(np.stack([c.features["passt_embedding"] for c in first])))
            metrics["recall_passt"], metrics["coverage_passt"] = rc.compute()
        if self.clap is not None:
            audio = np.stack([c.features["clap"] for c in first])
            text = self._text_embeddings([c.caption for c in first])
            score = ClapScore()
            score.update(torch.from_numpy(audio), torch.from_numpy(text))
            metrics["clap_score"] = score.compute()
            per_item["clap"] = (audio * text).sum(axis=1) / (
                np.linalg.norm(audio, axis=1) * np.linalg.norm(text, axis=1)
            )
            groups = _by_prompt(clips, "clap")
            if groups:
                diversity = CCDS()
                for group in groups:
                    diversity.update(torch.from_numpy(group))
                metrics["ccds"] = diversity.compute()
        return metrics, _items(first) | per_item


class ProbeMetrics(nn.Module):
    """The tones probes (``arc.metrics.probes``) on tones captions: attribute accuracy per attribute (plus
    ``acc_mean`` and ``acc_all``), the probe FD of the spectral embedding against the reference, diversity
    (``ccds`` on that embedding) and ``clip_rate``, the share of clips at full scale (``probes.is_clipped``).
    Signal analysis only: no weights."""

    name = "probes"

    def settings(self, reference: bool) -> dict:
        return {"set": self.name, "embedding": probes.spectral_embedding.__doc__}

    def features(self, audio: np.ndarray, sample_rate: int, reference: bool) -> Arrays:
        stereo = audio if audio.shape[0] == 2 else np.repeat(audio, 2, axis=0)
        measured = probes.measure_attributes(stereo, sample_rate)
        return {
            "spectral": probes.spectral_embedding(stereo, sample_rate),
            "attributes": np.array([getattr(measured, name) for name in probes.ATTRIBUTES]),
            "clipped": np.array(probes.is_clipped(audio)),
        }

    def summarize_reference(self, clips: Sequence[Clip]) -> Arrays:
        mu, sigma = embedding_statistics(np.stack([c.features["spectral"] for c in clips]))
        return {"spectral_mu": mu, "spectral_sigma": sigma}

    def score(self, clips: Sequence[Clip], reference: Arrays) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """Accuracy and FD over every rendering (as the training probes and the earlier ``arc-probe`` tables
        computed them); per item: whether each attribute is right (``acc_waveform``, ... as 1 or 0) and
        ``acc_mean``, the share of its four attributes that are right."""
        measured = [ToneAttributes(*c.features["attributes"].tolist()) for c in clips]
        hits = probes.attribute_hits(measured, [c.caption for c in clips])  # (clips, 4)
        metrics = {f"acc_{name}": value for name, value in probes.accuracy_from_hits(hits).items()}
        if "spectral_mu" in reference:
            stats = embedding_statistics(np.stack([c.features["spectral"] for c in clips]))
            metrics["fd"] = frechet_distance(*stats, reference["spectral_mu"], reference["spectral_sigma"])
        groups = _by_prompt(clips, "spectral")
        if groups:
            metrics["diversity"] = ccds(groups)
        clipped = np.array([bool(c.features["clipped"]) for c in clips])
        metrics["clip_rate"] = float(clipped.mean())
        per_attribute = {f"acc_{name}": hits[:, i].astype(np.float64) for i, name in enumerate(probes.ATTRIBUTES)}
        return metrics, _items(clips) | per_attribute | {"acc_mean": hits.mean(axis=1), "clipped": clipped}
