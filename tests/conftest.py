"""Shared fixtures; one thread per worker when the suite runs in parallel (``make test``)."""

import gc
import os

if "PYTEST_XDIST_WORKER" in os.environ:  # before torch / OpenMP start: no oversubscription
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import schema


def pytest_configure(config):
    """In the xdist controller, import Lightning (and torch) before the workers start.

    The controller re-creates each warning a worker reports, importing the module of its
    category (Lightning's ``PossibleUserWarning``, torch's). Done lazily, that first import of
    torch in the controller failed half-way ("partially initialized module 'torch'") and the
    controller crashed with a segmentation fault, ending the run. Imported here, once, the
    later imports are lookups.
    """
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        import lightning  # noqa: F401

        gc.freeze()


def pytest_collection_finish(session):
    """Hide what collection imported (torch, Lightning, ...) from the garbage collector.

    Those millions of objects live until the process ends; without ``gc.freeze`` every
    full collection of the test run walks them again.
    """
    gc.collect()
    gc.freeze()


def pytest_unconfigure(config):
    """Freeze the whole heap at the end: the interpreter's exit then skips collecting it.

    Exiting after the suite's imports otherwise costs each process 1.5-3 CPU-seconds of
    collections over objects that the exit frees anyway.
    """
    gc.freeze()


def make_grid(nt=60, nlat=3, nlon=4, seed=0, nan_fraction=0.1, variables=("pm25", "t2m"), freq="h"):
    """Random canonical grid with NaN holes and two static fields."""
    rng = np.random.default_rng(seed)
    data = {}
    for name in variables:
        v = rng.gamma(2.0, 10.0, (nt, nlat, nlon)).astype(np.float32)
        v[rng.random(v.shape) < nan_fraction] = np.nan
        data[name] = (("time", "latitude", "longitude"), v)
    data["elevation"] = (("latitude", "longitude"), rng.uniform(0, 500, (nlat, nlon)))
    data["land_sea_mask"] = (("latitude", "longitude"), np.ones((nlat, nlon)))
    ds = xr.Dataset(
        data,
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq=freq),
            "latitude": np.linspace(40, 42, nlat),
            "longitude": np.linspace(-80, -77, nlon),
        },
    )
    return schema.annotate(ds)


def make_stations(nt=60, n=5, seed=1, nan_fraction=0.1, variables=("no2", "t2m")):
    rng = np.random.default_rng(seed)
    data = {}
    for name in variables:
        v = rng.gamma(2.0, 10.0, (nt, n)).astype(np.float32)
        v[rng.random(v.shape) < nan_fraction] = np.nan
        data[name] = (("time", "station"), v)
    ds = xr.Dataset(
        data,
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq="h"),
            "station": [f"s{i}" for i in range(n)],
            "latitude": ("station", rng.uniform(40, 50, n)),
            "longitude": ("station", rng.uniform(-80, -70, n)),
        },
    )
    return schema.annotate(ds)


@pytest.fixture
def tiny_grid():
    return make_grid()


@pytest.fixture
def tiny_stations():
    return make_stations()
