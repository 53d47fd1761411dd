"""Training and evaluation loaders over the datamodule's windows: epoch-seeded, rank-aware.

The datamodule's own loaders shuffle with one generator seeded once, so a run resumed from a
checkpoint would replay the first epochs' order, and Lightning's automatic
``DistributedSampler`` cannot wrap its batch sampler. :class:`EpochBatchSampler` fixes both:

* the permutation of epoch ``e`` depends only on ``(seed, e)`` (Lightning calls
  :meth:`~EpochBatchSampler.set_epoch`), so ``ckpt_path=...`` resumes exactly where an
  uninterrupted run would be;
* under DDP every global batch of ``batch_size`` samples is cut into ``world_size``
  contiguous shards, one per rank. Gradients are averaged over ranks, so one DDP step sees
  the same samples as one single-process step: the effective batch size and the number of
  steps stay those of the config, and DDP reproduces the single-process run up to float
  summation order (and the per-shard masked-loss denominators).

Batches are still gathered whole by :class:`geoclim.data.datasets.WindowDataset`.
"""

from __future__ import annotations

from collections.abc import Iterator

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Sampler

from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError


class EpochBatchSampler(Sampler[list[int]]):
    """Yields lists of sample rows: this rank's share of each global batch.

    Args:
        n: number of samples.
        batch_size: global batch size (summed over ranks).
        shuffle: permute the samples every epoch (seeded by ``seed`` and the epoch).
        seed: base seed.
        rank: this process's rank.
        world_size: number of processes.
        drop_last: drop a last incomplete global batch.

    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        if batch_size < world_size:
            raise ConfigError(
                f"data.batch_size ({batch_size}) is smaller than the number of processes "
                f"({world_size}); every rank needs at least one sample per batch"
            )
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (called by Lightning at each epoch start)."""
        self.epoch = epoch

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.n)

    def __len__(self) -> int:
        full, rest = divmod(self.n, self.batch_size)
        return full + int(rest >= self.world_size and not self.drop_last)

    def __iter__(self) -> Iterator[list[int]]:
        order = self._order()
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size]
            yield np.array_split(rows, self.world_size)[self.rank].tolist()


def make_loader(dm: GeoDataModule, split: str, *, shuffle: bool, rank: int = 0,
                world_size: int = 1) -> DataLoader:
    """A loader of whole batches of ``split`` for this rank (see the module docstring)."""
    dataset = dm.dataset(split)
    sampler = EpochBatchSampler(len(dataset), dm.batch_size, shuffle=shuffle, seed=dm.seed,
                                rank=rank, world_size=world_size)
    return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=dm.num_workers,
                      persistent_workers=dm.num_workers > 0)


class WindowLoaders(L.LightningDataModule):
    """The loaders :func:`geoclim.training.train.train` fits with, built after DDP launch.

    Loaders are created when Lightning asks for them, so each rank knows its rank and the
    world size. Training batches are sharded (see :class:`EpochBatchSampler`); validation
    runs on the whole val split on every rank (identical metrics, no padding duplicates).

    Args:
        dm: the set-up datamodule.
        shuffle: shuffle the training samples each epoch.
        val_split: split validated on (``"train"`` when over-fitting one batch).

    """

    def __init__(self, dm: GeoDataModule, *, shuffle: bool = True, val_split: str = "val"):
        super().__init__()
        self.dm, self.shuffle, self.val_split = dm, shuffle, val_split

    def train_dataloader(self) -> DataLoader:
        """Shards of the shuffled training batches for this rank."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return make_loader(self.dm, "train", shuffle=self.shuffle, rank=rank, world_size=world)

    def val_dataloader(self) -> DataLoader:
        """All validation batches, in index order."""
        return make_loader(self.dm, self.val_split, shuffle=False)
