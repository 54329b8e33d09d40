"""The Lightning data module: DataLoaders over built datasets, a deterministic train/val split."""

from __future__ import annotations

import warnings
from collections import Counter

import lightning as L
import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset

from arc.data.audio import collate


def split_dataset(dataset: Dataset, val_fraction: float, seed: int) -> tuple[Subset, Subset]:
    """Split into (train, val) Subsets, the val part a seeded random ``val_fraction`` (at least one item); both
    keep the dataset's order. Both share the dataset, so val items are cropped as the dataset crops: for fixed
    val crops build a separate dataset with ``random_crop=False``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    num_val = max(1, round(n * val_fraction))
    if num_val >= n:
        raise ValueError(f"val_fraction={val_fraction} of {n} items leaves no training items")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    return Subset(dataset, sorted(order[num_val:])), Subset(dataset, sorted(order[:num_val]))


def base_datasets(dataset: Dataset) -> list[Dataset]:
    """The datasets under any Subset / ConcatDataset wrapping, each once."""
    if isinstance(dataset, Subset):
        return base_datasets(dataset.dataset)
    if isinstance(dataset, ConcatDataset):
        found = [base for part in dataset.datasets for base in base_datasets(part)]
        return list({id(base): base for base in found}.values())
    return [dataset]


class EpochShuffleSampler(Sampler[int]):
    """A permutation of ``range(size)`` drawn from ``(seed, epoch)`` alone, so a run resumed at epoch k sees the
    order the uninterrupted run saw. Lightning calls ``set_epoch`` at every epoch start (and wraps the sampler
    in a ``DistributedSamplerWrapper`` under DDP). ``resume(epoch, skip)`` makes the next pass over that epoch
    start ``skip`` items into its order: a run resumed mid-epoch trains on exactly the batches it had not seen."""

    def __init__(self, size: int, seed: int):
        self.size = size
        self.seed = seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume(self, epoch: int, skip: int) -> None:
        if not 0 <= skip <= self.size:
            raise ValueError(f"cannot skip {skip} of {self.size} items")
        self._resume = (epoch, skip)

    def __iter__(self):
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.size).tolist()
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip = self._resume[1]
        self._resume = None  # one pass only: later epochs start at their beginning
        return iter(order[skip:])

    def __len__(self) -> int:
        return self.size


class AudioDataModule(L.LightningDataModule):
    """DataLoaders over already-built datasets, batched with ``collate``.

    The train loader reshuffles every epoch, the order drawn from ``(seed, epoch)`` (``EpochShuffleSampler``);
    ``drop_last`` keeps every train batch at ``batch_size`` (a batch of one has no other prompts to contrast with).
    A DataModule has no epoch-start hook, so the training module calls ``datamodule.set_epoch(epoch)`` from its
    ``on_train_epoch_start``; Lightning creates the epoch's DataLoader iterator after that hook (from epoch 1 on;
    epoch 0 uses the datasets' initial epoch, 0), so even persistent workers crop with the new epoch.
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset | None,
        batch_size: int,
        num_workers: int = 0,
        seed: int = 0,
        drop_last: bool = True,
    ):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if drop_last and len(train) < batch_size:
            raise ValueError(
                f"the train set has {len(train)} items, fewer than batch_size={batch_size}: with drop_last every "
                "epoch would be empty; lower batch_size"
            )
        self.train = train
        self.val = val
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.drop_last = drop_last
        self.train_sampler = EpochShuffleSampler(len(train), seed)

    def _loader(self, dataset: Dataset, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=self.train_sampler if shuffle else None,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=drop_last,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader | list:
        # an empty list is Lightning's "no validation batches"
        return [] if self.val is None else self._loader(self.val, shuffle=False, drop_last=False)

    def set_epoch(self, epoch: int) -> None:
        """Pass ``epoch`` to every training dataset that has ``set_epoch`` (it seeds their random crops)."""
        for dataset in base_datasets(self.train):
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)

    def resume_mid_epoch(self, epoch: int, batches_done: int, world_size: int) -> None:
        """The next pass over the train set continues ``epoch`` after the ``batches_done`` batches each of the
        ``world_size`` processes already trained on (DDP hands rank r every world_size-th item of the order)."""
        self.train_sampler.resume(epoch, batches_done * self.batch_size * world_size)

    def skipped(self) -> dict[str, int]:
        """Bad rows dropped by the train and val datasets, merged by reason (a shared dataset counted once)."""
        datasets = base_datasets(self.train) + ([] if self.val is None else base_datasets(self.val))
        unique = {id(dataset): dataset for dataset in datasets}.values()
        counts: Counter[str] = Counter()
        for dataset in unique:
            if hasattr(dataset, "skipped"):
                counts.update(dataset.skipped)
        return dict(counts)


def restore_data_position(trainer: L.Trainer) -> None:
    """At the start of fitting: on a resume from a mid-epoch checkpoint (where Lightning does not call
    ``on_train_epoch_start``), set the data module's epoch and skip the batches that epoch already trained on, so
    the resumed run sees exactly the data the uninterrupted one would have. Call from ``on_train_start``."""
    loop = trainer.fit_loop
    if not loop.restarted_mid_epoch:
        return
    # Lightning warns that a plain DataLoader cannot resume mid-epoch; this function is what makes it resume
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
    set_datamodule_epoch(trainer)
    datamodule = getattr(trainer, "datamodule", None)
    if not hasattr(datamodule, "resume_mid_epoch"):
        raise TypeError(
            f"cannot resume mid-epoch: the data module {type(datamodule).__name__} has no resume_mid_epoch"
        )
    datamodule.resume_mid_epoch(
        trainer.current_epoch, loop.epoch_loop.batch_progress.current.processed, trainer.world_size
    )


def set_datamodule_epoch(trainer: L.Trainer) -> None:
    """Pass the trainer's epoch to its data module (random crops are seeded by epoch; a LightningDataModule has no
    epoch hook of its own, so training modules call this from ``on_train_epoch_start``)."""
    datamodule = getattr(trainer, "datamodule", None)
    if hasattr(datamodule, "set_epoch"):
        datamodule.set_epoch(trainer.current_epoch)
