"""Parity of arc's PaSST (front end and network) with hear21passt's, on shared random weights.

Two steps, two environments (hear21passt needs torchaudio and torchvision; see ../shared/docs/EVAL-ORACLES.md):

    <reference venv>/bin/python eval/parity/parity_passt.py reference OUT   # hear21passt: weights, inputs, outputs
    .venv/bin/python eval/parity/parity_passt.py compare OUT                 # arc: load the same file, compare

The reference step builds ``passt_s_swa_p16_128_ap476`` with ``pretrained=False`` and stable-audio-metrics'
front-end settings, saves its weights as the official checkpoint is laid out (``OUT/passt.pt``), and runs it on
fixed audio (10 s and 3 s, mono, 32 kHz). The compare step loads that file with ``arc.metrics.passt.load_passt``
and prints the max abs difference of the log-mels and the logits.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def test_audio() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(10 * 32000) / 32000
    ten = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)
    return {"10s": ten.astype(np.float32), "3s": ten[: 3 * 32000].astype(np.float32)}


def reference(out: Path) -> None:
    from hear21passt.models.passt import get_model
    from hear21passt.models.preprocess import AugmentMelSTFT

    torch.manual_seed(0)
    net = get_model(
        arch="passt_s_swa_p16_128_ap476", pretrained=False, n_classes=527, in_channels=1, fstride=10, tstride=10,
        input_fdim=128, input_tdim=998, u_patchout=0, s_patchout_t=0, s_patchout_f=0,
    ).eval()  # fmt: skip
    mel = AugmentMelSTFT(
        n_mels=128, sr=32000, win_length=800, hopsize=320, n_fft=1024, freqm=48, timem=192, htk=False, fmin=0.0,
        fmax=None, norm=1, fmin_aug_range=10, fmax_aug_range=2000,
    ).eval()  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), out / "passt.pt")
    results = {}
    stft = torch.stft
    torch.stft = lambda *a, **k: stft(*a, **{**k, "return_complex": False})  # hear21passt predates return_complex
    with torch.no_grad():
        for name, audio in test_audio().items():
            specs = mel(torch.from_numpy(audio)[None])
            results[f"mel_{name}"] = specs.numpy()
            results[f"logits_{name}"] = net(specs[:, None])[0].numpy()
    np.savez(out / "reference.npz", **results)
    print(f"wrote {out / 'passt.pt'} and {out / 'reference.npz'}")


def compare(out: Path) -> None:
    from arc.metrics.passt import load_passt

    model = load_passt(out / "passt.pt")
    expected = np.load(out / "reference.npz")
    print("| input | log-mel max abs diff | logits max abs diff | logits max abs |\n|---|---|---|---|")
    with torch.no_grad():
        for name, audio in test_audio().items():
            mel = model.front_end(torch.from_numpy(audio)[None])
            logits = model.net(mel[:, None])
            mel_diff = np.abs(mel.numpy() - expected[f"mel_{name}"]).max()
            logit_diff = np.abs(logits.numpy() - expected[f"logits_{name}"]).max()
            print(f"| {name} | {mel_diff:.2e} | {logit_diff:.2e} | {np.abs(expected[f'logits_{name}']).max():.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("reference", "compare"))
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    (reference if args.step == "reference" else compare)(args.out)


if __name__ == "__main__":
    sys.exit(main())
