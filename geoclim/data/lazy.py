"""Out-of-core windows: chunk-aligned time blocks of a lazily opened (dask-backed) dataset.

The in-memory backend holds every normalised array once (:class:`WindowArrays`). Data larger
than memory is opened lazily instead (``data.source.chunks`` set: xarray + dask over zarr or
netCDF) and read in *blocks* of init times, each a whole number of the store's time chunks:

    block b serves inits   [b * S, (b + 1) * S)               (S = block_steps)
    and reads times        [b * S - T_in + 1, (b + 1) * S + L)  (all variables, all space)

A block is normalised into an ordinary :class:`WindowArrays` and its windows are gathered
with the in-memory :func:`gather`, so a lazy batch equals the in-memory batch of the same
sample rows exactly. Each process (DataLoader worker) keeps a few blocks in a small cache.

Order (:class:`BlockBatchSampler`): epoch ``e`` permutes the blocks with ``(seed, e)``, takes
them ``blocks_in_memory`` at a time and permutes the samples of each group, so batches mix
samples across blocks while a worker reads each block about once. Global batches are then
cut and sharded over DDP ranks exactly as :class:`EpochBatchSampler` does, and handed to the
DataLoader's workers in lanes (worker ``w`` gets a contiguous run of batches), so the blocks a
worker reads are its own.
"""

from __future__ import annotations

import logging
import math
import os
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence

import dask
import numpy as np
import torch
import xarray as xr
from torch.utils.data import Dataset, get_worker_info

from geoclim.data import schema
from geoclim.data.datasets import EpochBatchSampler
from geoclim.data.windows import SampleIndex, WindowArrays, WindowSpec, gather
from geoclim.errors import ConfigError
from geoclim.types import TIME, Batch

log = logging.getLogger(__name__)

BACKENDS = ("memory", "lazy")
HALO_SHARE = 4
"""A derived block holds at least this many times its halo (``T_in + L - 1``) of init times."""


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


def time_chunk(ds: xr.Dataset) -> int:
    """The largest time chunk of the dask-backed variables (1 when none is chunked in time)."""
    sizes = [
        max(da.chunksizes[TIME]) for da in ds.data_vars.values() if da.chunks and TIME in da.dims
    ]
    return max(sizes, default=1)


def derive_block_steps(chunk: int, spec: WindowSpec) -> int:
    """The smallest multiple of ``chunk`` holding :data:`HALO_SHARE` halos of init times."""
    halo = spec.input_steps + spec.lead_steps - 1
    return chunk * max(1, math.ceil(HALO_SHARE * halo / chunk))


