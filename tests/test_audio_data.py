"""AudioTextDataset, manifests, bad-input handling and the data module, on real files written into tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from arc.data.audio import AudioTextDataset, BadItemError, collate, read_manifest
from arc.data.module import AudioDataModule, split_dataset

SR = 16000


def write_wav(path: Path, audio: np.ndarray, sample_rate: int = SR) -> Path:
    """Write (frames,) or (frames, channels) float32 audio losslessly (FLOAT subtype)."""
    sf.write(path, audio.astype(np.float32), sample_rate, subtype="FLOAT")
    return path


def noise(seconds: float, channels: int = 2, sample_rate: int = SR, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-0.5, 0.5, (round(seconds * sample_rate), channels))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def dataset(tmp_path: Path, rows: list[dict[str, str]], **options) -> AudioTextDataset:
    manifest = write_csv(tmp_path / "manifest.csv", rows)
    defaults = {"sample_rate": SR, "audio_channels": 2, "num_samples": SR}
    return AudioTextDataset(manifest, tmp_path, **(defaults | options))


def test_short_file_is_padded_and_masked(tmp_path):
    audio = noise(0.5)
    write_wav(tmp_path / "short.wav", audio)
    item = dataset(tmp_path, [{"path": "short.wav", "caption": "a short sound"}])[0]
    assert item["audio"].shape == (2, SR) and item["padding_mask"].shape == (SR,)
    assert item["padding_mask"][: SR // 2].all() and not item["padding_mask"][SR // 2 :].any()
    torch.testing.assert_close(item["audio"][:, : SR // 2], torch.from_numpy(audio.T).float())
    assert (item["audio"][:, SR // 2 :] == 0).all()
    assert item["seconds_start"] == 0.0 and item["seconds_total"] == 0.5
    assert item["prompt"] == "a short sound" and item["id"] == "short"


def test_long_file_is_cropped_reproducibly_per_seed_index_epoch(tmp_path):
    audio = noise(3.0)
    write_wav(tmp_path / "long.wav", audio)
    rows = [{"path": "long.wav", "caption": "a long sound"}]
    item = dataset(tmp_path, rows, seed=1)[0]
    offset = round(item["seconds_start"] * SR)
    assert item["padding_mask"].all() and item["seconds_total"] == 3.0
    torch.testing.assert_close(item["audio"], torch.from_numpy(audio[offset : offset + SR].T).float())

    again = dataset(tmp_path, rows, seed=1)[0]
    assert again["seconds_start"] == item["seconds_start"] and torch.equal(again["audio"], item["audio"])
    other_seed = dataset(tmp_path, rows, seed=2)[0]
    assert other_seed["seconds_start"] != item["seconds_start"]
    next_epoch = dataset(tmp_path, rows, seed=1)
    next_epoch.set_epoch(1)
    assert next_epoch[0]["seconds_start"] != item["seconds_start"]
    next_epoch.set_epoch(0)
    assert next_epoch[0]["seconds_start"] == item["seconds_start"]


def test_eval_crop_starts_at_zero(tmp_path):
    audio = noise(3.0)
    write_wav(tmp_path / "long.wav", audio)
    item = dataset(tmp_path, [{"path": "long.wav", "caption": "x"}], random_crop=False)[0]
    assert item["seconds_start"] == 0.0
    torch.testing.assert_close(item["audio"], torch.from_numpy(audio[:SR].T).float())


def test_resampling_keeps_length_and_pitch(tmp_path):
    t = np.arange(22050) / 22050
    write_wav(tmp_path / "sine.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), sample_rate=22050)
    item = dataset(tmp_path, [{"path": "sine.wav", "caption": "a 1 kHz sine"}], audio_channels=1)[0]
    assert item["audio"].shape == (1, SR) and item["padding_mask"].all()
    spectrum = torch.fft.rfft(item["audio"][0]).abs()
    peak_hz = spectrum.argmax().item() * SR / item["audio"].shape[-1]
    assert peak_hz == 1000.0
    assert item["seconds_total"] == 1.0


def test_mono_is_duplicated_and_stereo_averaged(tmp_path):
    mono, stereo = noise(1.0, channels=1), noise(1.0, channels=2, seed=1)
    write_wav(tmp_path / "mono.wav", mono)
    write_wav(tmp_path / "stereo.wav", stereo)
    rows = [{"path": "mono.wav", "caption": "m"}, {"path": "stereo.wav", "caption": "s"}]
    as_stereo = dataset(tmp_path, rows, audio_channels=2)[0]["audio"]
    torch.testing.assert_close(as_stereo, torch.from_numpy(np.concatenate([mono, mono], axis=1).T).float())
    as_mono = dataset(tmp_path, rows, audio_channels=1)[1]["audio"]
    torch.testing.assert_close(as_mono[0], torch.from_numpy(stereo.mean(axis=1)).float())


def test_csv_and_jsonl_manifests(tmp_path):
    write_csv(tmp_path / "a.csv", [{"path": "x/one.wav", "caption": "first"}, {"path": "two.flac", "caption": "2nd"}])
    entries = [{"path": "one.wav", "caption": "first", "id": "clip-1"}, {"path": "two.wav", "caption": "second"}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(e) for e in entries) + "\n\n")
    csv_rows, jsonl_rows = read_manifest(tmp_path / "a.csv"), read_manifest(tmp_path / "b.jsonl")
    assert [(r.path, r.caption, r.id, r.row) for r in csv_rows] == [
        ("x/one.wav", "first", "one", 1),
        ("two.flac", "2nd", "two", 2),
    ]
    assert [(r.id, r.row) for r in jsonl_rows] == [("clip-1", 1), ("two", 2)]


@pytest.mark.parametrize(
    ("name", "content", "column"),
    [
        ("no_caption.csv", "path,text\na.wav,hello\n", "caption"),
        ("no_path.jsonl", '{"caption": "hello"}\n', "path"),
    ],
)
def test_manifest_missing_column_names_file_and_column(tmp_path, name, content, column):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=rf"{name}.*'{column}'"):
        read_manifest(tmp_path / name)


def test_manifest_duplicate_ids_are_refused(tmp_path):
    write_csv(tmp_path / "m.csv", [{"path": "a/x.wav", "caption": "1"}, {"path": "b/x.wav", "caption": "2"}])
    with pytest.raises(ValueError, match="rows 1 and 2 share the id 'x'"):
        read_manifest(tmp_path / "m.csv")


def make_bad(tmp_path: Path, kind: str) -> tuple[dict[str, str], str]:
    """A manifest row of the given kind of bad input, and the reason it is counted under."""
    path = tmp_path / f"{kind}.wav"
    if kind == "missing":
        return {"path": path.name, "caption": "gone"}, "missing_file"
    if kind == "empty":
        write_wav(path, np.zeros((0, 2)))
        return {"path": path.name, "caption": "nothing"}, "empty_file"
    if kind == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
        return {"path": path.name, "caption": "noise bytes"}, "corrupt_file"
    if kind == "silent":
        write_wav(path, np.full((SR, 2), 1e-7))
        return {"path": path.name, "caption": "hush"}, "silent_file"
    if kind == "surround":
        write_wav(path, noise(0.5, channels=6))
        return {"path": path.name, "caption": "5.1"}, "too_many_channels"
    write_wav(path, noise(0.5))
    return {"path": path.name, "caption": "  "}, "empty_caption"


BAD_KINDS = ["missing", "empty", "corrupt", "silent", "surround", "empty_caption"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_raises_with_path_and_row(tmp_path, kind):
    write_wav(tmp_path / "good.wav", noise(0.5))
    bad_row, _ = make_bad(tmp_path, kind)
    rows = [{"path": "good.wav", "caption": "fine"}, bad_row]
    expected = rf"{tmp_path / bad_row['path']}: .*\(manifest .*manifest.csv, row 2\)"
    if kind == "empty_caption":  # checked with the manifest, in both modes
        with pytest.raises(BadItemError, match=expected):
            dataset(tmp_path, rows)
        return
    data = dataset(tmp_path, rows)
    assert data[0]["prompt"] == "fine"
    with pytest.raises(BadItemError, match=expected):
        data[1]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_is_skipped_and_counted(tmp_path, kind):
    write_wav(tmp_path / "good.wav", noise(0.5))
    bad_row, reason = make_bad(tmp_path, kind)
    data = dataset(tmp_path, [bad_row, {"path": "good.wav", "caption": "fine"}], skip_bad=True)
    assert len(data) == 1 and data[0]["id"] == "good"
    assert data.skipped == {reason: 1}


def test_skipped_counts_add_up_by_reason(tmp_path):
    rows = [make_bad(tmp_path, kind)[0] for kind in BAD_KINDS] + [{"path": "missing2.wav", "caption": "gone"}]
    write_wav(tmp_path / "good.wav", noise(0.5))
    data = dataset(tmp_path, [*rows, {"path": "good.wav", "caption": "fine"}], skip_bad=True)
    assert len(data) == 1
    assert data.skipped == {
        "missing_file": 2,
        "empty_file": 1,
        "corrupt_file": 1,
        "silent_file": 1,
        "too_many_channels": 1,
        "empty_caption": 1,
    }


@pytest.mark.slow  # torch takes ~5 s to shut down a DataLoader whose worker raised
def test_bad_item_error_survives_a_dataloader_worker(tmp_path):
    bad_row, _ = make_bad(tmp_path, "corrupt")
    loader = DataLoader(dataset(tmp_path, [bad_row]), batch_size=1, num_workers=1, collate_fn=collate)
    with pytest.raises(BadItemError, match="corrupt.wav"):
        next(iter(loader))


def test_collate_stacks_tensors_numbers_and_strings():
    items = [
        {"audio": torch.zeros(2, 8), "prompt": "a", "seconds_start": 0.5},
        {"audio": torch.ones(2, 8), "prompt": "b", "seconds_start": 1.0},
    ]
    batch = collate(items)
    assert batch["audio"].shape == (2, 2, 8) and batch["prompt"] == ["a", "b"]
    assert batch["seconds_start"].dtype == torch.float32 and batch["seconds_start"].tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="different keys"):
        collate([items[0], {"audio": torch.zeros(2, 8)}])


def many_files(tmp_path: Path, count: int) -> list[dict[str, str]]:
    for i in range(count):
        write_wav(tmp_path / f"clip{i}.wav", noise(1.5, seed=i))
    return [{"path": f"clip{i}.wav", "caption": f"clip number {i}"} for i in range(count)]


def test_data_module_batches(tmp_path):
    data = dataset(tmp_path, many_files(tmp_path, 10), num_samples=SR // 2)
    train, val = split_dataset(data, val_fraction=0.2, seed=0)
    assert len(train) == 8 and len(val) == 2 and not set(train.indices) & set(val.indices)
    assert split_dataset(data, val_fraction=0.2, seed=0)[1].indices == val.indices
    module = AudioDataModule(train, val, batch_size=3)
    batches = list(module.train_dataloader())
    assert len(batches) == 2  # 8 items, drop_last
    batch = batches[0]
    assert batch["audio"].shape == (3, 2, SR // 2) and batch["padding_mask"].shape == (3, SR // 2)
    assert batch["seconds_start"].shape == (3,) and batch["seconds_total"].dtype == torch.float32
    assert len(batch["prompt"]) == 3 and len(batch["id"]) == 3
    assert [len(b["id"]) for b in module.val_dataloader()] == [2]
    assert module.skipped() == {}
    assert AudioDataModule(train, None, batch_size=3).val_dataloader() == []


def test_data_module_set_epoch_reaches_persistent_workers(tmp_path):
    data = dataset(tmp_path, many_files(tmp_path, 4), num_samples=SR // 2)
    module = AudioDataModule(data, None, batch_size=4, num_workers=1)
    loader = module.train_dataloader()

    def starts(batch: dict) -> dict[str, float]:
        return dict(zip(batch["id"], batch["seconds_start"].tolist(), strict=True))

    epoch0 = starts(next(iter(loader)))
    module.set_epoch(1)
    epoch1 = starts(next(iter(loader)))  # the same persistent worker
    assert epoch1 != epoch0
    assert epoch1 == starts(collate([data[i] for i in range(4)]))  # as the main process crops epoch 1


def test_data_module_merges_skipped_counts_once(tmp_path):
    rows = many_files(tmp_path, 4) + [make_bad(tmp_path, "silent")[0], make_bad(tmp_path, "missing")[0]]
    data = dataset(tmp_path, rows, skip_bad=True)
    train, val = split_dataset(data, val_fraction=0.25, seed=0)
    assert AudioDataModule(train, val, batch_size=2).skipped() == {"silent_file": 1, "missing_file": 1}
