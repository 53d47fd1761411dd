import numpy as np
import pytest

from geoclim.data import blocks, lazy
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.impute import Imputer
from geoclim.data.normalize import Normalizer
from geoclim.data.sources import open_dataset
from geoclim.data.windows import WindowSpec
from geoclim.errors import ConfigError
from tests.conftest import make_stations
from tests.data.conftest import LAZY_TASK as TASK


def _dm(source, backend=None, window=None, batch_size=16, **kw):
    dm = GeoDataModule(
        source, TASK, window=window or {"stride": 1}, batch_size=batch_size, backend=backend, **kw
    )
    dm.setup()
    return dm


@pytest.fixture(scope="module")
def pair(store):
    memory = _dm(open_dataset(store).load(), backend="memory")
    lazy_dm = _dm(open_dataset(store, chunks={}), lazy={"block_steps": 48})
    return memory, lazy_dm


def test_dask_backed_data_chooses_the_lazy_backend(pair):
    memory, lazy_dm = pair
    assert memory.reader is None and memory.arrays is not None
    assert lazy_dm.reader is not None and lazy_dm.arrays is None
    assert lazy_dm.reader.block_steps == 48


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_same_samples_and_same_batches_as_in_memory(pair, split):
    memory, lazy_dm = pair
    np.testing.assert_array_equal(memory.index[split].flat, lazy_dm.index[split].flat)
    n = len(memory.index[split])
    rows = np.random.default_rng(0).permutation(n)[:40]  # spans several blocks
    a, b = memory.dataset(split)[rows], lazy_dm.dataset(split)[rows]
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_normaliser_statistics_equal_in_memory(pair):
    memory, lazy_dm = pair
    for name, s in memory.normalizer.stats.items():
        t = lazy_dm.normalizer.stats[name]
        assert t.log == s.log
        np.testing.assert_allclose([t.mean, t.std], [s.mean, s.std], rtol=1e-6, err_msg=name)


def test_normaliser_matches_numpy_on_a_log_variable(store):
    ds = open_dataset(store, chunks={"time": 17})
    norm = Normalizer.fit(ds, ["pm25"], time_range=(10, 300), log=("pm25",))
    x = np.log1p(np.maximum(ds["pm25"].values[10:300].astype(np.float64), 0))
    x = x[np.isfinite(x)]
    np.testing.assert_allclose(
        [norm.stats["pm25"].mean, norm.stats["pm25"].std], [x.mean(), x.std()], rtol=1e-6
    )


def test_lazy_setup_loads_no_data_variable_whole(store):
    ds = open_dataset(store, chunks={})
    dm = _dm(ds)
    assert lazy.is_dask_backed(dm.ds)  # nothing was loaded into the dataset
    assert all(da.chunks is not None for da in dm.ds.data_vars.values())


def _sampler(dm, **kw):
    ds = dm.dataset("train")
    args = dict(shuffle=True, seed=5, blocks_in_memory=2) | kw
    return lazy.BlockBatchSampler(ds.block_of(), 16, **args)


def _epoch(sampler, epoch):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def test_order_is_seeded_resumable_and_covers_the_split(pair):
    _, dm = pair
    a, b = _sampler(dm), _sampler(dm)
    assert _epoch(a, 3) == _epoch(b, 3)  # a fresh sampler (a resumed run) replays epoch 3
    assert _epoch(a, 0) != _epoch(a, 1)
    assert sorted(np.concatenate(_epoch(a, 1))) == list(range(len(dm.index["train"])))


def test_shuffled_samples_stay_in_groups_of_blocks(pair):
    _, dm = pair
    sampler = _sampler(dm, blocks_in_memory=2)
    blocks = dm.dataset("train").block_of()
    sampler.set_epoch(2)
    order = blocks[sampler._order()]
    changes = np.flatnonzero(np.diff(order)) + 1
    groups = [set(g) for g in np.split(order, changes)]
    assert len(np.unique(blocks)) > 2
    # consecutive runs come from at most 2 blocks at a time: each group is 2 blocks' samples
    seen, current = [], set()
    for g in groups:
        if len(current | g) > 2:
            seen.append(current)
            current = set()
        current |= g
    assert all(len(s) <= 2 for s in seen)
    assert not np.array_equal(order, np.sort(order))  # blocks are permuted


