"""The lazy backend's memory budget: block sizes derived from ``data.lazy.memory_gb``."""

import logging
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from geoclim.data.blocks import derive_block_steps, resident_step_bytes, set_huge_pages
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.sources import open_dataset
from geoclim.data.windows import WindowSpec
from geoclim.errors import ConfigError
from tests.data.conftest import LAZY_TASK

SPEC = WindowSpec(24, 12)  # halo 35: 6 chunks of 24 hold 4 halos
STEP = 128 * 128 * (4 * 4 * 8 + 8 * 4)  # the bench's 12 GB store: 8 channels, 8 raw float32


def test_resident_step_bytes_counts_spans_and_one_raw_read():
    assert resident_step_bytes(10, 3, [4, 8], spans=4) == 10 * (4 * 4 * 3 + 12)
    assert STEP == resident_step_bytes(128 * 128, 8, [4] * 8, spans=4)


def test_budget_shrinks_blocks_by_whole_chunks():
    assert derive_block_steps(24, SPEC) == 144
    assert derive_block_steps(24, SPEC, STEP, None) == 144
    assert derive_block_steps(24, SPEC, STEP, 1e12) == 144  # never above the halo rule
    assert derive_block_steps(24, SPEC, STEP, 0.3e9) == 72  # 0.3e9 // STEP = 114 times
    assert derive_block_steps(24, SPEC, STEP, (96 + 35) * STEP) == 96  # exactly fits
    assert derive_block_steps(24, SPEC, STEP, (96 + 35) * STEP - 1) == 72


def test_budget_below_one_chunk_gives_one_chunk_and_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="geoclim.data.blocks"):
        assert derive_block_steps(24, SPEC, STEP, 1e6) == 24
    assert "data.lazy.memory_gb" in caplog.text and "one chunk" in caplog.text


@given(
    chunk=st.integers(1, 48),
    t_in=st.integers(1, 30),
    lead=st.integers(1, 20),
    step=st.integers(1, 10**6),
    budget=st.floats(1.0, 1e10),
)
def test_derived_blocks_fit_the_budget(chunk, t_in, lead, step, budget):
    spec = WindowSpec(t_in, lead)
    halo = t_in + lead - 1
    steps = derive_block_steps(chunk, spec, step, budget)
    assert steps % chunk == 0 and chunk <= steps <= derive_block_steps(chunk, spec)
    assert steps == chunk or (steps + halo) * step <= budget
    assert derive_block_steps(chunk, spec, step, budget * 2) >= steps  # more room, no less


def _reader(store, workers=0, **lazy):
    dm = GeoDataModule(
        open_dataset(store, chunks={}), LAZY_TASK, window={"stride": 1}, batch_size=16,
        num_workers=workers, backend="lazy", lazy=lazy,
    )  # fmt: skip
    dm.setup()
    return dm.reader


def test_reader_shares_the_budget_among_its_workers(store, caplog):
    # the test store: 4 x 5 cells, pm25 and t2m (2 channels, 2 raw float32), chunks of 24,
    # halo 6 + 4 - 1 = 9; 2 cached + 2 read next blocks: 20 * (4 * 4 * 2 + 8) = 800 B a step
    assert _reader(store).block_steps == 48  # the default budget does not bind here
    assert _reader(store, memory_gb=(48 + 9) * 800 / 1e9).block_steps == 48
    assert _reader(store, memory_gb=(48 + 9) * 800 / 1e9 - 1e-9).block_steps == 24
    with caplog.at_level(logging.WARNING, logger="geoclim.data.blocks"):
        assert _reader(store, workers=2, memory_gb=(24 + 9) * 800 / 1e9).block_steps == 24
    assert "data.lazy.memory_gb" in caplog.text  # half of it each: under one chunk
    assert _reader(store, memory_gb=1e-9, block_steps=72).block_steps == 72  # stated: kept


@pytest.mark.parametrize("bad", [0, -0.5])
def test_bad_memory_budget_is_named(store, bad):
    with pytest.raises(ConfigError, match=r"data\.lazy\.memory_gb must be > 0 or null"):
        _reader(store, memory_gb=bad)


def _huge_pages_now():
    setter = np._core.multiarray._set_madvise_hugepage
    now = setter(True)
    setter(now)
    return now


def test_reader_turns_numpy_huge_pages_off_unless_asked(store):
    before = _huge_pages_now()
    try:
        set_huge_pages(True)
        _reader(store)
        assert _huge_pages_now() is False
        _reader(store, huge_pages=True)
        assert _huge_pages_now() is True
        reader = pickle.loads(pickle.dumps(_reader(store)))  # a spawned worker sets it too
        set_huge_pages(True)
        pickle.loads(pickle.dumps(reader))
        assert _huge_pages_now() is False
    finally:
        set_huge_pages(before)
