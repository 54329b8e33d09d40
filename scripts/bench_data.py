"""Data-loading throughput, items/second (a benchmark, not a test).

(a) 64 generated WAV files (44.1 kHz stereo, 2 s) read at 16 kHz, so every item is resampled, through
    AudioTextDataset + DataLoader with 0 and 2 workers; plus the one-off ``skip_bad`` scan of the files.
(b) arc.data.tones.TonesDataset through the same DataLoader, if it imports.

Run from the repository root: ``PYTHONPATH=. .venv/bin/python scripts/bench_data.py``
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
from torch.utils.data import DataLoader, Dataset

from arc.data.audio import AudioTextDataset, collate

FILE_RATE, FILE_SECONDS, NUM_FILES = 44100, 2.0, 64
SAMPLE_RATE, NUM_SAMPLES = 16000, 32000


def write_files(root: Path) -> Path:
    rng = np.random.default_rng(0)
    t = np.arange(int(FILE_RATE * FILE_SECONDS)) / FILE_RATE
    rows = []
    for i in range(NUM_FILES):
        tone = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 2000) * t)
        audio = np.stack([tone, tone], axis=1) + 0.05 * rng.standard_normal((t.size, 2))
        sf.write(root / f"clip{i:03d}.wav", audio.astype(np.float32), FILE_RATE, subtype="PCM_16")
        rows.append({"path": f"clip{i:03d}.wav", "caption": f"a tone, clip {i}"})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "caption"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def items_per_second(dataset: Dataset, num_workers: int, batch_size: int, epochs: int) -> float:
    """Throughput over ``epochs`` passes after one warm-up pass (which also starts the persistent workers)."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
    for _ in loader:
        pass
    start = time.perf_counter()
    for _ in range(epochs):
        for _ in loader:
            pass
    return epochs * len(dataset) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3, help="timed passes after the warm-up pass")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = write_files(root)
        print(f"(a) {NUM_FILES} wav files, {FILE_RATE} Hz stereo {FILE_SECONDS} s, read at {SAMPLE_RATE} Hz")
        start = time.perf_counter()
        AudioTextDataset(manifest, root, SAMPLE_RATE, 2, NUM_SAMPLES, skip_bad=True)
        print(f"    skip_bad scan: {NUM_FILES / (time.perf_counter() - start):8.1f} files/s")
        dataset = AudioTextDataset(manifest, root, SAMPLE_RATE, 2, NUM_SAMPLES)
        for num_workers in (0, 2):
            rate = items_per_second(dataset, num_workers, args.batch_size, args.epochs)
            print(f"    AudioTextDataset, num_workers={num_workers}: {rate:8.1f} items/s")

    try:
        from arc.data.tones import TonesDataset
    except ImportError as e:
        print(f"(b) skipped: arc.data.tones does not import yet ({e})")
        return
    tones = TonesDataset(NUM_FILES, SAMPLE_RATE, NUM_SAMPLES, seed=0)
    print(f"(b) TonesDataset, {NUM_FILES} items at {SAMPLE_RATE} Hz, {NUM_SAMPLES} samples")
    for num_workers in (0, 2):
        rate = items_per_second(tones, num_workers, args.batch_size, args.epochs)
        print(f"    TonesDataset, num_workers={num_workers}: {rate:8.1f} items/s")


if __name__ == "__main__":
    main()
