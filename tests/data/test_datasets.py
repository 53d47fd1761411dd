import numpy as np
import pytest

from geoclim.data import datamodule, lazy
from geoclim.data.datamodule import GeoDataModule
from geoclim.data.datasets import EpochBatchSampler
from geoclim.errors import ConfigError
from tests.conftest import make_grid


def batches(sampler, epoch):
    sampler.set_epoch(epoch)
    return [list(b) for b in sampler]


def test_permutation_depends_only_on_seed_and_epoch():
    a = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    b = EpochBatchSampler(50, 8, shuffle=True, seed=3)
    assert batches(a, 2) == batches(b, 2)  # a fresh sampler (a resumed run) replays epoch 2
    assert batches(a, 0) != batches(a, 1)
    assert sorted(np.concatenate(batches(a, 1))) == list(range(50))


def test_ranks_share_each_global_batch():
    single = batches(EpochBatchSampler(50, 8, shuffle=True, seed=0), 1)
    shards = [
        batches(EpochBatchSampler(50, 8, shuffle=True, seed=0, rank=r, world_size=2), 1)
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1]) == len(single)
    for i, full in enumerate(single):
        assert shards[0][i] + shards[1][i] == full


def test_unshuffled_order_and_length():
    sampler = EpochBatchSampler(10, 4, shuffle=False)
    assert batches(sampler, 5) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(sampler) == 3


def test_batch_smaller_than_world_is_an_error():
    with pytest.raises(ConfigError, match="batch_size"):
        EpochBatchSampler(10, 1, shuffle=False, world_size=2)


@pytest.mark.parametrize("chunked", [False, True], ids=["memory", "lazy"])
def test_one_loader_serves_both_backends_with_their_own_sampler(chunked):
    ds = make_grid(nt=120, seed=2)
    task = dict(targets=["pm25"], past_inputs=["t2m"], input_steps=4, horizon=2)
    dm = GeoDataModule(
        ds.chunk({"time": 24}) if chunked else ds,
        task,
        batch_size=32,
        lazy={"block_steps": 24},
    )
    loader = dm.loader("train", shuffle=True)
    kind = lazy.BlockBatchSampler if chunked else EpochBatchSampler
    assert type(loader.sampler) is kind and loader.batch_size is None
    loader.sampler.set_epoch(3)
    served = list(loader)
    direct = [dm.dataset("train")[rows] for rows in loader.sampler]
    assert len(served) == len(direct) == len(loader.sampler)
    for a, b in zip(served, direct, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=key)
    rows = np.sort(np.concatenate([b["time_idx"].numpy() for b in served]))
    np.testing.assert_array_equal(rows, np.sort(dm.index["train"].time))  # every sample once


@pytest.mark.parametrize("slab_bytes", [1, 200, 1 << 23], ids=["step", "few-steps", "whole"])
def test_arrays_built_slab_by_slab_equal_each_variable_encoded(monkeypatch, slab_bytes):
    monkeypatch.setattr(datamodule, "_SLAB_BYTES", slab_bytes)
    ds = make_grid(nt=120, nlat=2, nlon=3, seed=4, variables=("pm25", "t2m", "wd"))
    codes = np.arange(120)[:, None, None] % 3 + np.zeros((1, 2, 3))
    ds["wd"] = (
        ("time", "latitude", "longitude"),
        codes,
        {"flag_values": [0, 1, 2], "flag_meanings": "calm breeze gale"},
    )
    task = dict(targets=["pm25"], past_inputs=["wd", "t2m"], input_steps=3, horizon=2)
    dm = GeoDataModule(ds, task, batch_size=8)
    dm.setup()
    dyn = dm.arrays.dynamic  # (T, H, W, C): pm25, wd one-hot (3), t2m
    assert dyn.shape == (120, 2, 3, 5) and dm.task.dynamic_channels[1] == "wd=calm"
    for c, name in ((0, "pm25"), (4, "t2m")):
        want = dm.normalizer.encode(ds[name].values, name)
        np.testing.assert_array_equal(dyn[..., c], want, err_msg=name)
    np.testing.assert_array_equal(dyn[..., 1:4], np.eye(3, dtype=np.float32)[codes.astype(int)])
