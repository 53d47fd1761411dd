"""Batches moved in groups (BatchLoader) and the lazy reader's spans, read-ahead and reuse."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data import datasets, lazy
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.datasets import EpochBatchSampler
from geoclim.data.sources import open_dataset
from tests.data.conftest import LAZY_TASK as TASK


def _dm(source, **kw):
    args = dict(window={"stride": 1}, batch_size=16, lazy={"block_steps": 48}) | kw
    dm = GeoDataModule(source, TASK, **args)
    dm.setup()
    return dm


def _interleaved(sampler, per_group):
    """The rows of every batch, cut from the groups and interleaved round by round."""
    out, pending, current = [], [], 0
    for g in sampler.groups(per_group):
        if g.round != current:
            out += [p[i] for i in range(max(map(len, pending))) for p in pending if i < len(p)]
            pending, current = [], g.round
        pending.append(np.split(g.rows, np.cumsum(g.sizes)[:-1]))
    out += [p[i] for i in range(max(map(len, pending), default=0)) for p in pending if i < len(p)]
    return [list(b) for b in out]


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 150),
    batch=st.integers(3, 17),
    lanes=st.integers(1, 4),
    per_group=st.integers(1, 5),
    world=st.integers(1, 3),
    shuffle=st.booleans(),
    seed=st.integers(0, 3),
    blocked=st.booleans(),
)
def test_groups_reassemble_the_sampler_batches_lane_by_lane(
    n, batch, lanes, per_group, world, shuffle, seed, blocked
):
    blocks = np.sort(np.random.default_rng(seed).integers(0, 6, n))
    samplers = [
        lazy.BlockBatchSampler(
            blocks, batch, shuffle=shuffle, seed=seed, rank=r, world_size=world, lanes=lanes
        )
        if blocked
        else EpochBatchSampler(n, batch, shuffle=shuffle, seed=seed, rank=r, world_size=world)
        for r in range(world)
    ]
    for s in samplers:
        s.set_epoch(seed + 1)
        expected = [list(b) for b in s]
        assert _interleaved(s, per_group) == expected
        assert s.n_groups(per_group) == len(list(s.groups(per_group)))
    sampler = samplers[0]
    n_lanes = len(sampler.lanes())
    lane_of = {b: w for w, lane in enumerate(sampler.lanes()) for b in lane.tolist()}
    numbers = dict(zip(map(tuple, sampler), sampler.batch_order(), strict=True))
    for i, g in enumerate(sampler.groups(per_group)):  # DataLoader: group i -> worker i % n
        for rows in np.split(g.rows, np.cumsum(g.sizes)[:-1]):
            assert lane_of[numbers[tuple(rows)]] == i % n_lanes


def test_block_order_is_the_one_of_before_groups(store):
    blocks = _dm(open_dataset(store, chunks={})).dataset("train").block_of()
    for lanes, world, rank in [(1, 1, 0), (3, 1, 0), (2, 2, 1)]:
        sampler = lazy.BlockBatchSampler(
            blocks, 16, shuffle=True, seed=4, rank=rank, world_size=world, lanes=lanes
        )
        sampler.set_epoch(2)
        # the order as the sampler computed it before batches moved in groups
        rng = np.random.default_rng([4, 2])
        ids, inverse = np.unique(blocks, return_inverse=True)
        position = np.empty(ids.size, np.int64)
        position[rng.permutation(ids.size)] = np.arange(ids.size)
        order = np.lexsort((rng.random(blocks.size), position[inverse] // 2))
        runs = np.array_split(np.arange(len(sampler)), lanes)
        numbers = [int(r[i]) for i in range(len(runs[0])) for r in runs if i < len(r)]
        before = [np.array_split(order[b * 16 : (b + 1) * 16], world)[rank] for b in numbers]
        assert [list(b) for b in sampler] == [list(b) for b in before]


def _assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys()
        for key in x:
            np.testing.assert_array_equal(x[key].numpy(), y[key].numpy(), err_msg=key)


@pytest.mark.parametrize(
    "lazy_backend,workers", [(False, 0), (False, 2), (True, 0), (True, 2)], ids=str
)
def test_grouped_loader_serves_the_batches_of_the_sampler(
    store, monkeypatch, lazy_backend, workers
):
    memory = _dm(open_dataset(store).load(), batch_size=32)  # the expected batches
    ds = open_dataset(store, chunks={}) if lazy_backend else open_dataset(store).load()
    dm = _dm(ds, num_workers=workers, batch_size=32)
    sample = dm.dataset("train").sample_nbytes()
    monkeypatch.setattr(datasets, "GROUP_BYTES", 3 * 32 * sample)  # three batches a group
    loader = dm.loader("train", shuffle=True)
    # in memory and in one process a batch is gathered alone: nothing to save
    assert loader.per_group == (1 if workers == 0 and not lazy_backend else 3)
    assert len(loader) == len(loader.sampler)
    for epoch in (1, 2):  # the second: persistent workers
        loader.sampler.set_epoch(epoch)
        served = list(loader)
        _assert_same(served, [memory.dataset("train")[rows] for rows in loader.sampler])


def test_sample_nbytes_is_a_batch_over_its_samples(store):
    for ds in (open_dataset(store).load(), open_dataset(store, chunks={})):
        dataset = _dm(ds).dataset("val")
        batch = dataset[np.arange(7)]
        assert dataset.sample_nbytes() * 7 == sum(v.numpy().nbytes for v in batch.values())


def test_resumed_loader_replays_the_epoch_from_a_cold_reader(store):
    first = _dm(open_dataset(store, chunks={}))
    loader = first.loader("train", shuffle=True)
    loader.sampler.set_epoch(3)
    whole = list(loader)
    resumed = _dm(open_dataset(store, chunks={})).loader("train", shuffle=True)
    resumed.sampler.set_epoch(3)  # a fresh process resuming mid-epoch skips what it had done
    _assert_same(list(resumed)[5:], whole[5:])


def test_rank_shards_of_grouped_batches_make_the_single_process_batch(store):
    dm = _dm(open_dataset(store, chunks={}), batch_size=32)
    loaders = [dm.loader("train", shuffle=True, rank=r, world_size=2) for r in range(3)[:2]]
    single = dm.loader("train", shuffle=True)
    for loader in (*loaders, single):
        loader.sampler.set_epoch(1)
    shards = [list(loader) for loader in loaders]
    for i, whole in enumerate(single):
        for key in whole:
            joined = np.concatenate([s[i][key].numpy() for s in shards])
            np.testing.assert_array_equal(joined, whole[key].numpy(), err_msg=key)


def _reader(store, **kw):
    dm = _dm(open_dataset(store, chunks={}), lazy={"block_steps": 48, **kw})
    reads = []  # time steps of each build (one per block read)
    build = dm.reader.build

    def counted(ds, out=None):
        reads.append(ds.sizes["time"])
        return build(ds, out=out)

    dm.reader.build = counted
    return dm.reader, reads


def test_a_span_of_blocks_holds_each_block_read_alone(store):
    reader, _ = _reader(store)
    both = reader.read((4, 1))
    for b in (4, 1):
        alone = reader.read((b,))
        lo, hi = reader.time_span(b)
        rows = slice(lo - both.shift[b], hi - both.shift[b])
        np.testing.assert_array_equal(both.arrays.dynamic[rows], alone.arrays.dynamic)
        np.testing.assert_array_equal(both.arrays.calendar[rows], alone.arrays.calendar)
        np.testing.assert_array_equal(both.arrays.static, alone.arrays.static)


def test_read_ahead_reads_the_hinted_group_once(store):
    reader, reads = _reader(store)
    reader.prefetch([(3, 0)])
    assert list(reader._pending) == [(3, 0)]
    span = reader.span(0)
    assert span.blocks == (3, 0) and reader.span(3) is span
    assert sorted(reads) == [52, 57] and not reader._pending  # one build per block, once


def test_reads_ahead_are_bounded_and_dropped_when_no_longer_wanted(store):
    reader, _ = _reader(store, prefetch_blocks=2)
    reader.prefetch([(1,), (2,), (3,)])
    assert list(reader._pending) == [(1,), (2,)]  # the third would exceed 2 blocks
    reader.prefetch([(3,)])
    assert list(reader._pending) == [(3,)]
    reader.span(3)
    assert not reader._pending


def test_no_read_ahead_without_prefetch_blocks(store):
    reader, reads = _reader(store, prefetch_blocks=0)
    reader.prefetch([(1, 2)])
    assert not reader._pending and reader._pool is None and not reads


def test_a_dropped_span_array_is_reused_with_the_new_values(store):
    reader, _ = _reader(store, blocks_in_memory=1, prefetch_blocks=0)
    reader.span(1)
    dropped = reader.span(1).arrays.dynamic
    reader.span(2)  # drops block 1: its array is spare
    again = reader.span(3)
    assert np.shares_memory(again.arrays.dynamic, dropped)
    fresh, _ = _reader(store)
    np.testing.assert_array_equal(again.arrays.dynamic, fresh.read((3,)).arrays.dynamic)
