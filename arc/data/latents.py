"""Pre-encoded latents: run a pretransform over an audio dataset once, store shards, train from them.

A shard directory holds ``index.json`` and ``shard-00000.pt``, ``shard-00001.pt``, ... Shard ``k`` holds items
``k * shard_size`` to ``(k + 1) * shard_size - 1`` of the dataset, in order, as one ``torch.save``d dict::

    {"latents": (n, latent_channels, T) float32, "padding_mask": (n, T) bool, "prompt": list[str],
     "seconds_start": list[float], "seconds_total": list[float], "id": list[str]}

that ``torch.load(..., weights_only=True)`` reads back. ``index.json`` describes the pretransform and lists every
shard; it appears only once every shard is written. Until then the same description sits in ``plan.json``, which
a rerun checks before resuming, and ``LatentDataset`` refuses the directory ("the encoding did not finish").
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from arc.data.audio import collate
from arc.errors import InvalidInputError, MissingFileError
from arc.files import atomic_write
from arc.models.pretransforms import Pretransform

INDEX = "index.json"
PLAN = "plan.json"  # index.json's content while the encoding is unfinished
FORMAT = "arc-latent-shards/1"


def shard_name(k: int) -> str:
    return f"shard-{k:05d}.pt"


def describe_pretransform(pretransform: Pretransform) -> dict[str, str | int | float]:
    """What ``index.json`` records of the pretransform, to refuse resuming with a different one."""
    return {
        "class": type(pretransform).__name__,
        "sample_rate": pretransform.sample_rate,
        "audio_channels": pretransform.audio_channels,
        "latent_channels": pretransform.latent_channels,
        "downsampling_ratio": pretransform.downsampling_ratio,
        "scale": pretransform.scale,
    }


@dataclass(frozen=True)
class EncodeSummary:
    items: int
    shards_written: int
    shards_skipped: int  # already complete from an earlier run


def _check_compatible(dataset: Dataset, pretransform: Pretransform) -> None:
    # audio datasets carry these attributes (AudioTextDataset, TonesDataset); others are checked per batch
    if getattr(dataset, "random_crop", False):
        raise ValueError("encode_to_shards needs a deterministic dataset: build it with random_crop=False")
    for name in ("sample_rate", "audio_channels"):
        value = getattr(dataset, name, None)
        if value is not None and value != getattr(pretransform, name):
            raise ValueError(
                f"the dataset has {name}={value} but the pretransform expects {getattr(pretransform, name)}: "
                f"build the dataset with {name}={getattr(pretransform, name)}"
            )


def _prepare_index(out_dir: Path, index: dict) -> None:
    """Write ``plan.json``, or check that the plan (or finished index) already there is the same encoding."""
    path = out_dir / INDEX if (out_dir / INDEX).is_file() else out_dir / PLAN
    if path.is_file():
        existing = json.loads(path.read_text())
        differ = sorted(k for k in index.keys() | existing.keys() if index.get(k) != existing.get(k))
        if differ:
            details = "; ".join(f"{k}: found {existing.get(k)!r}, now {index.get(k)!r}" for k in differ)
            raise ValueError(
                f"{out_dir} holds an encoding that differs in {', '.join(differ)} ({details}): "
                "resume with the same pretransform, dataset and shard_size, or write to a fresh directory"
            )
        return
    atomic_write(path, lambda f: f.write(json.dumps(index, indent=2).encode()))


def _finish_index(out_dir: Path) -> None:
    """Every shard is written: the plan becomes the index (an atomic rename)."""
    if (out_dir / PLAN).is_file():
        os.replace(out_dir / PLAN, out_dir / INDEX)


def _collate_exact(items: Sequence[dict]) -> dict:
    """``collate``, but seconds stay Python floats: a float32 tensor would round them before they are stored."""
    seconds = {key: [item[key] for item in items] for key in ("seconds_start", "seconds_total")}
    return {**collate(items), **seconds}


@torch.inference_mode()
def _encode_batch(batch: dict, pretransform: Pretransform, device: str | torch.device) -> dict:
    audio = batch["audio"].to(device)
    B, _, N = audio.shape
    ratio = pretransform.downsampling_ratio
    if N % ratio:
        raise ValueError(
            f"items have {N} samples, not a multiple of the downsampling ratio {ratio}: set num_samples to a multiple"
        )
    latents = pretransform.encode(audio).float().cpu()  # (B, latent_channels, T)
    if latents.shape[-1] != N // ratio:
        raise ValueError(
            f"{type(pretransform).__name__} gave {latents.shape[-1]} frames for {N} samples, not {N // ratio}"
        )
    return {
        "latents": latents,
        # (B, N) -> (B, T, ratio) -> (B, T): a latent frame is real if any of its samples is
        "padding_mask": batch["padding_mask"].view(B, N // ratio, ratio).any(dim=-1),
        "prompt": batch["prompt"],
        "seconds_start": batch["seconds_start"],
        "seconds_total": batch["seconds_total"],
        "id": batch["id"],
    }


def _merge(parts: Sequence[dict]) -> dict:
    """Concatenate encoded batches into one shard: tensors along dim 0, lists end to end."""
    shard = {}
    for key, first in parts[0].items():
        if isinstance(first, torch.Tensor):
            shard[key] = torch.cat([part[key] for part in parts])
        else:
            shard[key] = [value for part in parts for value in part[key]]
    return shard


def _plan_batches(
    shards: Sequence[int], shard_size: int, batch_size: int, num_items: int
) -> list[tuple[int, list[int]]]:
    """(shard, item indices) of every batch, in order, for one DataLoader over all the shards; no batch straddles
    two shards."""
    plan = []
    for k in shards:
        stop = min((k + 1) * shard_size, num_items)
        for start in range(k * shard_size, stop, batch_size):
            plan.append((k, list(range(start, min(start + batch_size, stop)))))
    return plan


def encode_to_shards(
    dataset: Dataset,
    pretransform: Pretransform,
    out_dir: str | Path,
    shard_size: int = 256,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> EncodeSummary:
    """Encode ``dataset`` (items in ``arc.data.audio``'s format, deterministic: no random crop) with
    ``pretransform`` (already on ``device``) into shards under ``out_dir``.

    Resumable: shards already complete are skipped without loading or encoding, so rerunning after a crash
    encodes only what is missing. Rerunning with a different pretransform, item count or shard size is refused.
    """
    _check_compatible(dataset, pretransform)
    out_dir = Path(out_dir)
    num_items = len(dataset)
    if num_items == 0:
        raise ValueError("encode_to_shards got an empty dataset")
    num_shards = math.ceil(num_items / shard_size)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = {
        "format": FORMAT,
        "pretransform": describe_pretransform(pretransform),
        "num_items": num_items,
        "shard_size": shard_size,
        "shards": [shard_name(k) for k in range(num_shards)],
    }
    _prepare_index(out_dir, index)

    todo = [k for k in range(num_shards) if not (out_dir / shard_name(k)).is_file()]
    if not todo:
        _finish_index(out_dir)
        return EncodeSummary(items=num_items, shards_written=0, shards_skipped=num_shards)
    plan = _plan_batches(todo, shard_size, batch_size, num_items)
    loader = DataLoader(
        dataset, batch_sampler=[indices for _, indices in plan], collate_fn=_collate_exact, num_workers=num_workers
    )
    total = sum(len(indices) for _, indices in plan)
    parts: list[dict] = []
    # the bar is closed before any error propagates, so the error is the last thing printed
    with tqdm(total=total, desc=f"encoding into {out_dir}", unit="item") as progress:
        for i, ((k, indices), batch) in enumerate(zip(plan, loader, strict=True)):
            parts.append(_encode_batch(batch, pretransform, device))
            progress.update(len(indices))
            if i + 1 == len(plan) or plan[i + 1][0] != k:  # the last batch of shard k
                shard = _merge(parts)
                atomic_write(out_dir / shard_name(k), lambda f, shard=shard: torch.save(shard, f))
                parts = []
    _finish_index(out_dir)
    return EncodeSummary(items=num_items, shards_written=len(todo), shards_skipped=num_shards - len(todo))


class LatentDataset(Dataset):
    """Latent items (``latents`` (latent_channels, T), ``padding_mask`` (T,), ``prompt``, ``seconds_start``,
    ``seconds_total``, ``id``) from a directory written by ``encode_to_shards``.

    Shards are memory-mapped on first use, so only the pages of items read are loaded. The cache is dropped when
    the dataset is pickled, so each DataLoader worker maps the files itself.
    """

    def __init__(self, shard_dir: str | Path):
        super().__init__()
        self.shard_dir = Path(shard_dir)
        index_path = self.shard_dir / INDEX
        if (self.shard_dir / PLAN).is_file() and not index_path.is_file():
            raise InvalidInputError(
                f"{self.shard_dir}: the encoding did not finish ({PLAN}, no {INDEX}); rerun arc-encode with the "
                "same arguments to complete it"
            )
        if not index_path.is_file():
            raise MissingFileError(
                f"{self.shard_dir} has no {INDEX}: not a latent directory (write one with arc-encode)"
            )
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT:
            raise ValueError(f"{index_path}: format {index.get('format')!r}, expected {FORMAT!r}")
        missing = [name for name in index["shards"] if not (self.shard_dir / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{self.shard_dir}: {len(missing)} of the {len(index['shards'])} shards listed in {INDEX} are missing "
                f"({', '.join(missing[:5])}): the encoding did not finish; rerun arc-encode with the same arguments"
            )
        self.pretransform: dict[str, str | int] = index["pretransform"]
        self.num_items: int = index["num_items"]
        self.shard_size: int = index["shard_size"]
        self.shard_files: list[str] = index["shards"]
        self._shards: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.num_items

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str | float]:
        if not 0 <= index < self.num_items:
            raise IndexError(f"index {index} out of range for {self.num_items} items")
        k, j = divmod(index, self.shard_size)
        shard = self._shard(k)
        return {
            # clone: a view would send the whole mapped shard through a DataLoader worker's queue
            "latents": shard["latents"][j].clone(),
            "padding_mask": shard["padding_mask"][j].clone(),
            "prompt": shard["prompt"][j],
            "seconds_start": shard["seconds_start"][j],
            "seconds_total": shard["seconds_total"][j],
            "id": shard["id"][j],
        }

    def _shard(self, k: int) -> dict:
        if k not in self._shards:
            path = self.shard_dir / self.shard_files[k]
            shard = torch.load(path, weights_only=True, mmap=True)
            expected = min(self.shard_size, self.num_items - k * self.shard_size)
            if len(shard["id"]) != expected:
                raise ValueError(f"{path} holds {len(shard['id'])} items, {INDEX} expects {expected}")
            self._shards[k] = shard
        return self._shards[k]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_shards": {}}
