"""``WindowDataset``: a sample index and its arrays, served as batches of tensors.

Batches are gathered whole: the sampler yields arrays of sample rows
(:class:`EpochBatchSampler`) and ``dataset[rows]`` returns the full
:class:`geoclim.types.Batch`, so the cost per batch is a handful of vectorised gathers,
not ``B`` Python calls.

:class:`BatchLoader` serves either backend. Its DataLoader moves *groups* of consecutive
batches (:class:`BatchGroup`, about :data:`GROUP_BYTES` each) gathered as one batch, which the
loader cuts back into the sampler's batches (views, no copy): a worker hands over a few large
tensors per group rather than every tensor of every batch, and the lazy backend gathers each
group from its blocks once. The batches, and their order, are those of the sampler.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple, Protocol

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

    def sample_nbytes(self) -> int:
        """Bytes of one sample's Batch fields (every sample has the same shapes; 0 if none)."""
        if not len(self):
            return 0
        fields = gather(self.arrays, self.spec, *self.index.decode(np.zeros(1, np.int64)))
        return sum(v.nbytes for v in fields.values())

    def batches_per_group(self, batch_size: int, num_workers: int) -> int:
        """Batches per :class:`BatchGroup`: in one process the arrays are at hand, so one."""
        return 1 if num_workers == 0 else group_batches(self.sample_nbytes(), batch_size)

    def prefetch(self, ahead: Sequence[tuple[int, ...]]) -> None:
        """Nothing to read ahead: the arrays are in memory."""

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

    def lanes(self) -> list[np.ndarray]:
        """Global batch numbers of each lane (worker), in the order each lane serves them.

        One lane here; :class:`geoclim.data.lazy.BlockBatchSampler` gives each worker its own.
        """
        return [np.arange(len(self))]

    def batch_order(self) -> list[int]:
        """Global batch numbers in the order they are yielded (lanes interleaved)."""
        lanes = self.lanes()
        return [int(lane[i]) for i in range(len(lanes[0])) for lane in lanes if i < len(lane)]

    def _rows(self, order: np.ndarray, b: int) -> np.ndarray:
        """This rank's rows of global batch ``b`` of the epoch ``order``."""
        rows = order[b * self.batch_size : (b + 1) * self.batch_size]
        # arrays, not lists: the dataset indexes with them as they are
        return rows if self.world_size == 1 else np.array_split(rows, self.world_size)[self.rank]

    def _ahead(self, order: np.ndarray, last: int, lane_end: int) -> tuple[tuple[int, ...], ...]:
        """What a lane reads after its global batch ``last`` (nothing: see the lazy sampler)."""
        return ()

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self._order()
        for b in self.batch_order():
            yield self._rows(order, b)

    def groups(self, per_group: int) -> Iterator[BatchGroup]:
        """The epoch's batches in groups of up to ``per_group`` consecutive batches of a lane.

        Round ``r`` holds group ``r`` of every lane that still has one, in lane order, so the
        DataLoader's round-robin sends lane ``w``'s groups to worker ``w`` (lanes differ in
        length by at most one batch, so only the last round can be short, and then it lacks
        the last lanes); interleaving the batches of each round restores :meth:`__iter__`.
        """
        order = self._order()
        step = per_group
        lanes = [[lane[i : i + step] for i in range(0, len(lane), step)] for lane in self.lanes()]
        for r in range(len(lanes[0])):
            for lane in lanes:
                if r < len(lane):
                    rows = [self._rows(order, int(b)) for b in lane[r]]
                    ahead = self._ahead(order, int(lane[r][-1]), int(lane[-1][-1]))
                    yield BatchGroup(np.concatenate(rows), tuple(len(x) for x in rows), ahead, r)

    def n_groups(self, per_group: int) -> int:
        """How many groups :meth:`groups` yields."""
        return sum(-(-len(lane) // per_group) for lane in self.lanes())


GROUP_BYTES = 16 * 2**20
"""About this many bytes of batches travel together as one :class:`BatchGroup`."""


class BatchGroup(NamedTuple):
    """Consecutive batches of one lane, gathered as one batch (one DataLoader item).

    Attributes:
        rows: ``(sum(sizes),)`` int64 sample rows of the batches, concatenated.
        sizes: rows of each batch.
        ahead: what the lane reads next (the lazy backend's groups of blocks, soonest first),
            a read-ahead hint.
        round: the round of :meth:`EpochBatchSampler.groups` the group belongs to.

    """

    rows: np.ndarray
    sizes: tuple[int, ...]
    ahead: tuple[tuple[int, ...], ...]
    round: int


def group_batches(sample_nbytes: int, batch_size: int) -> int:
    """Batches per group: as many as fit in :data:`GROUP_BYTES` (at least one)."""
    return max(1, GROUP_BYTES // max(1, sample_nbytes * batch_size))


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

    def batches_per_group(self, batch_size: int, num_workers: int) -> int:
        """How many batches one :class:`BatchGroup` gathers together."""
        ...

    def prefetch(self, ahead: Sequence[tuple[int, ...]]) -> None:
        """Start reading what :attr:`BatchGroup.ahead` names (in the background)."""
        ...


class _Groups(Dataset):
    """The DataLoader's dataset: ``groups[group]`` is ``(batch of all its rows, sizes, round)``."""

    def __init__(self, dataset: BatchDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, group: BatchGroup) -> tuple[Batch, tuple[int, ...], int]:
        self.dataset.prefetch(group.ahead)
        return self.dataset[group.rows], group.sizes, group.round


class _GroupSampler(Sampler[BatchGroup]):
    """The groups of a batch sampler's epoch (its epoch set through the batch sampler)."""

    def __init__(self, sampler: EpochBatchSampler, per_group: int):
        self.sampler, self.per_group = sampler, per_group

    def __len__(self) -> int:
        return self.sampler.n_groups(self.per_group)

    def __iter__(self) -> Iterator[BatchGroup]:
        return self.sampler.groups(self.per_group)


def _split(batch: Batch, sizes: tuple[int, ...]) -> list[Batch]:
    """The batches of a group: views of its tensors along the batch dim."""
    if len(sizes) == 1:
        return [batch]
    parts = {k: v.split(sizes) for k, v in batch.items()}  # type: ignore[attr-defined]
    return [{k: p[i] for k, p in parts.items()} for i in range(len(sizes))]  # type: ignore[misc]


class BatchLoader:
    """Whole batches of a :class:`BatchDataset`, in its sampler's order, moved in groups.

    Lightning sets the epoch through :attr:`sampler` (the batch sampler; iterating it yields
    the rows of every batch in the order the loader serves them).

    Args:
        dataset: the dataset (either backend).
        sampler: its batch sampler.
        per_group: batches gathered together (see :meth:`BatchDataset.batches_per_group`).
        num_workers: DataLoader workers (persistent across epochs).

    """

    batch_size = batch_sampler = None  # whole batches, as a DataLoader with batch_size=None

    def __init__(
        self, dataset: BatchDataset, sampler: EpochBatchSampler, per_group: int, num_workers: int
    ):
        self.dataset, self.sampler, self.per_group = dataset, sampler, per_group
        self.num_workers = num_workers
        self.loader = DataLoader(
            _Groups(dataset),
            sampler=_GroupSampler(sampler, per_group),
            batch_size=None,
            collate_fn=_as_is,
            num_workers=num_workers,
            persistent_workers=num_workers > 0,
        )

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[Batch]:
        pending: list[list[Batch]] = []  # the batches of the current round's groups
        current = 0
        for batch, sizes, r in self.loader:
            if r != current:
                yield from _interleave(pending)
                pending, current = [], r
            pending.append(_split(batch, sizes))
        yield from _interleave(pending)


def _interleave(parts: list[list[Batch]]) -> Iterator[Batch]:
    """Batch ``i`` of every part in turn, for ``i = 0, 1, ...`` (parts may be shorter)."""
    for i in range(max((len(p) for p in parts), default=0)):
        yield from (p[i] for p in parts if i < len(p))


def batch_loader(
    dataset: BatchDataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader:
    """A :class:`BatchLoader` of whole batches of either backend, this rank's share of each.

    The dataset's own sampler yields arrays of rows and ``dataset[rows]`` the whole batch, so
    the DataLoader only moves batches (no per-sample calls, an identity collate), several at a
    time. Workers, when asked for, persist across epochs and prefetch; the lazy sampler hands
    each a lane of its own blocks.
    """
    sampler = dataset.batch_sampler(
        batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size, lanes=num_workers
    )
    per_group = dataset.batches_per_group(batch_size, num_workers)
    return BatchLoader(dataset, sampler, per_group, num_workers)
