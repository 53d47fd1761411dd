import numpy as np
import pandas as pd
import pytest
import xarray as xr
import yaml

from geoclim.cli.main import main


def _write(tmp_path):
    times = pd.date_range("2020-01-01", periods=30, freq="D")
    raw = xr.Dataset(
        {"sst": (("time", "stn"), np.ones((30, 2)))},
        coords={"time": times, "lat": ("stn", [1.0, 2.0]), "lon": ("stn", [3.0, 4.0])},
    )
    raw.to_netcdf(tmp_path / "buoys.nc")
    return tmp_path / "buoys.nc"


def test_inspect_prints_the_report_and_suggested_configs(tmp_path, capsys):
    assert main(["inspect", str(_write(tmp_path))]) == 0
    out = capsys.readouterr().out
    assert "station, 2 station(s)" in out and "station dim 'stn' -> 'station'" in out
    assert "30 steps of 1 d" in out and "data.variables.sst.units" in out
    assert "--- suggested data/buoys.yaml" in out and "--- suggested task/buoys.yaml" in out


def test_inspect_write_config(tmp_path, capsys):
    assert main(["inspect", str(_write(tmp_path)), "--write-config", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'c/data/buoys.yaml'}" in out
    assert "hydra.searchpath=[file://" in out and "data=buoys task=buoys" in out
    assert yaml.safe_load((tmp_path / "c/task/buoys.yaml").read_text())["targets"] == ["sst"]


def test_inspect_an_embedded_sample(capsys):
    assert main(["inspect", "naps_no2"]) == 0
    assert "naps_no2 (embedded sample)" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["summary", "inspect"])
def test_missing_file_says_no_such_file(tmp_path, capsys, command):
    with pytest.raises(SystemExit) as err:
        main([command, str(tmp_path / "nosuch.nc")])
    assert err.value.code == 2
    message = capsys.readouterr().err
    assert "nosuch.nc: no such file or store" in message and "unknown sample" not in message
