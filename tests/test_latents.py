"""Latent shards: exact round trip, resume, crash leftovers, mismatches, and the arc-encode CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from arc.cli.encode import main as encode_main
from arc.cli.train import check_data_fits_model
from arc.config import build_model
from arc.data.audio import AudioTextDataset
from arc.data.latents import LatentDataset, encode_to_shards, shard_name
from arc.models.pretransforms import PatchPretransform

SR = 8000
NUM_SAMPLES = 1024
PATCH = 32


class CountingPatch(PatchPretransform):
    """PatchPretransform that counts its encode calls."""

    def __init__(self, patch_size: int = PATCH):
        super().__init__(SR, audio_channels=2, patch_size=patch_size)
        self.encode_calls = 0

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        self.encode_calls += 1
        return super().encode(audio)


def write_manifest(root: Path, lengths: list[int], bad: bool = False) -> Path:
    """One FLOAT wav per length (some shorter than NUM_SAMPLES, so padded); ``bad`` adds a silent file."""
    rows = []
    for i, length in enumerate(lengths):
        audio = np.random.default_rng(i).uniform(-0.5, 0.5, (length, 2)).astype(np.float32)
        sf.write(root / f"clip{i}.wav", audio, SR, subtype="FLOAT")
        rows.append({"path": f"clip{i}.wav", "caption": f"clip {i}", "id": f"id-{i}"})
    if bad:
        sf.write(root / "silent.wav", np.zeros((NUM_SAMPLES, 2), np.float32), SR, subtype="FLOAT")
        rows.insert(1, {"path": "silent.wav", "caption": "silence", "id": "silent"})
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "caption", "id"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture
def audio_data(tmp_path: Path) -> AudioTextDataset:
    manifest = write_manifest(tmp_path, [1500, 700, 1024, 300, 2000])
    return AudioTextDataset(manifest, tmp_path, SR, audio_channels=2, num_samples=NUM_SAMPLES, random_crop=False)


def test_round_trip_is_exact(tmp_path, audio_data):
    pretransform = CountingPatch()
    summary = encode_to_shards(audio_data, pretransform, tmp_path / "latents", shard_size=2, batch_size=2)
    assert (summary.items, summary.shards_written, summary.shards_skipped) == (5, 3, 0)
    latents = LatentDataset(tmp_path / "latents")
    assert len(latents) == 5 and latents.pretransform["latent_channels"] == 2 * PATCH
    for i in range(5):
        item, original = latents[i], audio_data[i]
        assert item["latents"].shape == (2 * PATCH, NUM_SAMPLES // PATCH)
        assert torch.equal(pretransform.decode(item["latents"][None])[0], original["audio"])
        frames_valid = original["padding_mask"].view(-1, PATCH).any(dim=-1)
        assert torch.equal(item["padding_mask"], frames_valid)
        for key in ("prompt", "id", "seconds_start", "seconds_total"):
            assert item[key] == original[key]
    assert latents[1]["padding_mask"].sum() == 22  # 700 samples: 21 full frames and one part-real frame


def test_shards_load_with_weights_only(tmp_path, audio_data):
    encode_to_shards(audio_data, CountingPatch(), tmp_path / "latents", shard_size=4, batch_size=3)
    shard = torch.load(tmp_path / "latents" / shard_name(0), weights_only=True)
    assert shard["latents"].shape == (4, 2 * PATCH, NUM_SAMPLES // PATCH)
    assert shard["padding_mask"].dtype == torch.bool and shard["id"] == ["id-0", "id-1", "id-2", "id-3"]
    assert all(isinstance(v, float) for v in shard["seconds_total"])


def test_resume_skips_complete_shards(tmp_path, audio_data):
    out = tmp_path / "latents"
    encode_to_shards(audio_data, CountingPatch(), out, shard_size=2, batch_size=1)
    kept = (out / shard_name(0)).stat().st_mtime_ns
    (out / shard_name(1)).unlink()
    with pytest.raises(FileNotFoundError, match="shard-00001.pt.*did not finish"):
        LatentDataset(out)

    rerun = CountingPatch()
    summary = encode_to_shards(audio_data, rerun, out, shard_size=2, batch_size=1)
    assert rerun.encode_calls == 2  # shard 1's two items, one per batch
    assert (summary.shards_written, summary.shards_skipped) == (1, 2)
    assert (out / shard_name(0)).stat().st_mtime_ns == kept
    assert [LatentDataset(out)[i]["id"] for i in range(5)] == [f"id-{i}" for i in range(5)]

    finished = CountingPatch()
    encode_to_shards(audio_data, finished, out, shard_size=2, batch_size=1)
    assert finished.encode_calls == 0


def test_leftover_tmp_is_not_a_complete_shard(tmp_path, audio_data):
    out = tmp_path / "latents"
    encode_to_shards(audio_data, CountingPatch(), out, shard_size=2, batch_size=2)
    (out / shard_name(2)).unlink()
    (out / f".{shard_name(2)}.tmp").write_bytes(b"half a shard from a crashed run")  # arc.files.atomic_write's temp
    with pytest.raises(FileNotFoundError, match="shard-00002.pt"):
        LatentDataset(out)

    rerun = CountingPatch()
    encode_to_shards(audio_data, rerun, out, shard_size=2, batch_size=2)
    assert rerun.encode_calls == 1 and not (out / f".{shard_name(2)}.tmp").exists()
    assert LatentDataset(out)[4]["id"] == "id-4"


def test_different_pretransform_is_refused(tmp_path, audio_data):
    out = tmp_path / "latents"
    encode_to_shards(audio_data, CountingPatch(), out, shard_size=2)
    with pytest.raises(ValueError, match="differs in pretransform.*resume with the same pretransform"):
        encode_to_shards(audio_data, CountingPatch(patch_size=16), out, shard_size=2)
    with pytest.raises(ValueError, match="differs in shard_size, shards"):
        encode_to_shards(audio_data, CountingPatch(), out, shard_size=4)


def test_random_crop_dataset_is_refused(tmp_path):
    manifest = write_manifest(tmp_path, [2000])
    cropping = AudioTextDataset(manifest, tmp_path, SR, audio_channels=2, num_samples=NUM_SAMPLES)
    with pytest.raises(ValueError, match="random_crop=False"):
        encode_to_shards(cropping, CountingPatch(), tmp_path / "latents")


def test_latent_dataset_needs_an_index(tmp_path):
    with pytest.raises(FileNotFoundError, match="no index.json"):
        LatentDataset(tmp_path)


def test_encode_cli_end_to_end(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [1500, 700, 1024], bad=True)
    out = tmp_path / "latents"
    args = ["--manifest", str(manifest), "--audio-root", str(tmp_path), "--out", str(out)]
    args += ["--sample-rate", str(SR), "--num-samples", str(NUM_SAMPLES), "--patch-size", str(PATCH)]
    encode_main([*args, "--skip-bad", "--shard-size", "2"])
    printed = capsys.readouterr().out
    assert "3 items" in printed and "2 shards written, 0 already complete" in printed
    assert "silent_file=1" in printed
    latents = LatentDataset(out)
    assert [latents[i]["id"] for i in range(3)] == ["id-0", "id-1", "id-2"]

    encode_main([*args, "--skip-bad", "--shard-size", "2"])
    assert "0 shards written, 2 already complete" in capsys.readouterr().out


def test_latents_of_another_patch_scale_are_refused(tmp_path):
    manifest = write_manifest(tmp_path, [1024, 1024])
    out = tmp_path / "latents"
    args = ["--manifest", str(manifest), "--audio-root", str(tmp_path), "--out", str(out), "--patch-size", "64"]
    encode_main([*args, "--sample-rate", str(SR), "--num-samples", "1024", "--patch-scale", "0.5"])

    def model(scale: float):
        return build_model("tiny", [f"model.pretransform.sample_rate={SR}", f"model.pretransform.scale={scale}"])

    with pytest.raises(ValueError, match="re-encode"):
        check_data_fits_model([LatentDataset(out)], model(0.26))
    check_data_fits_model([LatentDataset(out)], model(0.5))
