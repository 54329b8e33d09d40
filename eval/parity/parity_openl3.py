"""Parity of arc's OpenL3 (mel256, 512-d) with openl3 0.4.2 + kapre 0.3.7 (TensorFlow Keras), on shared random
weights.

Two steps, two environments (see ../shared/docs/EVAL-ORACLES.md for the TensorFlow one; openl3's own package
cannot be installed, so its source, GitHub marl/openl3 at v0.4.2, goes on the path):

    TF_USE_LEGACY_KERAS=1 <tf venv>/bin/python eval/parity/parity_openl3.py reference OUT --openl3-src <checkout>
    .venv/bin/python eval/parity/parity_openl3.py compare OUT

The reference step builds ``_construct_mel256_audio_network(include_frontend=True)`` plus openl3's 512-d max
pooling, with seeded random weights (batch-norm statistics randomised too), saves them with Keras 2's
``save_weights`` (the official files' HDF5 layout) and runs the front end and the embedding on fixed 1 s frames
of 48 kHz audio. The compare step loads the file with ``arc.metrics.openl3.load_openl3`` and prints the max abs
differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def test_frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(48000) / 48000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.size)
    return np.stack([tone, 0.5 * rng.normal(size=t.size), np.zeros_like(t) + 1e-3 * rng.normal(size=t.size)])


def reference(out: Path, openl3_src: Path) -> None:
    sys.path.insert(0, str(openl3_src))
    import tensorflow as tf
    from openl3.models import AUDIO_POOLING_SIZES, _construct_mel256_audio_network
    from tensorflow.keras.layers import Flatten, MaxPooling2D
    from tensorflow.keras.models import Model

    tf.keras.utils.set_random_seed(0)
    base = _construct_mel256_audio_network(include_frontend=True)
    pooled = Flatten()(MaxPooling2D(pool_size=AUDIO_POOLING_SIZES["mel256"][512], padding="same")(base.output))
    model = Model(inputs=base.input, outputs=pooled)
    rng = np.random.default_rng(1)
    for layer in model.layers:  # random batch-norm statistics, so the loader's mapping of all four is tested
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            n = gamma.shape
            layer.set_weights([1 + 0.1 * rng.normal(size=n), 0.1 * rng.normal(size=n), rng.normal(size=n),
                               1 + rng.random(n)])  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(str(out / "openl3.h5"))
    frames = test_frames().astype(np.float32)[:, None, :]  # (B, 1, 48000): channels first, as openl3 feeds it
    mel = model.layers[1](tf.constant(frames)).numpy()  # the kapre block (dB, permuted to (B, 256, 199, 1))
    np.savez(out / "reference.npz", mel=mel, embedding=model.predict(frames, verbose=0))
    print(f"wrote {out / 'openl3.h5'} and {out / 'reference.npz'}")


def compare(out: Path) -> None:
    import torch

    from arc.metrics.openl3 import load_openl3

    model = load_openl3("env", out / "openl3.h5")
    expected = np.load(out / "reference.npz")
    frames = torch.from_numpy(test_frames()).float()
    with torch.no_grad():
        mel = model.front_end(frames)  # (B, 1, 256, 199); Keras: (B, 256, 199, 1)
        embedding = model(frames)
    mel_diff = np.abs(mel[:, 0].numpy() - expected["mel"][..., 0]).max(axis=(1, 2))
    emb_diff = np.abs(embedding.numpy() - expected["embedding"]).max(axis=1)
    scale = np.abs(expected["embedding"]).max(axis=1)
    print("| frame | dB-mel max abs diff | embedding max abs diff | embedding max abs |\n|---|---|---|---|")
    for i, name in enumerate(["440 Hz + noise", "noise", "near silence"]):
        print(f"| {name} | {mel_diff[i]:.2e} | {emb_diff[i]:.2e} | {scale[i]:.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("reference", "compare"))
    parser.add_argument("out", type=Path)
    parser.add_argument("--openl3-src", type=Path, help="reference step: a checkout of marl/openl3 at v0.4.2")
    args = parser.parse_args()
    if args.step == "reference":
        reference(args.out, args.openl3_src)
    else:
        compare(args.out)


if __name__ == "__main__":
    main()
