"""A user's own file trains through ``geoclim-train data=file`` with no code."""

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from tests.support.cli import geoclim_train


def _single_station(path):
    times = pd.date_range("2020-01-01", periods=24 * 20, freq="h")
    hours = np.arange(times.size)
    dew = (
        5 + 3 * np.sin(2 * np.pi * hours / 24) + np.random.default_rng(0).normal(0, 0.3, hours.size)
    )
    raw = xr.Dataset(
        {"dew": ("time", dew, {"units": "Celsius", "long_name": "dew point temperature"})},
        coords={"time": times, "lat": 45.5, "lon": -73.6},
    )
    raw.to_netcdf(path)
    return path


def test_single_station_file_with_unregistered_target_trains(tmp_path):
    path = _single_station(tmp_path / "station.nc")
    run = tmp_path / "run"
    result = geoclim_train(
        "data=file",
        f"data.source.path={path}",
        "task.targets=[dew]",
        "debug=smoke",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores = xr.open_dataset(run / "scores.nc")
    assert "dew" in scores.data_vars
    predictions = xr.open_dataset(run / "predictions.nc")
    assert predictions.dew.attrs["units"] == "degC"
    assert list(predictions.station.values) == ["station"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/skill_persistence/dew" in metrics
    log = (run / "train.log").read_text()
    assert "window.stride = 1, derived from the data" in log
    assert "dew" in log and "kept" in log  # the load table


def test_a_file_without_units_exits_2_naming_the_key(tmp_path):
    path = tmp_path / "nounits.nc"
    xr.Dataset(
        {"dew": ("time", np.zeros(100))},
        coords={"time": pd.date_range("2020", periods=100, freq="h"), "lat": 1.0, "lon": 2.0},
    ).to_netcdf(path)
    result = geoclim_train(
        "data=file", f"data.source.path={path}", "task.targets=[dew]", "debug=smoke", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "data.variables.dew.units" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_inspect_write_config_then_train(tmp_path):
    import subprocess
    import sys

    path = _single_station(tmp_path / "mtl.nc")
    cfg = tmp_path / "cfg"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "geoclim.cli.main",
            "inspect",
            str(path),
            "--write-config",
            str(cfg),
        ],
        check=True,
        capture_output=True,
    )
    run = tmp_path / "run"
    result = geoclim_train(
        f"hydra.searchpath=[file://{cfg}]",
        "data=mtl",
        "task=mtl",
        "debug=smoke",
        f"hydra.run.dir={run}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "scores.nc").exists()