@pytest.mark.parametrize("world", [2, 3])
def test_rank_shards_are_disjoint_and_cover_each_batch(pair, world):
    _, dm = pair
    single = _epoch(_sampler(dm), 1)
    shards = [_epoch(_sampler(dm, rank=r, world_size=world), 1) for r in range(world)]
    assert all(len(s) == len(single) for s in shards)
    for i, full in enumerate(single):
        assert sum((s[i] for s in shards), []) == full


def test_lanes_give_each_worker_a_contiguous_run(pair):
    _, dm = pair
    sampler = _sampler(dm, lanes=3)
    n = len(sampler)
    order = sampler.batch_order()
    assert sorted(order) == list(range(n))
    per_worker = [order[w::3] for w in range(3)]
    assert sum(per_worker, []) == list(range(n))  # worker w: one contiguous run of batches


def test_workers_serve_the_same_epoch_as_the_main_process(store):
    dm = _dm(
        open_dataset(store, chunks={}), lazy={"block_steps": 48}, num_workers=2, batch_size=256
    )
    loader = dm.loader("train", shuffle=True)
    loader.sampler.set_epoch(1)
    with_workers = [b["time_idx"].numpy() for b in loader]
    in_process = [dm.dataset("train")[rows]["time_idx"].numpy() for rows in loader.sampler]
    assert len(with_workers) == len(in_process)
    for a, b in zip(with_workers, in_process, strict=True):
        np.testing.assert_array_equal(a, b)


def test_stations_lazy_equal_in_memory(tmp_path):
    path = tmp_path / "stations.zarr"
    make_stations(nt=200, n=6).chunk({"time": 32}).to_zarr(path)
    task = dict(targets=["no2"], past_inputs=["t2m"], input_steps=5, horizon=3)
    memory = GeoDataModule(open_dataset(path).load(), task, batch_size=8)
    lazy_dm = GeoDataModule(open_dataset(path, chunks={}), task, batch_size=8)
    memory.setup(), lazy_dm.setup()
    rows = np.arange(len(memory.index["train"]))[::7]
    a, b = memory.dataset("train")[rows], lazy_dm.dataset("train")[rows]
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)


def test_derived_stride_is_the_same_in_both_backends(store):
    memory = _dm(open_dataset(store).load(), window={"stride": None})
    lazy_dm = _dm(open_dataset(store, chunks={}), window={"stride": None})
    assert memory.spec == lazy_dm.spec
    np.testing.assert_array_equal(memory.index["train"].flat, lazy_dm.index["train"].flat)


def test_lazy_backend_without_chunks_is_an_error(store):
    with pytest.raises(ConfigError, match="data.source.chunks"):
        _dm(open_dataset(store), backend="lazy")


def test_unknown_backend_is_an_error(store):
    with pytest.raises(ConfigError, match="data.backend"):
        _dm(open_dataset(store), backend="disk")


def test_imputer_is_refused_in_lazy_mode(store):
    with pytest.raises(ConfigError, match="data.imputer"):
        _dm(open_dataset(store, chunks={}), imputer=Imputer())


@pytest.mark.parametrize(
    "bad", [{"block_steps": 0}, {"blocks_in_memory": 0}, {"prefetch_blocks": -1}]
)
def test_bad_lazy_options_are_errors(store, bad):
    with pytest.raises(ConfigError, match="data.lazy"):
        _dm(open_dataset(store, chunks={}), lazy=bad)


def test_derived_block_holds_several_halos():
    spec = WindowSpec(6, 4)
    assert blocks.derive_block_steps(24, spec) == 48  # 4 halos of 9 steps = 36 -> 2 chunks
    assert blocks.derive_block_steps(100, spec) == 100


def test_fingerprint_is_the_same_read_lazily(pair):
    memory, lazy_dm = pair
    assert memory.fingerprint == lazy_dm.fingerprint


def test_packed_mask_indexes_like_the_bool_mask():
    valid = np.random.default_rng(0).random((30, 3, 5)) < 0.5
    packed = blocks.PackedMask(np.packbits(valid.reshape(30, -1), axis=1), (3, 5))
    assert packed.shape == (30, 3, 5)
    np.testing.assert_array_equal(packed[4:17], valid[4:17])
    steps = np.array([3, 3, 29, 0, 11])
    np.testing.assert_array_equal(packed[steps], valid[steps])
