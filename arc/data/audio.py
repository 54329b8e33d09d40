"""Audio-text data: a manifest of (audio file, caption) rows read into fixed-length training items.

The item format every arc dataset returns (audio here, latents in ``arc.data.latents``)::

    {"audio": (C, N) float32, "padding_mask": (N,) bool, True where real audio, "prompt": str,
     "seconds_start": float, "seconds_total": float, "id": str}

A latent item has ``"latents"`` (latent_channels, T) in place of ``"audio"`` and a (T,) ``padding_mask``.
``collate`` stacks a list of items into a batch.
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from arc.errors import InvalidInputError, MissingFileError, UserError

log = logging.getLogger(__name__)

SILENCE_PEAK = 1e-6  # a file whose peak |x| stays below this (-120 dBFS) is silent: nothing to learn from

# Reasons an item is unusable; the keys of ``AudioTextDataset.skipped``.
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
CORRUPT_FILE = "corrupt_file"
SILENT_FILE = "silent_file"
TOO_MANY_CHANNELS = "too_many_channels"
EMPTY_CAPTION = "empty_caption"


class BadItemError(UserError, ValueError):
    """A manifest row that cannot become a training item; the message names the file, the row and the problem."""

    # ``reason`` has a default because DataLoader workers re-raise an exception as ``type(exc)(message)``.
    def __init__(self, message: str, reason: str = "unknown"):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ManifestRow:
    """One manifest entry. ``row`` is 1-based and counts entries (a CSV header and blank JSONL lines excluded)."""

    path: str
    caption: str
    id: str
    row: int


def _manifest_entry(manifest: Path, row: int, fields: Mapping[str, object], required: Sequence[str]) -> ManifestRow:
    for column in required:
        if column not in fields:
            raise InvalidInputError(
                f"{manifest}: row {row} has no {column!r} column; every row needs {' and '.join(map(repr, required))}"
            )
    path = str(fields.get("path") or "").strip()
    if "path" in required and not path:
        raise InvalidInputError(f"{manifest}: row {row} has an empty 'path'")
    given_id = str(fields.get("id") or "").strip()
    if not given_id and not path:
        raise InvalidInputError(f"{manifest}: row {row} has an empty 'id'")
    return ManifestRow(path=path, caption=str(fields["caption"] or ""), id=given_id or Path(path).stem, row=row)


def _read_csv(manifest: Path, required: Sequence[str]) -> list[ManifestRow]:
    with manifest.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        for column in required:
            if column not in header:
                raise InvalidInputError(f"{manifest}: the CSV header {header} has no {column!r} column")
        return [_manifest_entry(manifest, row, fields, required) for row, fields in enumerate(reader, start=1)]


def _read_jsonl(manifest: Path, required: Sequence[str]) -> list[ManifestRow]:
    rows = []
    with manifest.open(encoding="utf-8") as f:
        lines = [(number, line) for number, line in enumerate(f, start=1) if line.strip()]
    for row, (number, line) in enumerate(lines, start=1):
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as e:
            raise InvalidInputError(f"{manifest}: line {number} is not valid JSON ({e})") from e
        if not isinstance(fields, dict):
            raise InvalidInputError(f"{manifest}: line {number} is a JSON {type(fields).__name__}, expected an object")
        rows.append(_manifest_entry(manifest, row, fields, required))
    return rows


def read_manifest(path: str | Path, required: Sequence[str] = ("path", "caption")) -> list[ManifestRow]:
    """Read a ``.csv`` (header with ``path``, ``caption``, optional ``id``) or ``.jsonl`` manifest; ``required``
    names the columns every row must have (an evaluation's prompts: ``("id", "caption")``, no files).

    A row without an id gets its file's stem. Ids must be unique: they name items in latent shards and evaluations.
    """
    manifest = Path(path)
    readers = {".csv": _read_csv, ".jsonl": _read_jsonl}
    if manifest.suffix not in readers:
        raise InvalidInputError(
            f"{manifest}: unknown manifest format {manifest.suffix!r}; use one of {sorted(readers)}"
        )
    if not manifest.is_file():
        raise MissingFileError(f"manifest {manifest} does not exist")
    rows = readers[manifest.suffix](manifest, tuple(required))
    first_row: dict[str, int] = {}
    for entry in rows:
        if entry.id in first_row:
            raise InvalidInputError(
                f"{manifest}: rows {first_row[entry.id]} and {entry.row} share the id {entry.id!r}; "
                "give every row a unique 'id' column (file stems repeat across folders)"
            )
        first_row[entry.id] = entry.row
    return rows


def _fit_channels(audio: np.ndarray, audio_channels: int) -> np.ndarray:
    """(n, file_channels) -> (n, audio_channels): mono is duplicated, stereo averaged to mono."""
    file_channels = audio.shape[1]
    if file_channels == audio_channels:
        return audio
    if file_channels == 1:
        return np.repeat(audio, audio_channels, axis=1)
    # only a stereo -> mono mix-down reaches here (other counts are rejected while reading)
    return audio.mean(axis=1, keepdims=True)


class AudioTextDataset(Dataset):
    """Fixed-length ``(audio, caption)`` items from a manifest, in the item format of this module.

    Each file is decoded with soundfile, resampled with soxr (HQ) when its rate differs from ``sample_rate``,
    mapped to ``audio_channels`` (mono duplicated; stereo averaged when ``audio_channels`` is 1), then cut to
    ``num_samples``: a random crop when ``random_crop`` (training), the start of the file otherwise, zero-padded
    with ``padding_mask`` False where the file ran out. ``seconds_start`` is the crop offset and ``seconds_total``
    the whole file's duration, as stable-audio-tools does. The crop is cut before resampling, so only the crop is
    resampled.

    Random crops are reproducible: the generator is seeded with ``(seed, row, epoch)``, where ``row`` is the item's
    manifest row (dropping a bad row moves no other item's crop) and ``epoch`` is set by ``set_epoch``. The epoch
    lives in a shared-memory tensor, so ``set_epoch`` in the main process reaches persistent DataLoader workers.

    Bad rows (missing, empty, corrupt, silent or too-many-channel files, empty captions) raise ``BadItemError``
    naming the file, the manifest row and the problem. Empty captions are rejected while reading the manifest.
    With ``skip_bad=True`` every file is checked once, eagerly, in ``__init__`` (a full decode, the same checks
    ``__getitem__`` makes), and bad rows are dropped and counted by reason in ``skipped``. The check is eager
    because DataLoader workers are separate processes: counts kept by a lazy skip in ``__getitem__`` would stay
    in the workers, and returning a neighbour in a bad item's place would silently repeat that neighbour. The
    price is one decode of every file up front (shown with a progress bar). A file that goes bad after the check
    still raises. With ``skip_bad=False`` files are checked lazily in ``__getitem__``, raising on the first bad one.
    """

    def __init__(
        self,
        manifest: str | Path,
        audio_root: str | Path,
        sample_rate: int,
        audio_channels: int,
        num_samples: int,
        random_crop: bool = True,
        skip_bad: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        if audio_channels not in (1, 2):
            raise InvalidInputError(f"audio_channels must be 1 or 2, got {audio_channels}")
        if sample_rate <= 0 or num_samples <= 0:
            raise InvalidInputError(
                f"sample_rate and num_samples must be positive, got {sample_rate} and {num_samples}"
            )
        self.manifest = Path(manifest)
        self.audio_root = Path(audio_root)
        self.sample_rate = sample_rate
        self.audio_channels = audio_channels
        self.num_samples = num_samples
        self.random_crop = random_crop
        self.skip_bad = skip_bad
        self.seed = seed
        self._skipped: Counter[str] = Counter()
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

        rows = read_manifest(self.manifest)
        total = len(rows)
        rows = self._drop_bad(rows, self._check_caption)
        if skip_bad:
            rows = self._drop_bad(tqdm(rows, desc=f"checking {self.manifest.name}", unit="file"), self._read)
        self.rows: list[ManifestRow] = rows
        if self._skipped:
            log.warning("%s: skipped %d of %d rows: %s", self.manifest, total - len(rows), total, self.skipped)
        if not rows:
            raise InvalidInputError(f"{self.manifest}: no usable rows out of {total} (skipped: {self.skipped})")

    @property
    def skipped(self) -> dict[str, int]:
        """Rows dropped by ``skip_bad``, counted by reason (e.g. ``{"silent_file": 2}``)."""
        return dict(self._skipped)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch that seeds the random crops, in this process and in every DataLoader worker."""
        self._epoch.fill_(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | float]:
        row = self.rows[index]
        audio, rate = self._read(row)  # (n, C) at the file's rate
        total_frames = audio.shape[0]
        # source frames for num_samples output samples, plus one so that soxr's rounding never comes up short
        needed = math.ceil(self.num_samples * rate / self.sample_rate) + (rate != self.sample_rate)
        max_offset = max(total_frames - needed, 0)
        if self.random_crop:
            rng = np.random.default_rng([self.seed, row.row, int(self._epoch)])
            offset = int(rng.integers(0, max_offset + 1))
        else:
            offset = 0
        crop = _fit_channels(audio[offset : offset + needed], self.audio_channels)
        if rate != self.sample_rate:
            crop = soxr.resample(crop, rate, self.sample_rate, quality="HQ")
        length = min(crop.shape[0], self.num_samples)
        padded = torch.zeros(self.audio_channels, self.num_samples)
        padded[:, :length] = torch.from_numpy(crop[:length].T)  # (n, C) -> (C, n)
        padding_mask = torch.zeros(self.num_samples, dtype=torch.bool)
        padding_mask[:length] = True
        return {
            "audio": padded,
            "padding_mask": padding_mask,
            "prompt": row.caption,
            "seconds_start": offset / rate,
            "seconds_total": total_frames / rate,
            "id": row.id,
        }

    def _path(self, row: ManifestRow) -> Path:
        return self.audio_root / row.path  # an absolute manifest path replaces the root

    def _bad(self, row: ManifestRow, reason: str, problem: str) -> BadItemError:
        return BadItemError(f"{self._path(row)}: {problem} (manifest {self.manifest}, row {row.row})", reason)

    def _check_caption(self, row: ManifestRow) -> None:
        if not row.caption.strip():
            raise self._bad(row, EMPTY_CAPTION, "empty caption")

    def _read(self, row: ManifestRow) -> tuple[np.ndarray, int]:
        """Decode the whole file: ((frames, channels) float32, sample rate), or raise ``BadItemError``."""
        path = self._path(row)
        if not path.is_file():
            raise self._bad(row, MISSING_FILE, "file not found")
        try:
            audio, rate = sf.read(path, dtype="float32", always_2d=True)
        except sf.SoundFileError as e:
            raise self._bad(row, CORRUPT_FILE, f"cannot decode ({e})") from e
        if audio.shape[0] == 0:
            raise self._bad(row, EMPTY_FILE, "the file has 0 samples")
        if not np.isfinite(audio).all():
            raise self._bad(row, CORRUPT_FILE, "the file holds NaN or infinite samples")
        peak = float(np.abs(audio).max())
        if peak < SILENCE_PEAK:
            raise self._bad(row, SILENT_FILE, f"silent: peak |x| = {peak:.2e} < {SILENCE_PEAK:.0e}")
        channels = audio.shape[1]
        if channels not in (1, self.audio_channels) and not (channels == 2 and self.audio_channels == 1):
            raise self._bad(row, TOO_MANY_CHANNELS, f"{channels} channels, expected at most {self.audio_channels}")
        return audio, rate

    def _drop_bad(self, rows: Iterable[ManifestRow], check: Callable[[ManifestRow], object]) -> list[ManifestRow]:
        """Rows that pass ``check``; a failing row raises, or with ``skip_bad`` is dropped and counted."""
        kept = []
        for row in rows:
            try:
                check(row)
            except BadItemError as e:
                if not self.skip_bad:
                    raise
                self._skipped[e.reason] += 1
                log.info("skipping %s", e)
            else:
                kept.append(row)
        return kept


def collate(items: Sequence[Mapping[str, object]]) -> dict[str, torch.Tensor | list[str]]:
    """Stack items into a batch: tensors stacked on a new dim 0, numbers into a float32 (B,) tensor, strings
    into a list. Every item must have the same keys."""
    if not items:
        raise ValueError("collate got no items")
    keys = list(items[0])
    for item in items[1:]:
        if list(item) != keys:
            raise ValueError(f"collate got items with different keys: {keys} and {list(item)}")
    batch: dict[str, torch.Tensor | list[str]] = {}
    for key in keys:
        values = [item[key] for item in items]
        if all(isinstance(v, torch.Tensor) for v in values):
            batch[key] = torch.stack(values)
        elif all(isinstance(v, str) for v in values):
            batch[key] = values
        elif all(isinstance(v, float | int) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor(values, dtype=torch.float32)
        else:
            raise TypeError(
                f"collate cannot batch {key!r}: values of types {sorted({type(v).__name__ for v in values})}"
            )
    return batch