class PackedMask:
    """A ``(T, H, W)`` bool mask stored as bits; slicing along time returns bool arrays.

    :func:`geoclim.data.windows.build_index` only indexes its mask along time (a slice, or an
    array of steps), so it indexes from this one unchanged while the mask takes an eighth of a
    bool array.
    """

    def __init__(self, packed: np.ndarray, grid_shape: tuple[int, int]):
        self.packed, self.grid_shape = packed, grid_shape  # (T, ceil(H * W / 8)) uint8

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(T, H, W)``."""
        return (self.packed.shape[0], *self.grid_shape)

    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray:
        h, w = self.grid_shape
        bits = np.unpackbits(self.packed[rows], axis=1, count=h * w)
        return bits.view(bool).reshape(-1, h, w)


class BlockReader:
    """Reads and normalises time blocks of a lazy dataset (a small cache per process).

    Args:
        ds: the dask-backed canonical dataset (the task's variables).
        build: turns a time slice of ``ds`` into normalised :class:`WindowArrays` (the
            datamodule's array builder, so both backends encode identically).
        spec: window spec (input and lead steps set the halo).
        block_steps: init times per block; ``None`` derives it from the time chunks.
        blocks_in_memory: blocks cached per process (the sampler mixes this many).

    """

    def __init__(
        self,
        ds: xr.Dataset,
        build: Callable[[xr.Dataset], WindowArrays],
        spec: WindowSpec,
        *,
        block_steps: int | None = None,
        blocks_in_memory: int = 2,
    ):
        if block_steps is not None and block_steps < 1:
            raise ConfigError(f"data.lazy.block_steps must be >= 1 or null, got {block_steps}")
        if blocks_in_memory < 1:
            raise ConfigError(f"data.lazy.blocks_in_memory must be >= 1, got {blocks_in_memory}")
        self.ds, self.build, self.spec = ds, build, spec
        self.n_time = ds.sizes[TIME]
        self.block_steps = block_steps or derive_block_steps(time_chunk(ds), spec)
        self.blocks_in_memory = blocks_in_memory
        self.space = schema.space_dims(ds)
        h = ds.sizes[self.space[0]]
        self.grid_shape = (h, ds.sizes[self.space[1]] if len(self.space) > 1 else 1)
        log.info(
            "lazy backend: blocks of %d init times (%d blocks), %d cached per process",
            self.block_steps,
            self.n_blocks,
            blocks_in_memory,
        )
        self._cache: OrderedDict[int, tuple[int, WindowArrays]] = OrderedDict()
        self._pid = os.getpid()

    @property
    def n_blocks(self) -> int:
        """Number of blocks along the time axis."""
        return -(-self.n_time // self.block_steps)

    def time_span(self, block: int) -> tuple[int, int]:
        """``[lo, hi)`` time positions block ``block`` reads (its inits plus the halo)."""
        s = self.block_steps
        lo = max(0, block * s - self.spec.input_steps + 1)
        return lo, min(self.n_time, (block + 1) * s + self.spec.lead_steps)

    def block(self, block: int) -> tuple[int, WindowArrays]:
        """``(lo, arrays)``: the normalised arrays of ``block``, time axis starting at ``lo``."""
        if self._pid != os.getpid():  # a forked worker: its own cache (and dask state)
            self._cache.clear()
            self._pid = os.getpid()
        if block in self._cache:
            self._cache.move_to_end(block)
            return self._cache[block]
        lo, hi = self.time_span(block)
        # in a DataLoader worker the workers are the parallelism: no dask thread pool each
        scheduler = "synchronous" if get_worker_info() is not None else None
        with dask.config.set(scheduler=scheduler):  # one compute reads every variable
            arrays = self.build(self.ds.isel({TIME: slice(lo, hi)}).load())
        self._cache[block] = (lo, arrays)
        while len(self._cache) > self.blocks_in_memory:
            self._cache.popitem(last=False)
        return lo, arrays

    def target_valid(self, targets: Sequence[str], exclude: Sequence[str] = ()) -> PackedMask:
        """Where every target is observed and counts, read block by block (targets only).

        Args:
            targets: target variables; a value counts where all are finite.
            exclude: mask variables (True: imputed, does not count).

        Returns:
            The ``(T, H, W)`` mask of :meth:`WindowArrays.target_valid`, as bits.

        """
        space, (h, w) = self.space, self.grid_shape
        packed = np.empty((self.n_time, -(-h * w // 8)), np.uint8)
        for lo in range(0, self.n_time, self.block_steps):
            part = self.ds.isel({TIME: slice(lo, lo + self.block_steps)})
            valid = np.ones((part.sizes[TIME], h * w), bool)
            for name in targets:
                valid &= np.isfinite(part[name].transpose(TIME, *space).values).reshape(-1, h * w)
            for name in exclude:
                valid &= ~part[name].transpose(TIME, *space).values.reshape(-1, h * w)
            packed[lo : lo + part.sizes[TIME]] = np.packbits(valid, axis=1)
        return PackedMask(packed, (h, w))


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
        parts, order = [], []
        for b in np.unique(blocks):  # usually one block per batch
            sel = np.flatnonzero(blocks == b)
            lo, arrays = self.reader.block(int(b))
            fields = gather(arrays, self.spec, t[sel] - lo, y[sel], x[sel])
            fields["time_idx"] = t[sel]
            parts.append(fields)
            order.append(sel)
        if len(parts) == 1:
            return parts[0]
        inverse = np.argsort(np.concatenate(order), kind="stable")
        return {k: np.concatenate([p[k] for p in parts])[inverse] for k in parts[0]}

    def __getitem__(self, rows: int | Sequence[int] | np.ndarray) -> Batch:
        fields = self.gather(np.atleast_1d(np.asarray(rows, dtype=np.int64)))
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
        lanes: DataLoader workers (``max(1, num_workers)``); batch ``i`` of the yielded
            sequence goes to worker ``i % lanes``, so lane ``w`` is a contiguous run.

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
        self.blocks, self.blocks_in_memory, self.lanes = blocks, blocks_in_memory, max(1, lanes)

    def _order(self) -> np.ndarray:
        """All sample rows of this epoch: groups of permuted blocks, permuted within."""
        if not self.shuffle:
            return np.arange(self.n)
        rng = np.random.default_rng([self.seed, self.epoch])
        ids, inverse = np.unique(self.blocks, return_inverse=True)
        position = np.empty(ids.size, np.int64)
        position[rng.permutation(ids.size)] = np.arange(ids.size)
        group = position[inverse] // self.blocks_in_memory
        return np.lexsort((rng.random(self.n), group))

    def batch_order(self) -> list[int]:
        """Global batch numbers in the order they are yielded (lanes interleaved)."""
        lanes = np.array_split(np.arange(len(self)), self.lanes)  # longer lanes first
        return [int(lane[i]) for i in range(len(lanes[0])) for lane in lanes if i < len(lane)]

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self._order()
        for b in self.batch_order():
            rows = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield np.array_split(rows, self.world_size)[self.rank]  # int64, as the base
