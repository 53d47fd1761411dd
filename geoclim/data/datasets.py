"""``WindowDataset``: a sample index and its arrays, served as batches of tensors.

Batches are gathered whole: the DataLoader's sampler yields arrays of sample rows
(:class:`EpochBatchSampler`) and ``dataset[rows]`` returns the full
:class:`geoclim.types.Batch`, so the cost per batch is a handful of vectorised gathers,
not ``B`` Python calls.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from geoclim.data.windows import SampleIndex, WindowArrays, WindowSpec, gather
from geoclim.errors import ConfigError
from geoclim.types import Batch


class WindowDataset(Dataset):
    """Serves batches of windows from shared arrays.

    Args:
        arrays: the normalised arrays (shared, never copied).
        index: the samples of one split.
        spec: window spec.

    """

    def __init__(self, arrays: WindowArrays, index: SampleIndex, spec: WindowSpec):
        self.arrays, self.index, self.spec = arrays, index, spec

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: int | Sequence[int] | np.ndarray) -> Batch:
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))  # (B,), no copy for int64
        t, y, x = self.index.decode(rows)
        fields = gather(self.arrays, self.spec, t, y, x)
        return {k: torch.from_numpy(v) for k, v in fields.items()}  # type: ignore[return-value]

    def batch_sampler(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lanes: int = 0,
    ) -> EpochBatchSampler:
        """The :class:`EpochBatchSampler` of this dataset.

        ``lanes`` is not needed: the arrays are shared, so any worker serves any batch
        equally fast.
        """
        return EpochBatchSampler(
            len(self), batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )


class EpochBatchSampler(Sampler[np.ndarray]):
    """Yields int64 arrays of sample rows: this rank's share of each global batch.

    * The permutation of epoch ``e`` depends only on ``(seed, e)`` (Lightning calls
      :meth:`set_epoch`), so a run resumed from a checkpoint sees the batches an
      uninterrupted run would have seen.
    * Under DDP every global batch of ``batch_size`` samples is cut into ``world_size``
      contiguous shards, one per rank; with gradients averaged over ranks one DDP step sees
      the samples of one single-process step, so the effective batch size and the number of
      steps are those of the config.

    Args:
        n: number of samples.
        batch_size: global batch size (summed over ranks).
        shuffle: permute the samples every epoch (seeded by ``seed`` and the epoch).
        seed: base seed.
        rank: this process's rank.
        world_size: number of processes.
        drop_last: drop a last incomplete global batch.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ):
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

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self._order()
        for b in range(len(self)):
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            # arrays, not lists: the dataset indexes with them as they are
            yield rows if self.world_size == 1 else np.array_split(rows, self.world_size)[self.rank]


def _as_is(batch: Any) -> Any:
    """The collate function of whole batches (a :class:`Batch`): they are tensors already."""
    return batch


class BatchDataset(Protocol):
    """What :func:`batch_loader` serves: ``dataset[rows]`` is a whole batch.

    The dataset chooses the sampler that orders its rows (:class:`WindowDataset`: a
    permutation of all samples; :class:`geoclim.data.lazy.LazyWindowDataset`: block-grouped).
    """

    def __len__(self) -> int: ...

    def __getitem__(self, rows: np.ndarray) -> Batch: ...

    def batch_sampler(
        self, batch_size: int, *, shuffle: bool, seed: int, rank: int, world_size: int, lanes: int
    ) -> EpochBatchSampler:
        """The sampler yielding this dataset's batches of rows (``lanes``: worker count)."""
        ...


def batch_loader(
    dataset: BatchDataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> DataLoader:
    """A DataLoader of whole batches of either backend, this rank's share of each.

    The dataset's own sampler yields arrays of rows and ``dataset[rows]`` the whole batch, so
    the DataLoader only moves batches (no per-sample calls, an identity collate). Workers, when
    asked for, persist across epochs and prefetch; the lazy sampler hands each a lane of its
    own blocks.
    """
    sampler = dataset.batch_sampler(
        batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, lanes=num_workers
    )
    return DataLoader(
        dataset,  # type: ignore[arg-type]
        sampler=sampler,
        batch_size=None,
        collate_fn=_as_is,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
