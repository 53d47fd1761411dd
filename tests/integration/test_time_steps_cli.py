"""``geoclim-train`` on plain-xarray files of each time step: no code, only a path and a task."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.support.cli import geoclim_train

BASE = ["data=synthetic_grid", "data/source=netcdf", "debug=smoke", "logger=none"]


def _monthly_grid(path, times):
    # a 5-degree ocean grid, land NaN throughout, descending latitude as many files have it
    rng = np.random.default_rng(0)
    lat, lon = np.arange(57.5, -60, -5.0), np.arange(-177.5, -117, 5.0)
    month = np.asarray(times.month)
    sst = (
        290
        + 5 * np.cos(np.deg2rad(lat))[None, :, None]
        + 2 * np.sin(2 * np.pi * month / 12)[:, None, None]
        + rng.normal(0, 0.3, (len(times), lat.size, lon.size))
    )
    sst[:, rng.random((lat.size, lon.size)) < 0.3] = np.nan
    attrs = {"units": "K", "long_name": "sea surface temperature"}
    xr.Dataset(
        {"t2m": (("time", "lat", "lon"), sst.astype(np.float32), attrs)},
        coords={"time": times, "lat": lat, "lon": lon},
    ).to_netcdf(path)
    return path


def _daily_stations(path, times):
    # three stations, NO2 with a wind-sector flag variable (a categorical input)
    rng = np.random.default_rng(1)
    n = len(times)
    no2 = 20 + 5 * np.sin(2 * np.pi * np.arange(n) / 365)[:, None] + rng.normal(0, 1, (n, 3))
    flags = {"flag_values": np.arange(4, dtype=np.int8), "flag_meanings": "N E S W"}
    xr.Dataset(
        {
            "no2": (("time", "station"), no2.astype(np.float32), {"units": "ppb"}),
            "wd": (("time", "station"), rng.integers(0, 4, (n, 3)).astype(np.int8), flags),
        },
        coords={
            "time": times,
            "station": ["a", "b", "c"],
            "latitude": ("station", [40.0, 41.0, 42.0]),
            "longitude": ("station", [-80.0, -79.0, -78.0]),
        },
    ).to_netcdf(path)
    return path


def _train(tmp_path, data_path, *task):
    run = tmp_path / "run"
    result = geoclim_train(
        *BASE, f"data.source.path={data_path}", *task, f"hydra.run.dir={run}", cwd=tmp_path
    )
    return result, run


def test_mid_monthly_grid_with_land_nan_trains(tmp_path):
    times = pd.date_range("1990-01-01", periods=120, freq="MS") + pd.Timedelta("14D")
    path = _monthly_grid(tmp_path / "sst.nc", times)
    result, run = _train(
        tmp_path,
        path,
        "task.targets=[t2m]",
        "task.future_inputs=[month_sin,month_cos]",
        "task.input_steps=6",
        "task.horizon=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert np.isfinite(metrics["test/rmse/t2m/lead_3"])
    with xr.open_dataset(run / "predictions.nc") as fc:
        assert fc.lead_time.attrs["units"] == "months"
        assert (pd.DatetimeIndex(fc.valid_time.values.ravel()).day == 15).all()


@pytest.mark.slow
def test_noleap_daily_stations_with_a_categorical_input_train(tmp_path):
    times = xr.date_range("2001-01-01", periods=400, freq="D", calendar="noleap", use_cftime=True)
    path = _daily_stations(tmp_path / "no2.nc", times)
    result, run = _train(
        tmp_path,
        path,
        "task.targets=[no2]",
        "task.past_inputs=[wd]",
        "task.future_inputs=[doy_sin,doy_cos]",
        "task.input_steps=7",
        "task.horizon=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    task = json.loads((run / "task.json").read_text())
    assert task["categories"] == {"wd": {"N": 0, "E": 1, "S": 2, "W": 3}}
    with xr.open_dataset(run / "predictions.nc") as fc:
        assert fc.init_time.values.dtype == object  # cftime dates, not datetime64
        assert fc.lead_time.values[0] == np.timedelta64(1, "D")


@pytest.mark.slow
def test_hourly_feature_on_daily_data_is_refused_by_name(tmp_path):
    times = pd.date_range("2001-01-01", periods=400, freq="D")
    path = _daily_stations(tmp_path / "no2.nc", times)
    result, _ = _train(tmp_path, path, "task.targets=[no2]")  # task's default: hour_sin, ...
    assert result.returncode == 2, result.stderr[-3000:]
    assert "['hour_sin', 'hour_cos'] do not vary" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_irregular_axis_is_refused_then_trains_resampled(tmp_path):
    times = pd.date_range("2001-01-01", periods=400, freq="D").delete([50, 51, 200])
    path = _daily_stations(tmp_path / "no2.nc", times)
    task = ("task.targets=[no2]", "task.future_inputs=[doy_sin]", "task.input_steps=5")
    result, _ = _train(tmp_path, path, *task)
    assert result.returncode == 2 and "data.source.resample=1D" in result.stderr
    result, run = _train(tmp_path, path, *task, "data.source.resample=1D")
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize(
    "times",
    [
        pytest.param(
            xr.date_range(
                "1950-01-01", periods=150, freq="MS", calendar="360_day", use_cftime=True
            ),
            id="360day-monthly",
        ),
        pytest.param(pd.date_range("1850-01-01", periods=150, freq="YS"), id="yearly"),
    ],
)
def test_more_calendar_steps_train(tmp_path, times):
    path = _monthly_grid(tmp_path / "sst.nc", times)
    result, run = _train(
        tmp_path, path, "task.targets=[t2m]", "task.future_inputs=[]", "task.input_steps=4",
        "task.horizon=2", "model=climatology",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert np.isfinite(json.loads((run / "metrics.json").read_text())["test/rmse/t2m"])
