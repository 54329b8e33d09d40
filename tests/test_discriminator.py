import pytest
import torch

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
