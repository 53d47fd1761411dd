"""Plain reads: one backend read per variable per block gives what dask gives, or falls back."""

import dask.array as da
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data.datamodule import GeoDataModule
from geoclim.data.direct_read import plain_read, thread_safe
from geoclim.data.sources import open_dataset
from geoclim.errors import ConfigError
from tests.conftest import make_grid
from tests.data.conftest import LAZY_TASK


def _grid(nt=96, seed=0):
    """Latitude descending (the source sorts it: a reversing take in the graph), o3 in ppm."""
    rng = np.random.default_rng(seed)
    dims = ("time", "latitude", "longitude")
    ds = xr.Dataset(
        {
            "pm25": (dims, rng.gamma(2, 5, (nt, 3, 4)).astype("f4"), {"units": "ug m-3"}),
            "o3": (dims, rng.uniform(0.01, 0.05, (nt, 3, 4)).astype("f4"), {"units": "ppm"}),
        },
        coords={
            "time": pd.date_range("2021-01-01", periods=nt, freq="h"),
            "latitude": [52.0, 51.0, 50.0],
            "longitude": [0.0, 1.0, 2.0, 3.0],
        },
    )
    ds["pm25"][5, 1, 2] = np.nan
    return ds


@pytest.fixture(scope="module")
def zarr_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("direct") / "grid.zarr"
    encoding = {v: {"chunks": (24, 3, 4)} for v in ("pm25", "o3")}
    _grid().to_zarr(path, zarr_format=2, encoding=encoding)
    return path


@pytest.fixture(scope="module")
def packed_nc(tmp_path_factory):
    """CF packing: int16 with scale_factor, add_offset and _FillValue (NaN where filled)."""
    path = tmp_path_factory.mktemp("direct") / "packed.nc"
    packing = {"dtype": "int16", "scale_factor": 0.01, "add_offset": 20.0, "_FillValue": -999}
    _grid().to_netcdf(path, encoding={"pm25": packing, "o3": {"dtype": "float32"}})
    return path


def _check_same_as_dask(var, ranges=((0, 96), (7, 40), (30, 31), (95, 96))):
    found = plain_read(var, "time")
    assert found is not None
    for lo, hi in ranges:
        expected = var.isel(time=slice(lo, hi)).values
        np.testing.assert_array_equal(found.read(lo, hi), expected)
        out = np.full(expected.shape, -1.0, expected.dtype)
        assert found.read(lo, hi, out=out) is out
        np.testing.assert_array_equal(out, expected)
    return found


def test_zarr_sorted_and_offset_reads_equal_dask(zarr_store):
    var = open_dataset(zarr_store, chunks={})["pm25"].isel(time=slice(30, 90))
    found = _check_same_as_dask(var, ((0, 60), (5, 29), (59, 60)))
    np.testing.assert_array_equal(found.positions[0], np.arange(30, 90))  # the isel offset
    np.testing.assert_array_equal(found.positions[1], [2, 1, 0])  # the sort by latitude
    assert np.isnan(found.read(0, 60)).sum() == 0  # the NaN at step 5 is cut away by the isel


def test_cf_packed_netcdf_decodes_like_dask(packed_nc):
    var = xr.open_dataset(packed_nc, chunks={})["pm25"]
    assert var.encoding["dtype"] == np.int16
    found = _check_same_as_dask(var)
    assert np.isnan(found.read(5, 6)[0, 1, 2])  # _FillValue decoded to NaN


def test_lazy_unit_conversion_falls_back(zarr_store, packed_nc):
    ds = open_dataset(zarr_store, chunks={})
    assert ds["o3"].attrs["units"] == "ppb"  # ppm -> ppb, a lazy multiply after the read
    assert plain_read(ds["o3"], "time") is None
    assert plain_read(ds["pm25"] * 2, "time") is None
    assert plain_read(ds["pm25"].astype("f8"), "time") is None
    assert plain_read(ds["pm25"].transpose("longitude", "latitude", "time"), "time") is None
    assert plain_read(ds["pm25"].load(), "time") is None  # not dask-backed
    assert plain_read(open_dataset(packed_nc, chunks={})["o3"], "time") is None


