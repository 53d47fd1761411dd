"""Time blocks of a lazily opened (dask-backed) dataset, read and normalised per process.

Block ``b`` serves inits ``[b * S, (b + 1) * S)`` (``S = block_steps``, a whole number of the
store's time chunks) and reads times ``[b * S - T_in + 1, (b + 1) * S + L)``: all variables,
all space. :class:`BlockReader` reads the blocks a group of the sampler shuffles together as
one :class:`Span` (one set of normalised :class:`~geoclim.data.windows.WindowArrays`), keeps a
few in a small cache, and reads the next group in a background thread (read-ahead) while
batches are gathered from the current one (:mod:`geoclim.data.lazy`). Data not safe to read
beside other netCDF work (anything but zarr: :func:`~geoclim.data.direct_read.thread_safe`)
is read when a batch wants it, with no read-ahead thread; DataLoader workers, processes,
read ahead for it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from torch.utils.data import get_worker_info

from geoclim.data import schema
from geoclim.data.direct_read import PlainRead, plain_read, thread_safe
from geoclim.data.windows import WindowArrays, WindowSpec
from geoclim.errors import ConfigError
from geoclim.types import TIME

log = logging.getLogger(__name__)

HALO_SHARE = 4
"""A derived block holds at least this many times its halo (``T_in + L - 1``) of init times."""

MEMORY_GB = 0.6
"""Default budget (GB) for the block arrays of all reading processes together (``memory_gb``)."""


def time_chunk(ds: xr.Dataset) -> int:
    """The largest time chunk of the dask-backed variables (1 when none is chunked in time)."""
    sizes = [
        max(da.chunksizes[TIME]) for da in ds.data_vars.values() if da.chunks and TIME in da.dims
    ]
    return max(sizes, default=1)


def derive_block_steps(
    chunk: int, spec: WindowSpec, step_bytes: int = 0, budget_bytes: float | None = None
) -> int:
    """Init times per block: :data:`HALO_SHARE` halos, fewer where a memory budget says so.

    Args:
        chunk: the store's time chunk (a block is a whole number of them).
        spec: window spec (its halo is ``input_steps + lead_steps - 1`` times).
        step_bytes: bytes one process holds per time step a block reads
            (:func:`resident_step_bytes`).
        budget_bytes: what one process may hold in block arrays (``None``: no bound).

    Returns:
        The smallest multiple of ``chunk`` holding :data:`HALO_SHARE` halos, or, where
        ``(block + halo) * step_bytes`` would pass the budget, the largest multiple that does
        not (one chunk at least: a budget below that is logged, not met).
    """
    halo = spec.input_steps + spec.lead_steps - 1
    steps = chunk * max(1, math.ceil(HALO_SHARE * halo / chunk))
    if budget_bytes is None or step_bytes <= 0:
        return steps
    fits = chunk * ((int(budget_bytes // step_bytes) - halo) // chunk)  # (S + halo) * b <= B
    if fits < chunk:
        log.warning(
            "data.lazy.memory_gb: one time chunk (%d steps + a halo of %d) needs %.2f GB per "
            "process, over its share of the budget (%.2f GB): blocks of one chunk",
            chunk,
            halo,
            (chunk + halo) * step_bytes / 1e9,
            budget_bytes / 1e9,
        )
    return max(chunk, min(steps, fits))


def resident_step_bytes(
    grid_cells: int, channels: int, raw_itemsizes: Sequence[int], spans: int
) -> int:
    """Bytes one reading process holds per time step of a block.

    Args:
        grid_cells: ``H * W`` (stations: ``S``).
        channels: dynamic channels of the normalised arrays (float32).
        raw_itemsizes: itemsize of each time-dependent variable as read (one block of them
            is kept for the next read).
        spans: blocks' worth of normalised arrays resident at once (the cached group and the
            one read next or ahead: ``blocks_in_memory + max(blocks_in_memory, read ahead)``).
    """
    return grid_cells * (spans * 4 * channels + sum(raw_itemsizes))


def set_huge_pages(enabled: bool) -> None:
    r"""Whether numpy asks the kernel for transparent huge pages for its larger arrays.

    numpy ``madvise``\ s ``MADV_HUGEPAGE`` on arrays of 4 MB and more (``NUMPY_MADVISE_HUGEPAGE``
    sets it at import); where the kernel then compacts memory on the first touch (THP
    ``defrag = madvise``), every fresh block read and batch group stalls on its page faults,
    until memory is compacted: the lazy loader ran at 0.3x the in-memory one in the first
    round of a process and up to 0.7x later, and at 0.97x from the first round without it
    (``experiments/bench_scale/README.md``). A process-wide numpy flag (a no-op if numpy
    lacks it); the arrays are as fast to use either way once touched.
    """
    core = getattr(np, "_core", None) or getattr(np, "core", None)
    setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if setter is not None:
        setter(bool(enabled))


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


@dataclass(frozen=True)
class Span:
    """Blocks read together: their time ranges one after the other in one set of arrays.

    Attributes:
        blocks: the blocks, in array order.
        shift: for each block, its first time position minus its first array row (a sample
            of that block at time ``t`` starts its window at row ``t - shift[block]``).
        arrays: the normalised arrays.

    """

    blocks: tuple[int, ...]
    shift: dict[int, int]
    arrays: WindowArrays


class BlockReader:
    """Reads and normalises time blocks of a lazy dataset (a small cache per process).

    Args:
        ds: the dask-backed canonical dataset (the task's variables).
        build: turns a time slice of ``ds`` into normalised :class:`WindowArrays` (the
            datamodule's array builder, so both backends encode identically); its ``out``
            argument, a spare dynamic array, may receive the result.
        spec: window spec (input and lead steps set the halo).
        block_steps: init times per block; ``None`` derives it from the time chunks and the
            memory budget (:func:`derive_block_steps`).
        blocks_in_memory: blocks cached per process (the sampler mixes this many).
        prefetch_blocks: blocks read ahead per process in a background thread, on top of the
            cache (``None``: ``blocks_in_memory``, the next group, in the training process
            and none in DataLoader workers, which read ahead by themselves; 0: none). Files
            not safe to read in a thread (all but zarr) have none: ``None`` means 0 for them and
            a number above 0 is refused.
        memory_gb: budget for the block arrays (cached, read next, raw reads) of all
            reading processes together, shared equally among ``processes``; it bounds a
            derived ``block_steps`` (``None``: no bound).
        processes: processes that read blocks (the DataLoader's workers, or 1).
        huge_pages: leave numpy's transparent-huge-page hint on in this process and its
            workers (:func:`set_huge_pages`; ``False``, the default, turns it off).
        direct: read each variable whose graph is a plain read of the file as one backend
            read per block (:mod:`geoclim.data.direct_read`); the others, and all with
            ``False``, through dask.

    """

    def __init__(
        self,
        ds: xr.Dataset,
        build: Callable[..., WindowArrays],
        spec: WindowSpec,
        *,
        block_steps: int | None = None,
        blocks_in_memory: int = 2,
        prefetch_blocks: int | None = None,
        memory_gb: float | None = MEMORY_GB,
        processes: int = 1,
        huge_pages: bool = False,
        direct: bool = True,
    ):
        if block_steps is not None and block_steps < 1:
            raise ConfigError(f"data.lazy.block_steps must be >= 1 or null, got {block_steps}")
        if blocks_in_memory < 1:
            raise ConfigError(f"data.lazy.blocks_in_memory must be >= 1, got {blocks_in_memory}")
        if prefetch_blocks is not None and prefetch_blocks < 0:
            raise ConfigError(
                f"data.lazy.prefetch_blocks must be >= 0 or null, got {prefetch_blocks}"
            )
        if memory_gb is not None and not memory_gb > 0:
            raise ConfigError(f"data.lazy.memory_gb must be > 0 or null, got {memory_gb}")
        threaded = thread_safe(ds)
        if not threaded:
            if prefetch_blocks:
                raise ConfigError(
                    f"data.lazy.prefetch_blocks={prefetch_blocks}: the data is not in a zarr "
                    "store, and netCDF (HDF5) and the other backends cannot be read in a "
                    "background thread safely; set it to null or 0 and read ahead with "
                    "data.num_workers > 0, or convert the data to zarr"
                )
            prefetch_blocks = 0
        self.huge_pages = huge_pages
        set_huge_pages(huge_pages)  # before the first block read; forked workers inherit it
        self.ds, self.build, self.spec = ds, build, spec
        self.n_time = ds.sizes[TIME]
        self.blocks_in_memory = blocks_in_memory
        self.prefetch_blocks = prefetch_blocks
        timed = [n for n, v in ds.data_vars.items() if TIME in v.dims]
        self.plain: dict[Hashable, PlainRead] = {}  # the variables read without dask
        for name in timed if direct else ():
            found = plain_read(ds[name], TIME)
            if found is not None:
                self.plain[name] = found
        self.space = schema.space_dims(ds)
        h = ds.sizes[self.space[0]]
        self.grid_shape = (h, ds.sizes[self.space[1]] if len(self.space) > 1 else 1)
        self.block_steps = block_steps or self._derived_steps(memory_gb, max(1, processes))
        log.info(
            "lazy backend: blocks of %d init times (%d blocks), %d cached per process, %s; "
            "%d of %d variables read directly, the others through dask",
            self.block_steps,
            self.n_blocks,
            blocks_in_memory,
            "read ahead in a thread" if threaded else "no read-ahead thread (not zarr)",
            len(self.plain),
            len(timed),
        )
        self._cache: OrderedDict[tuple[int, ...], Span] = OrderedDict()
        self._pending: dict[tuple[int, ...], Future[Span]] = {}  # read ahead
        self._group: dict[int, tuple[int, ...]] = {}  # block -> its group, from the hints
        # arrays to reuse: dynamic arrays of dropped spans, raw variables of earlier reads
        self._spare: list[np.ndarray] = []
        self._raw: list[np.ndarray] = []
        self._lock = threading.Lock()  # guards both (the read-ahead thread takes from them)
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (spawned workers) without cache, reads in flight or thread."""
        fresh: dict[str, Any] = {
            "_cache": OrderedDict(),
            "_pending": {},
            "_spare": [],
            "_raw": [],
            "_pool": None,
        }
        return {k: v for k, v in self.__dict__.items() if k != "_lock"} | fresh

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())
        set_huge_pages(self.huge_pages)  # a spawned worker: a fresh numpy

    @property
    def n_blocks(self) -> int:
        """Number of blocks along the time axis."""
        return -(-self.n_time // self.block_steps)

    def _derived_steps(self, memory_gb: float | None, processes: int) -> int:
        """:func:`derive_block_steps` with this process's share of ``memory_gb``."""
        chunk = time_chunk(self.ds)
        if memory_gb is None:
            return derive_block_steps(chunk, self.spec)
        timed = [v for v in self.ds.data_vars.values() if TIME in v.dims]
        one = self.ds.isel({TIME: slice(0, 1)}).compute(scheduler="synchronous")  # not in place
        channels = self.build(one).dynamic.shape[-1]  # one-hot inputs widen it
        ahead = self.prefetch_blocks if self.prefetch_blocks is not None else 0
        spans = self.blocks_in_memory + max(self.blocks_in_memory, ahead)
        step = resident_step_bytes(
            int(np.prod(self.grid_shape)), channels, [v.dtype.itemsize for v in timed], spans
        )
        return derive_block_steps(chunk, self.spec, step, memory_gb * 1e9 / processes)

    def time_span(self, block: int) -> tuple[int, int]:
        """``[lo, hi)`` time positions block ``block`` reads (its inits plus the halo)."""
        s = self.block_steps
        lo = max(0, block * s - self.spec.input_steps + 1)
        return lo, min(self.n_time, (block + 1) * s + self.spec.lead_steps)

    def _own_process(self) -> None:
        """After a fork (a DataLoader worker): a cache, reads and thread of its own."""
        if self._pid != os.getpid():
            self._cache, self._pending, self._group, self._pool = OrderedDict(), {}, {}, None
            self._spare, self._raw, self._lock = [], [], threading.Lock()
            self._pid = os.getpid()

    def read(self, blocks: tuple[int, ...], scheduler: str | None = None) -> Span:
        """The :class:`Span` of ``blocks`` read and normalised now (no cache).

        Block by block (``scheduler``: dask's; ``None``: its default), each normalised into
        its rows of one dynamic array: a dropped span's when one fits.
        """
        ranges = [self.time_span(b) for b in blocks]
        first = np.cumsum([0] + [hi - lo for lo, hi in ranges[:-1]])  # each block's first row
        n_time = sum(hi - lo for lo, hi in ranges)
        dynamic = self._take(self._spare, (n_time,), np.float32)
        parts = []
        for (lo, hi), row in zip(ranges, first.tolist(), strict=True):
            rows = slice(row, row + hi - lo)
            dest = None if dynamic is None else dynamic[rows]
            loaded, raw = self._load(lo, hi, scheduler)
            parts.append(self.build(loaded, out=dest))
            with self._lock:  # built: free for the next read
                self._raw = raw
            if len(ranges) > 1 and parts[-1].dynamic is not dest:  # no spare of this size
                if dynamic is None:
                    dynamic = np.empty((n_time, *parts[-1].dynamic.shape[1:]), np.float32)
                dynamic[rows] = parts[-1].dynamic
        arrays = parts[0] if len(parts) == 1 else _joined(parts, dynamic)
        arrays.all_finite  # noqa: B018 -- found here (in the reading thread), not at a gather
        shift = {b: lo - f for b, (lo, _), f in zip(blocks, ranges, first.tolist(), strict=True)}
        return Span(blocks, shift, arrays)

    def _load(self, lo: int, hi: int, scheduler: str | None) -> tuple[xr.Dataset, list]:
        """Times ``[lo, hi)`` of every variable in memory, and the arrays holding them.

        A variable that is a plain read of the file is one backend read (:attr:`plain`); dask
        stores each chunk of the others straight where it goes (no concatenation). Both
        fill the arrays of an earlier read when they fit (fresh memory of this size can be
        slow to fault in).
        """
        ds = self.ds.isel({TIME: slice(lo, hi)})
        timed = [n for n, v in ds.data_vars.items() if TIME in v.dims]
        raw = [self._take(self._raw, ds[n].shape, ds[n].dtype) for n in timed]
        raw = [
            np.empty(ds[n].shape, ds[n].dtype) if a is None else a
            for n, a in zip(timed, raw, strict=True)
        ]
        for name, out in zip(timed, raw, strict=True):
            if name in self.plain:
                self.plain[name].read(lo, hi, out=out)
        rest = [(ds[n].data, a) for n, a in zip(timed, raw, strict=True) if n not in self.plain]
        if rest:
            sources, targets = zip(*rest, strict=True)
            da.store(list(sources), list(targets), lock=False, scheduler=scheduler)
        others = {n: v.values for n, v in ds.data_vars.items() if n not in timed}
        return ds.copy(data=dict(zip(timed, raw, strict=True)) | others), raw

    def span(self, block: int, keep: Sequence[Span] = (), wanted: Sequence[int] = ()) -> Span:
        """The span holding ``block``: cached, read ahead (waiting for it), or read now.

        Read now, it is the group the last read-ahead hint put ``block`` in (alone without a
        hint), after the cache has dropped what it must to hold it. While that hinted group
        is on its way, it serves ``block`` even if an older span (last epoch's group) holds
        ``block`` too: a batch then gathers from one span, not from both.

        The cache holds at most ``blocks_in_memory`` blocks besides those in ``keep`` (the
        batch's other spans) and those holding a block of ``wanted`` (the batch's blocks, so
        a batch where one group ends and the next starts reads each group once): it drops its
        least recently used spans first.
        """
        self._own_process()
        key = self._group.get(block, (block,))
        if key in self._cache or key not in self._pending:  # hinted span first, then any
            for found in ([key] if key in self._cache else []) + list(self._cache):
                if block in found:
                    self._cache.move_to_end(found)
                    return self._cache[found]
        kept = {k.blocks for k in keep} | {key}
        kept |= {k for k in self._cache if not set(k).isdisjoint(wanted)}
        ahead = self._pending.pop(key, None)
        if ahead is not None:
            got = ahead.result()
        else:  # room first: the read reuses a dropped array, not fresh memory beside it
            self._drop(len(key), kept)
            # in a DataLoader worker the workers are the parallelism: no dask threads each
            got = self.read(key, "synchronous" if get_worker_info() is not None else None)
        self._cache[key] = got
        self._drop(0, kept)
        return got

    def _drop(self, room: int, kept: set[tuple[int, ...]]) -> None:
        """Drop spans not in ``kept`` until ``room`` more blocks fit in the cache.

        A dropped span's dynamic array is the next read's (fresh memory of this size can be
        slow to fault in); no batch refers to it, batches are gathered copies.
        """
        for old in [k for k in self._cache if k not in kept]:
            if sum(map(len, self._cache)) + room <= self.blocks_in_memory:
                break
            dropped = self._cache.pop(old).arrays.dynamic
            with self._lock:
                self._spare = [dropped]  # one kept

    def _take(self, pool: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> Any:
        """An array from ``pool`` (taken out) whose shape starts with ``shape``, or ``None``."""
        with self._lock:
            for i, a in enumerate(pool):
                if a.dtype == dtype and a.shape[: len(shape)] == shape:
                    return pool.pop(i)
        return None

    def prefetch(self, groups: Sequence[tuple[int, ...]]) -> None:
        """Read ``groups`` of blocks (the ones wanted next, soonest first) in the background.

        Each group is read as one span. Reads ahead no longer wanted are dropped; at most
        ``prefetch_blocks`` blocks are read ahead besides the cache.
        """
        self._own_process()
        depth = self.prefetch_blocks
        if depth is None:  # workers are the read-ahead there (and memory stays lower)
            depth = 0 if get_worker_info() is not None else self.blocks_in_memory
        for key in groups:
            self._group.update(dict.fromkeys(key, key))
        for stale in [k for k in self._pending if k not in groups]:
            self._pending.pop(stale).cancel()
        cached = {b for k in self._cache for b in k}
        for key in groups:
            if cached.issuperset(key) or key in self._pending:
                continue
            if sum(map(len, self._pending)) + len(key) > depth:
                break
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="geoclim-blocks")
            # the thread reads while this one gathers: dask's synchronous scheduler in it
            self._pending[key] = self._pool.submit(self.read, key, "synchronous")

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


def _joined(parts: list[WindowArrays], dynamic: np.ndarray) -> WindowArrays:
    """The arrays of consecutive time ranges as one (``dynamic`` holds them already)."""
    exclude = None if parts[0].exclude is None else np.concatenate([p.exclude for p in parts])
    calendar = np.concatenate([p.calendar for p in parts])
    return dataclasses.replace(parts[0], dynamic=dynamic, calendar=calendar, exclude=exclude)
