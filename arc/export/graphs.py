"""The three exported graphs of SPEC 7 as small wrapper modules around arc's models, with the surgery each needs
for static-shape conversion (no changes to ``arc.models``):

- conditioners: ``input_ids`` int32 [1, L], ``attention_mask`` int32 [1, L], ``seconds_total`` float [1] ->
  ``cross_attn_cond`` [1, S, D], ``cross_attn_mask`` float [1, S], ``global_cond`` [1, G];
- dit: ``x`` [1, C, T], ``t`` [1], ``cross_attn_cond`` [1, S, D], ``global_cond`` [1, G] -> ``v`` [1, C, T];
- decoder: ``latents`` [1, C, T] -> ``audio`` [channels, samples].

Every graph returns a dict, so the converted files name their outputs; inputs are keyword arguments, so they are
named too (a ``.tflite`` signature lists them sorted by name: look them up by name, never by position).
"""

from __future__ import annotations

import torch
from torch import nn

from arc.models.conditioners import Conditioners
from arc.models.dit import DiffusionTransformer
from arc.models.pretransforms import OobleckPretransform, Pretransform
from arc.models.wrapper import AudioDiffusionModel


class ConditionersGraph(nn.Module):
    """Token ids and the duration -> the DiT's conditioning (the T5 encoder, its projection, the number
    conditioner). The mask comes out as float (1 at real tokens) for runtimes without bool tensors."""

    def __init__(self, conditioners: Conditioners):
        super().__init__()
        if set(conditioners.numbers) != {"seconds_total"}:
            numbers = sorted(conditioners.numbers)
            raise ValueError(
                f"the export contract (SPEC 7) conditions on seconds_total only; this model has {numbers}"
            )
        self.conditioners = conditioners

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, seconds_total: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        tokens = self.conditioners.text.encode_tokens(input_ids.long(), attention_mask.long())
        cond = self.conditioners.combine(tokens, attention_mask.bool(), {"seconds_total": seconds_total})
        return {
            "cross_attn_cond": cond.cross_attn_cond,
            "cross_attn_mask": cond.cross_attn_mask.float(),
            "global_cond": cond.global_cond,
        }


class DiTGraph(nn.Module):
    """One velocity evaluation. The sequence length is fixed by the example input, so the rotary table the DiT
    computes from it is a constant of the traced graph (folded by the converters)."""

    def __init__(self, dit: DiffusionTransformer):
        super().__init__()
        self.dit = dit

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, cross_attn_cond: torch.Tensor, global_cond: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        return {"v": self.dit(x, t, cross_attn_cond, global_cond)}


class DecoderGraph(nn.Module):
    """Latents -> audio (channels, samples) of one clip; Oobleck's weight norm folded (in place: export a model
    you are done training)."""

    def __init__(self, pretransform: Pretransform):
        super().__init__()
        oobleck = isinstance(pretransform, OobleckPretransform)
        self.pretransform = pretransform.fold_weight_norm() if oobleck else pretransform

    def forward(self, latents: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"audio": self.pretransform.decode(latents)[0]}


def example_inputs(model: AudioDiffusionModel) -> dict[str, dict[str, torch.Tensor]]:
    """Fixed inputs of each graph at the model's shapes (seeded): conversion samples and parity inputs."""
    generator = torch.Generator().manual_seed(0)
    L, S = model.conditioners.text.max_length, model.conditioners.num_tokens
    D, G = model.conditioners.cond_dim, model.conditioners.global_dim
    C, T = model.latent_shape
    ids = torch.randint(3, 200, (1, L), generator=generator, dtype=torch.int32)
    mask = torch.zeros(1, L, dtype=torch.int32)
    mask[:, : L // 2] = 1
    return {
        "conditioners": {"input_ids": ids * mask, "attention_mask": mask,
                         "seconds_total": torch.tensor([model.max_seconds], dtype=torch.float32)},
        "dit": {"x": torch.randn(1, C, T, generator=generator), "t": torch.tensor([0.7]),
                "cross_attn_cond": torch.randn(1, S, D, generator=generator),
                "global_cond": torch.randn(1, G, generator=generator)},
        "decoder": {"latents": torch.randn(1, C, T, generator=generator)},
    }  # fmt: skip


def graphs(model: AudioDiffusionModel) -> dict[str, nn.Module]:
    return {
        "conditioners": ConditionersGraph(model.conditioners).eval(),
        "dit": DiTGraph(model.dit).eval(),
        "decoder": DecoderGraph(model.pretransform).eval(),
    }
