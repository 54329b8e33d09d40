"""Plain ``nn.Module`` models: the Stable Audio DiT, its conditioners and pretransforms, and their wrapper."""

from arc.models.conditioners import Conditioners, Conditioning, NumberConditioner, T5Conditioner
from arc.models.dit import DiffusionTransformer
from arc.models.pretransforms import MdctPretransform, OobleckPretransform, PatchPretransform, Pretransform
from arc.models.wrapper import AudioDiffusionModel

__all__ = [
    "AudioDiffusionModel",
    "Conditioners",
    "Conditioning",
    "DiffusionTransformer",
    "NumberConditioner",
    "OobleckPretransform",
    "MdctPretransform",
    "PatchPretransform",
    "Pretransform",
    "T5Conditioner",
]
