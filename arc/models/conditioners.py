"""Conditioners: a frozen T5 text encoder and learned number embedders, as in Stable Audio.

``Conditioners`` turns prompts and durations into the DiT's inputs:
``cross_attn_cond`` = [T5 tokens (L), one token per number] (B, L + n, D), its mask, and
``global_cond`` = the number embeddings concatenated along channels (B, n * D).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from transformers import ByT5Tokenizer, PreTrainedTokenizerBase, T5Config, T5EncoderModel

from arc.errors import InvalidInputError
from arc.hub import pretrained_or_explain

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Conditioning:
    """DiT conditioning for a batch: tokens (B, S, D), their mask (B, S) and the global vector (B, G)."""

    cross_attn_cond: torch.Tensor
    cross_attn_mask: torch.Tensor
    global_cond: torch.Tensor

    def to(self, device: torch.device | str) -> Conditioning:
        return Conditioning(
            self.cross_attn_cond.to(device), self.cross_attn_mask.to(device), self.global_cond.to(device)
        )


def pretrained_t5(name: str = "t5-base") -> tuple[T5EncoderModel, PreTrainedTokenizerBase]:
    """The T5 encoder and tokenizer from the Hugging Face cache (or a local directory)."""
    from transformers import AutoTokenizer

    encoder = pretrained_or_explain(T5EncoderModel.from_pretrained, name)
    tokenizer = pretrained_or_explain(AutoTokenizer.from_pretrained, name)
    return encoder, tokenizer


def tiny_t5(d_model: int = 32, num_layers: int = 2, num_heads: int = 4, seed: int = 0):
    """A small randomly initialised T5 encoder with the byte-level ByT5 tokenizer: fully offline."""
    tokenizer = ByT5Tokenizer()
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=2 * d_model,
        num_layers=num_layers,
        num_heads=num_heads,
    )
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = T5EncoderModel(config)
    return encoder, tokenizer


# the hub's config.json of google-t5/t5-base (what `pretrained_t5("t5-base")` loads)
T5_CONFIGS = {
    "t5-base": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
                    feed_forward_proj="relu", relative_attention_num_buckets=32),
}  # fmt: skip


def random_t5(name: str = "t5-base", seed: int = 0) -> tuple[T5EncoderModel, PreTrainedTokenizerBase]:
    """A T5 encoder of ``name``'s shape with random weights and the byte-level ByT5 tokenizer: for timing offline
    (the conditioner pads every prompt to ``max_length`` tokens, so its cost does not depend on the tokenizer)."""
    if name not in T5_CONFIGS:
        raise ValueError(f"no T5 shape for {name!r}; known: {sorted(T5_CONFIGS)}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        encoder = T5EncoderModel(T5Config(**T5_CONFIGS[name]))
    return encoder, ByT5Tokenizer()


class T5Conditioner(nn.Module):
    """Frozen T5 encoder: prompts -> (B, max_length, output_dim) embeddings (zero at padding) and mask (B, L).

    Prompts longer than ``max_length`` tokens are truncated with a warning; empty prompts are an error
    (the unconditional branch of classifier-free guidance uses zero embeddings, not an empty prompt).
    """

    def __init__(self, t5: tuple[T5EncoderModel, PreTrainedTokenizerBase], max_length: int, output_dim: int):
        super().__init__()
        self.encoder, self.tokenizer = t5
        self.encoder.requires_grad_(False).eval()
        self.max_length = max_length
        width = self.encoder.config.d_model
        # stable-audio-tools projects only when the widths differ.
        self.proj_out = nn.Linear(width, output_dim) if width != output_dim else nn.Identity()
        self.output_dim = output_dim

    def train(self, mode: bool = True) -> T5Conditioner:
        super().train(mode)
        self.encoder.eval()  # frozen: never in dropout mode
        return self

    def tokenize(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids and attention mask, both (B, max_length) int64."""
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str) or not prompt.strip():
                raise InvalidInputError(f"prompt {i} is empty ({prompt!r}): every item needs a text prompt")
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), truncation=False)["input_ids"]]
        too_long = [i for i, n in enumerate(lengths) if n > self.max_length]
        if too_long:
            log.warning(
                "%d prompt(s) longer than %d tokens were truncated (items %s, lengths %s)",
                len(too_long),
                self.max_length,
                too_long,
                [lengths[i] for i in too_long],
            )
        enc = self.tokenizer(
            list(prompts), truncation=True, max_length=self.max_length, padding="max_length", return_tensors="pt"
        )
        return enc["input_ids"], enc["attention_mask"]

    def encode_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L) ids and mask -> (B, L, output_dim) embeddings, zeroed where the mask is 0."""
        with torch.no_grad():
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.proj_out(hidden.float()) * attention_mask[..., None].float()

    def forward(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        device = self.proj_out.weight.device if isinstance(self.proj_out, nn.Linear) else self.encoder.device
        input_ids, mask = (t.to(device) for t in self.tokenize(prompts))
        return self.encode_tokens(input_ids, mask), mask.bool()


class NumberConditioner(nn.Module):
    """A number in [min_val, max_val] -> (B, output_dim): normalise to [0, 1], learned Fourier features, linear."""

    def __init__(self, output_dim: int, min_val: float, max_val: float, fourier_dim: int = 256):
        super().__init__()
        if max_val <= min_val:
            raise ValueError(f"max_val ({max_val}) must exceed min_val ({min_val})")
        self.min_val, self.max_val = float(min_val), float(max_val)
        self.weights = nn.Parameter(torch.randn(fourier_dim // 2))
        self.linear = nn.Linear(fourier_dim + 1, output_dim)

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        x = (values.clamp(self.min_val, self.max_val) - self.min_val) / (self.max_val - self.min_val)
        x = x.to(self.weights.dtype)[:, None]  # (B, 1)
        freqs = 2 * math.pi * x * self.weights[None]  # (B, fourier_dim // 2)
        return self.linear(torch.cat([x, freqs.sin(), freqs.cos()], dim=-1))


class Conditioners(nn.Module):
    """Text conditioner plus named number conditioners (``seconds_total``; ``seconds_start`` for SAO 1.0).

    Every number is both a cross-attention token (after the text tokens, in the given order) and part of the
    global vector, which is how both official Stable Audio Open configurations wire them.
    """

    def __init__(self, text: T5Conditioner, numbers: dict[str, NumberConditioner]):
        super().__init__()
        if not numbers:
            raise ValueError("at least one number conditioner (seconds_total) is required")
        widths = {text.output_dim} | {n.linear.out_features for n in numbers.values()}
        if len(widths) != 1:
            raise ValueError(f"all conditioners must output the same width, got {sorted(widths)}")
        self.text = text
        self.numbers = nn.ModuleDict(numbers)
        self.cond_dim = text.output_dim

    @property
    def global_dim(self) -> int:
        return self.cond_dim * len(self.numbers)

    @property
    def num_tokens(self) -> int:
        return self.text.max_length + len(self.numbers)

    def forward(self, prompts: Sequence[str], numbers: dict[str, torch.Tensor]) -> Conditioning:
        if set(numbers) != set(self.numbers):
            raise ValueError(f"expected numbers {sorted(self.numbers)}, got {sorted(numbers)}")
        tokens, mask = self.text(prompts)
        return self.combine(tokens, mask, numbers)

    def combine(self, tokens: torch.Tensor, mask: torch.Tensor, numbers: dict[str, torch.Tensor]) -> Conditioning:
        """Text tokens (B, L, D) and mask (B, L) plus raw numbers -> the DiT's conditioning."""
        embeds = [conditioner(numbers[key].to(tokens.device)) for key, conditioner in self.numbers.items()]
        number_tokens = torch.stack(embeds, dim=1)  # (B, n, D)
        ones = torch.ones(mask.shape[0], len(embeds), dtype=torch.bool, device=mask.device)
        return Conditioning(
            cross_attn_cond=torch.cat([tokens, number_tokens], dim=1),
            cross_attn_mask=torch.cat([mask.bool(), ones], dim=1),
            global_cond=torch.cat(embeds, dim=-1),
        )
