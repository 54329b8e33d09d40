import pytest
import torch

from arc.models import DiffusionTransformer
from arc.models.discriminator import ConvNeXtHead, Discriminator


def test_head_gives_per_patch_logits_at_sao_small_shape():
    head = ConvNeXtHead(in_channels=64, channels=16)
    logits = head(torch.randn(2, 257, 64))
    assert logits.shape == (2, 1, 64)  # 257 tokens -> stride 1, 2, 2 -> 64 patches


def test_discriminator_scores_and_gradients_reach_trunk_and_head(tiny_model):
    import copy

    trunk = copy.deepcopy(tiny_model.dit)
    disc = Discriminator(
        copy.deepcopy(tiny_model.conditioners), trunk, ConvNeXtHead(trunk.embed_dim, 16), exit_layer=2
    )
    cond = disc.conditioners(["a tone", "a noise"], {"seconds_total": torch.tensor([1.0, 1.0])})
    x = torch.randn(2, *tiny_model.latent_shape)
    scores = disc(x, torch.tensor([0.3, 0.6]), cond)
    assert scores.shape[:2] == (2, 1)
    scores.mean().backward()
    assert trunk.layers[2].self_attn.to_qkv.weight.grad is not None
    assert trunk.layers[3].self_attn.to_qkv.weight.grad is None  # past the exit layer: unused
    assert disc.head.proj_out.parametrizations.weight.original0.grad is not None


def test_inconsistent_discriminator_config_fails_at_construction(tiny_model):
    with pytest.raises(ValueError, match="exit_layer must be in \\[0, 3\\]"):
        Discriminator(tiny_model.conditioners, tiny_model.dit, ConvNeXtHead(128, 16), exit_layer=4)
    with pytest.raises(ValueError, match="in_channels=64 must equal the trunk width 128"):
        Discriminator(tiny_model.conditioners, tiny_model.dit, ConvNeXtHead(64, 16), exit_layer=1)


def test_patch_mask_counts_the_global_token_only_where_it_is_prepended(tiny_model):
    frames = torch.tensor([[True] * 6 + [False] * 2])  # 8 latent frames, the last 2 padding
    masks = {}
    for kind in ("prepend", "adaLN"):
        trunk = DiffusionTransformer(io_channels=8, embed_dim=64, depth=2, num_heads=2, cond_token_dim=64,
                                     global_cond_dim=64, global_cond_type=kind)  # fmt: skip
        disc = Discriminator(tiny_model.conditioners, trunk, ConvNeXtHead(64, 16), exit_layer=1)
        masks[kind] = disc.patch_mask(frames, num_patches=frames.shape[1] + (kind == "prepend"))[0, 0].tolist()
    assert masks["prepend"] == [True] * 7 + [False] * 2
    assert masks["adaLN"] == [True] * 6 + [False] * 2
