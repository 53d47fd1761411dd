"""Out-of-core windows: chunk-aligned time blocks of a lazily opened (dask-backed) dataset.

The in-memory backend holds every normalised array once (:class:`WindowArrays`). Data larger
than memory is opened lazily instead (``data.source.chunks`` set: xarray + dask over zarr or
netCDF) and read in *blocks* of init times, each a whole number of the store's time chunks:

    block b serves inits   [b * S, (b + 1) * S)               (S = block_steps)
    and reads times        [b * S - T_in + 1, (b + 1) * S + L)  (all variables, all space)

A block is normalised into an ordinary :class:`WindowArrays` and its windows are gathered
with the in-memory :func:`gather`, so a lazy batch equals the in-memory batch of the same
sample rows exactly. Each process (DataLoader worker) keeps a few blocks in a small cache and
reads the blocks its next batches need in a background thread (read-ahead) while it gathers
from the blocks it has: :class:`~geoclim.data.datasets.BatchGroup` names them. The reading
is :mod:`geoclim.data.blocks`; this module serves batches from it and orders them.

Order (:class:`BlockBatchSampler`): epoch ``e`` permutes the blocks with ``(seed, e)``, takes
them ``blocks_in_memory`` at a time and permutes the samples of each group, so batches mix
samples across blocks while a worker reads each block about once. Global batches are then
cut and sharded over DDP ranks exactly as :class:`EpochBatchSampler` does, and handed to the
DataLoader's workers in lanes (worker ``w`` gets a contiguous run of batches), so the blocks a
worker reads are its own.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset

from geoclim.data.blocks import BlockReader, Span
from geoclim.data.datasets import EpochBatchSampler, group_batches
from geoclim.data.windows import SampleIndex, WindowSpec, gather
from geoclim.errors import ConfigError
from geoclim.types import TIME, Batch

BACKENDS = ("memory", "lazy")


def is_dask_backed(ds: xr.Dataset) -> bool:
    """Whether any data variable of ``ds`` is a dask array (opened with ``chunks``)."""
    return any(da.chunks is not None for da in ds.data_vars.values())


def choose_backend(backend: str | None, ds: xr.Dataset) -> str:
    """``backend`` checked, or (``None``) ``lazy`` for dask-backed data and ``memory`` otherwise.

    Raises:
        ConfigError: an unknown backend, or ``lazy`` for data that is not dask-backed.
    """
    if backend is None:
        return "lazy" if is_dask_backed(ds) else "memory"
    if backend not in BACKENDS:
        raise ConfigError(f"data.backend = {backend!r}; expected one of {list(BACKENDS)} or null")
    if backend == "lazy" and not is_dask_backed(ds):
        raise ConfigError(
            "data.backend = 'lazy' needs a dask-backed dataset: set data.source.chunks "
            "(e.g. {} for the store's own chunks, or {time: 168})"
        )
    return backend


class LazyWindowDataset(Dataset):
    """Batches of windows gathered from the blocks of a :class:`BlockReader`.

    Args:
        reader: the block reader.
        index: the samples of one split (global time positions).
        spec: window spec.

    """

    def __init__(self, reader: BlockReader, index: SampleIndex, spec: WindowSpec):
        self.reader, self.index, self.spec = reader, index, spec

    def __len__(self) -> int:
        return len(self.index)

    def block_of(self) -> np.ndarray:
        """``(N,)`` the block of every sample (by its init time)."""
        return self.index.time // self.reader.block_steps

    def gather(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """The Batch fields (numpy) of sample ``rows``, in that order."""
        t, y, x = self.index.decode(rows)
        blocks = t // self.reader.block_steps
        spans: list[Span] = []
        wanted = np.unique(blocks).tolist()
        for b in wanted:  # usually all in the span of one group
            if not any(b in s.blocks for s in spans):
                spans.append(self.reader.span(b, keep=spans, wanted=wanted))
        out: dict[str, np.ndarray] = {}
        for span in spans:
            sel = np.isin(blocks, span.blocks) if len(spans) > 1 else slice(None)
            start = t[sel] - _lookup(span.shift, blocks[sel])  # (n,) first rows in the span
            fields = gather(span.arrays, self.spec, start, y[sel], x[sel])
            fields["time_idx"] = t[sel]
            if len(spans) == 1:
                return fields
            for k, v in fields.items():  # each span's samples straight into their rows
                out.setdefault(k, np.empty((rows.size, *v.shape[1:]), v.dtype))[sel] = v
        return out

    def __getitem__(self, rows: int | Sequence[int] | np.ndarray) -> Batch:
        fields = self.gather(np.atleast_1d(np.asarray(rows, dtype=np.int64)))
        return {k: torch.from_numpy(v) for k, v in fields.items()}  # type: ignore[return-value]

    def sample_nbytes(self) -> int:
        """Bytes of one sample's Batch fields, from a read of one window's times (0 if none)."""
        if not len(self):
            return 0
        t, y, x = self.index.decode(np.zeros(1, np.int64))
        lo = int(t[0]) - self.spec.input_steps + 1
        part = self.reader.ds.isel({TIME: slice(lo, int(t[0]) + self.spec.lead_steps + 1)})
        arrays = self.reader.build(part.load(scheduler="synchronous"))
        return sum(v.nbytes for v in gather(arrays, self.spec, t - lo, y, x).values())

    def batches_per_group(self, batch_size: int, num_workers: int) -> int:
        """Batches gathered together: about :data:`~geoclim.data.datasets.GROUP_BYTES`."""
        return group_batches(self.sample_nbytes(), batch_size)

    def prefetch(self, ahead: Sequence[tuple[int, ...]]) -> None:
        """Read the groups of blocks ``ahead`` in the background (:meth:`BlockReader.prefetch`)."""
        self.reader.prefetch(ahead)

    def batch_sampler(
        self,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        lanes: int = 0,
    ) -> BlockBatchSampler:
        """The block-grouped :class:`BlockBatchSampler` of this dataset.

        Batches go out in ``lanes`` lanes (the DataLoader's workers), so each worker reads
        its own blocks.
        """
        return BlockBatchSampler(
            self.block_of(),
            batch_size,
            shuffle=shuffle,
            seed=seed,
            rank=rank,
            world_size=world_size,
            blocks_in_memory=self.reader.blocks_in_memory,
            lanes=lanes,
        )


def _lookup(table: dict[int, int], keys: np.ndarray) -> np.ndarray:
    """``table[k]`` for every entry of ``keys`` (a few distinct keys)."""
    if len(table) == 1:
        return np.full(keys.shape, next(iter(table.values())), keys.dtype)
    out = np.empty_like(keys)
    for k, v in table.items():
        out[keys == k] = v
    return out


class BlockBatchSampler(EpochBatchSampler):
    """:class:`EpochBatchSampler` with a block-grouped order, handed out in worker lanes.

    Args:
        blocks: ``(N,)`` block of every sample.
        batch_size: global batch size (summed over ranks).
        shuffle: permute blocks and samples every epoch (seeded by ``seed`` and the epoch).
        seed: base seed.
        rank: this process's rank.
        world_size: number of processes.
        blocks_in_memory: blocks whose samples are shuffled together.
        lanes: DataLoader workers (``max(1, num_workers)``): lane ``w``, a contiguous run of
            batches, goes to worker ``w`` (:meth:`EpochBatchSampler.groups`).

    """

    def __init__(
        self,
        blocks: np.ndarray,
        batch_size: int,
        *,
        shuffle: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        blocks_in_memory: int = 2,
        lanes: int = 1,
    ):
        super().__init__(
            len(blocks), batch_size, shuffle=shuffle, seed=seed, rank=rank, world_size=world_size
        )
        self.blocks, self.blocks_in_memory, self.n_lanes = blocks, blocks_in_memory, max(1, lanes)
        # the epoch's groups of blocks, set by _order: end position of each in the order, and
        # its blocks (unshuffled: each run of one block is a group)
        self._plan: tuple[np.ndarray, list[tuple[int, ...]]] = (np.zeros(0, np.int64), [])

    def _order(self) -> np.ndarray:
        """All sample rows of this epoch: groups of permuted blocks, permuted within."""
        if not self.shuffle:
            starts, ends = _runs(self.blocks)
            self._plan = (ends, [(int(self.blocks[s]),) for s in starts])
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, self.epoch])
        ids, inverse = np.unique(self.blocks, return_inverse=True)
        permutation = rng.permutation(ids.size)  # block at each position
        position = np.empty(ids.size, np.int64)
        position[permutation] = np.arange(ids.size)
        size = self.blocks_in_memory
        group = position[inverse] // size
        del inverse  # (N,) each: the temporaries of large indexes add up
        order = np.lexsort((rng.random(self.n), group))
        ends = np.cumsum(np.bincount(group))  # group g ends at ends[g] in the order
        members = [ids[permutation[g * size : (g + 1) * size]] for g in range(ends.size)]
        self._plan = (ends, [tuple(int(b) for b in m) for m in members])
        return order

    def lanes(self) -> list[np.ndarray]:
        """``n_lanes`` contiguous runs of the global batches (longer lanes first)."""
        return np.array_split(np.arange(len(self)), self.n_lanes)

    def _ahead(self, order: np.ndarray, last: int, lane_end: int) -> tuple[tuple[int, ...], ...]:
        """The group of blocks holding batch ``last``'s end, then the next group.

        The next group's only if the lane (ending with batch ``lane_end``) reaches it.
        """
        ends, members = self._plan
        p = min((last + 1) * self.batch_size, self.n) - 1  # order position of that sample
        g = int(np.searchsorted(ends, p, side="right"))
        if g >= len(members):
            return ()
        stop = min((lane_end + 1) * self.batch_size, self.n)
        reaches = g + 1 < len(members) and ends[g] < stop
        return (members[g], members[g + 1]) if reaches else (members[g],)


def _runs(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(starts, ends)`` of the runs of equal consecutive ``labels``."""
    starts = np.flatnonzero(np.diff(labels, prepend=labels[:1] - 1)) if labels.size else labels
    return starts, np.append(starts[1:], labels.size).astype(np.int64)
