"""The lazy reader's cache: which span serves a block, and that no group is read twice."""

import numpy as np
import pytest

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.sources import open_dataset
from tests.data.conftest import LAZY_TASK as TASK


def _dm(source, backend):
    dm = GeoDataModule(
        source, TASK, window={"stride": 1}, batch_size=16, backend=backend,
        lazy={"block_steps": 48, "blocks_in_memory": 2},
    )  # fmt: skip
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def memory(store):
    return _dm(open_dataset(store).load(), "memory")


@pytest.fixture
def lazy_dm(store):
    """A fresh lazy datamodule (an empty cache) whose reads are recorded in ``reads``."""
    dm = _dm(open_dataset(store, chunks={}), "lazy")
    reader, read = dm.reader, dm.reader.read
    dm.reads = []

    def recorded(blocks, scheduler=None):
        dm.reads.append(tuple(blocks))
        return read(blocks, scheduler)

    reader.read = recorded
    return dm


def _rows_of(dm, blocks):
    """Training rows whose init lies in ``blocks`` (a few of each block)."""
    of = dm.dataset("train").block_of()
    return np.concatenate([np.flatnonzero(of == b)[:7] for b in blocks])


def _same_as_memory(memory, dm, rows):
    a, b = memory.dataset("train")[rows], dm.dataset("train")[rows]
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_batch_across_two_groups_reads_each_group_once(memory, lazy_dm):
    reader = lazy_dm.reader
    reader.prefetch([(3, 4)])
    lazy_dm.dataset("train")[_rows_of(lazy_dm, [3, 4])]
    reader.prefetch([(3, 4), (1, 2)])  # the lane's next group, on its way
    rows = _rows_of(lazy_dm, [3, 4, 1, 2])  # the batch where one group ends and one starts
    _same_as_memory(memory, lazy_dm, rows)  # block 1 (the new group) is looked up first
    assert lazy_dm.reads == [(3, 4), (1, 2)]  # neither dropped for the other and read again


def test_hinted_group_serves_a_block_an_older_span_holds_too(memory, lazy_dm):
    reader = lazy_dm.reader
    reader.prefetch([(1, 2)])
    lazy_dm.dataset("train")[_rows_of(lazy_dm, [1, 2])]
    reader.prefetch([(2, 3)])  # next epoch's group: block 2 again, with block 3
    assert reader.span(2).blocks == (2, 3)  # not the old (1, 2): one span per batch
    rows = _rows_of(lazy_dm, [2, 3])
    _same_as_memory(memory, lazy_dm, rows)
    assert lazy_dm.reads == [(1, 2), (2, 3)]
    assert list(reader._cache) == [(2, 3)]  # the old span made room


def test_cached_span_serves_a_block_without_hint(memory, lazy_dm):
    reader = lazy_dm.reader
    reader.prefetch([(1, 2)])
    assert reader.span(2).blocks == (1, 2)
    reader._group.clear()  # no hint left: block 1 alone would be its own group
    assert reader.span(1).blocks == (1, 2)  # the cached span serves it
    _same_as_memory(memory, lazy_dm, _rows_of(lazy_dm, [2, 1]))
    assert lazy_dm.reads == [(1, 2)]