def test_reads_cut_the_named_dim_wherever_it_is(zarr_store):
    var = xr.open_zarr(zarr_store)["pm25"]  # (time, latitude, longitude), no sort
    found = plain_read(var, "latitude")
    assert found.time_axis == 1
    np.testing.assert_array_equal(found.read(1, 3), var.isel(latitude=slice(1, 3)).values)
    assert plain_read(var, "level") is None


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "dask"])
def test_block_reader_spans_equal_either_way(store, direct):
    def dm(d):
        out = GeoDataModule(
            open_dataset(store, chunks={}), LAZY_TASK, window={"stride": 1}, batch_size=16,
            backend="lazy", lazy={"block_steps": 48, "direct": d},
        )  # fmt: skip
        out.setup()
        return out

    reader, dask_reader = dm(direct).reader, dm(False).reader
    assert bool(reader.plain) is direct and not dask_reader.plain
    for blocks in [(0,), (3, 1), (reader.n_blocks - 1,)]:
        a, b = reader.read(blocks), dask_reader.read(blocks)
        np.testing.assert_array_equal(a.arrays.dynamic, b.arrays.dynamic)
        np.testing.assert_array_equal(a.arrays.calendar, b.arrays.calendar)
        assert a.shift == b.shift


def test_only_files_safe_in_a_thread_are_read_in_one(zarr_store, packed_nc):
    assert thread_safe(open_dataset(zarr_store, chunks={}))
    assert not thread_safe(xr.open_dataset(packed_nc, chunks={}))
    converted = open_dataset(packed_nc, chunks={})[["o3"]]  # ppm -> ppb: not a plain read
    assert plain_read(converted["o3"], "time") is None and not thread_safe(converted)
    assert thread_safe(_grid().chunk({"time": 24}))  # dask over memory: no file
    assert thread_safe(_grid())
    assert thread_safe(xr.open_zarr(zarr_store)) and thread_safe(xr.open_dataset(zarr_store))
    # the backend array inside the tasks' arguments, a lazily indexed variable without dask,
    # a netCDF4 variable wrapped by hand: all read netCDF
    assert not thread_safe(xr.open_dataset(packed_nc, chunks={}, inline_array=True))
    lazy = xr.open_dataset(packed_nc)
    assert not thread_safe(lazy) and not thread_safe(lazy[["o3"]].chunk())
    with netCDF4.Dataset(packed_nc) as nc:
        wrapped = da.from_array(nc["o3"], chunks=(24, 3, 4))
        assert not thread_safe(xr.Dataset({"o3": (("time", "lat", "lon"), wrapped)}))


@pytest.fixture(scope="module")
def netcdf_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("direct") / "grid.nc"
    make_grid(nt=400, nlat=4, nlon=5, seed=3).to_netcdf(path)
    return path


def _lazy_dm(path, **lazy_options):
    dm = GeoDataModule(
        open_dataset(path, chunks={"time": 24}), LAZY_TASK, window={"stride": 1},
        batch_size=16, backend="lazy", lazy={"block_steps": 48, **lazy_options},
    )  # fmt: skip
    dm.setup()
    return dm


def test_netcdf_is_read_where_it_is_wanted_not_in_a_read_ahead_thread(netcdf_store, store):
    # netCDF-C / HDF5 are not thread-safe and xarray does not lock a file's opening: a
    # read-ahead thread racing the next open corrupts HDF5 (pydata/xarray#9779)
    reader = _lazy_dm(netcdf_store).reader
    assert reader.prefetch_blocks == 0 and reader.plain
    reader.prefetch([(1, 2)])
    assert not reader._pending and reader._pool is None
    zarr_reader = _lazy_dm(store).reader
    zarr_reader.prefetch([(1, 2)])
    assert list(zarr_reader._pending) == [(1, 2)]
    zarr_reader.span(1)
    np.testing.assert_array_equal(  # same values either way
        reader.span(1).arrays.dynamic, zarr_reader.span(1).arrays.dynamic
    )
    with pytest.raises(ConfigError, match=r"data\.lazy\.prefetch_blocks=2: .*zarr.*num_workers"):
        _lazy_dm(netcdf_store, prefetch_blocks=2)


def test_strided_and_reversed_selections_read_like_dask(zarr_store, packed_nc):
    var = open_dataset(zarr_store, chunks={})["pm25"].isel(time=slice(3, 90, 4), longitude=[3, 0])
    found = _check_same_as_dask(var, ((0, 22), (5, 9), (21, 22)))
    np.testing.assert_array_equal(found.positions[0], np.arange(3, 90, 4))
    np.testing.assert_array_equal(found.positions[2], [3, 0])
    nc = xr.open_dataset(packed_nc, chunks={})["pm25"].isel(time=slice(None, None, -3))
    _check_same_as_dask(nc, ((0, 32), (10, 11)))
