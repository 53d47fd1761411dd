"""Units pint cannot parse: the error names the variable, the file and the key to fix."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.cli.main import main


def write_station_file(path, units):
    t = pd.date_range("2023-01-01", periods=48, freq="h")
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "wobble": (("time", "station"), rng.random((48, 2), np.float32), {"units": units}),
            "no2": (("time", "station"), rng.random((48, 2), np.float32), {"units": "ppb"}),
        },
        coords={
            "time": t,
            "station": ["a", "b"],
            "latitude": ("station", [40.0, 41.0]),
            "longitude": ("station", [-80.0, -79.0]),
        },
    )
    ds.to_netcdf(path)
    return path


def test_summary_names_variable_file_and_config_key(tmp_path, capsys):
    path = write_station_file(tmp_path / "obs.nc", "blorps per fortnight squared")
    with pytest.raises(SystemExit) as exc:
        main(["summary", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: variable 'wobble': unknown units")
    assert "'blorps per fortnight squared'" in err and "data.variables.wobble.units" in err
    assert "Traceback" not in err


def test_units_pint_knows_are_read_not_rejected(tmp_path, capsys):
    path = write_station_file(tmp_path / "obs.nc", "furlongs per fortnight squared")
    assert main(["summary", str(path)]) == 0
    assert "fur fortnight-2" in capsys.readouterr().out


def test_missing_file_says_no_such_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["summary", str(tmp_path / "nosuch.nc")])
    assert exc.value.code == 2
    assert "nosuch.nc: no such file" in capsys.readouterr().err
