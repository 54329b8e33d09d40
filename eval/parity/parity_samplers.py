"""Parity of arc's samplers with stable-audio-tools' own ``sample_rf`` on a shared toy velocity field.

    python eval/parity/parity_samplers.py --sat /path/to/stable-audio-tools   # a checkout of Stability-AI's repository

Runs the reference's ``sample_rf`` (Euler, DPM++ and ping-pong on its logSNR schedule, text-to-audio and
audio-to-audio) and arc's samplers on the same noise and the same nonlinear velocity field, and prints the max
absolute difference of the outputs. Only ``stable_audio_tools/inference/sampling.py`` is imported (its
``k_diffusion`` import serves the v-diffusion samplers, not these, and is stubbed).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import types
from pathlib import Path

import torch

from arc.flow import add_noise
from arc.sampling import SAMPLERS, logsnr_timesteps


def load_reference(sat_repo: Path) -> types.ModuleType:
    path = sat_repo / "stable_audio_tools" / "inference" / "sampling.py"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist: --sat must be a stable-audio-tools checkout")
    sys.modules.setdefault("k_diffusion", types.ModuleType("k_diffusion"))
    spec = importlib.util.spec_from_file_location("sat_sampling", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sat", type=Path, required=True, help="a stable-audio-tools checkout")
    reference = load_reference(parser.parse_args().sat)
    weight = torch.randn(8, 8, generator=torch.Generator().manual_seed(0)) / 3

    def velocity(x: torch.Tensor, t: torch.Tensor, **_: object) -> torch.Tensor:  # the reference passes kwargs
        return torch.tanh(torch.einsum("ij,bjt->bit", weight, x)) * t.view(-1, 1, 1) + 0.3 * x

    noise = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(1))
    init = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(2))
    print("| sampler | steps | sigma_max | max abs difference |\n|---|---|---|---|")
    for name in ("euler", "dpmpp", "pingpong"):
        for steps, sigma_max in ((4, 1.0), (8, 1.0), (50, 1.0), (8, 0.7)):
            x_init = None if sigma_max == 1 else init
            torch.manual_seed(3)  # the reference's ping-pong draws its fresh noise from the global generator
            ref = reference.sample_rf(
                velocity, noise.clone(), init_data=x_init, steps=steps, sampler_type=name, sigma_max=sigma_max
            )
            x = noise.clone() if x_init is None else add_noise(x_init, noise, torch.tensor(sigma_max))
            ours = SAMPLERS[name](velocity, x, logsnr_timesteps(steps, sigma_max), torch.Generator().manual_seed(3))
            print(f"| {name} | {steps} | {sigma_max} | {(ours - ref).abs().max().item():.1e} |")


if __name__ == "__main__":
    main()
