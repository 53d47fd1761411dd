"""A file opened through geoclim closes when its dataset is dropped, not at a garbage collection.

A reference cycle holding an opened dataset leaves its file to the garbage collector, which
runs in whichever thread allocates next (a server's, dask's, pytest-xdist's). netCDF-C and
HDF5 are not thread-safe: a file closed there while this thread reads or writes netCDF
corrupts HDF5 (``NetCDF: HDF error`` on a later open, or a crash).
"""

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cftime
import pytest
import xarray as xr

from geoclim.data import sources
from geoclim.errors import SchemaError
from tests.conftest import make_grid, make_stations


def _open_descriptors(path: Path) -> int:
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if _target(fd) == str(path))


def _target(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:  # closed while listed
        return ""


def _noleap_stations() -> xr.Dataset:
    ds = make_stations(nt=40, n=3)
    times = xr.date_range("2001-01-01", periods=40, freq="D", calendar="noleap", use_cftime=True)
    return ds.assign_coords(time=times)


@pytest.fixture
def files(tmp_path):
    grid, stations, noleap = tmp_path / "grid.nc", tmp_path / "stations.nc", tmp_path / "noleap.nc"
    make_grid(nt=48, nlat=3, nlon=4).to_netcdf(grid)
    make_stations(nt=48, n=3).to_netcdf(stations)
    _noleap_stations().to_netcdf(noleap)
    return grid, stations, noleap


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("chunks", [None, {}], ids=["memory", "dask"])
def test_a_dropped_dataset_closes_its_file_at_once(files, chunks):
    gc.collect()
    gc.disable()  # what closes the file must be the last reference going, not a collection
    try:
        for path in files:
            ds = sources.open_dataset(path, chunks=chunks)
            float(ds[next(iter(ds.data_vars))][0].max())
            if chunks is not None:  # dask reads the file when computed: it stays open
                assert _open_descriptors(path) == 1
            del ds
            assert _open_descriptors(path) == 0, f"{path.name} is still open"
    finally:
        gc.enable()


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_closing_the_dataset_closes_the_file(files):
    with sources.open_dataset(files[0], chunks={}) as ds:
        float(ds.pm25[0].max())
        assert _open_descriptors(files[0]) == 1
    assert _open_descriptors(files[0]) == 0
    assert float(ds.pm25[0].max()) >= 0  # a later read opens it again


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_file_refused_after_opening_is_closed_though_its_error_is_kept(tmp_path):
    path = tmp_path / "no_units.nc"
    ds = make_grid(nt=24)
    del ds["pm25"].attrs["units"]
    ds.to_netcdf(path)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(SchemaError, match="pm25") as err:
            sources.open_dataset(path, chunks={})
        assert _open_descriptors(path) == 0  # err's traceback holds the frames that opened it
    finally:
        gc.enable()
    assert err.value is not None


def test_cftime_times_are_still_found(files):
    ds = sources.open_dataset(files[2])
    assert isinstance(ds.time.values[0], cftime.DatetimeNoLeap) and ds.sizes["time"] == 40


@pytest.mark.slow  # ~4 s: a fresh interpreter (the unit registry's first import)
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_the_first_open_of_a_process_closes_its_file_too(files):
    # the first open imports pint (and matplotlib), whose import keeps tracebacks: the
    # frames above it, with the dataset in their locals, must not be among them
    script = textwrap.dedent(
        f"""
        import gc, os, pathlib
        gc.disable()
        from geoclim.data import sources

        def descriptors(path):
            fds = pathlib.Path("/proc/self/fd").iterdir()
            return sum(1 for f in fds if os.path.exists(f) and os.readlink(f) == str(path))

        path = pathlib.Path({str(files[0])!r})
        ds = sources.open_dataset(path, chunks={{}})
        float(ds["pm25"][0].max())
        assert descriptors(path) == 1
        del ds
        print(descriptors(path))
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
