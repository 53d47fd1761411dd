"""Shared fixtures; one thread per worker when the suite runs in parallel (``make test``)."""

import os
from pathlib import Path

if "PYTEST_XDIST_WORKER" in os.environ:  # before torch / OpenMP start: no oversubscription
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_name, "1")

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import schema

TESTS = Path(__file__).parent
SHARED_SESSION_FIXTURES = {"serving", "export", "explain", "evaluation"}
"""Test folders whose session fixtures (trained runs, exports) many modules use."""


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """One xdist group per module, and one per folder whose modules share session fixtures.

    ``make test`` runs with ``--dist=loadgroup``: a group's tests run in one worker, so a
    module fixture is built once, and so is a folder's session fixture (an export, a trained
    run) instead of once in every worker.
    """
    for item in items:
        rel = Path(str(item.fspath)).resolve().relative_to(TESTS.resolve())
        group = rel.parts[0] if rel.parts[0] in SHARED_SESSION_FIXTURES else rel.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


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
