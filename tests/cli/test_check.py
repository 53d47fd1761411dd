import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from geoclim.cli.main import main
from geoclim.data.sources import write_netcdf
from geoclim.data.synthetic import make_station_dataset


@pytest.fixture
def pair(tmp_path):
    ref = make_station_dataset(4, ("no2", "t2m"), days=4, static=())
    new = ref.copy(deep=True)
    new["no2"] = new["no2"] * 2.0
    return write_netcdf(ref, tmp_path / "ref.nc"), write_netcdf(new, tmp_path / "new.nc")


def test_check_writes_report_and_plot_and_fails_on_drift(pair, tmp_path, capsys):
    ref, new = pair
    out = tmp_path / "drift"
    assert main(["check", str(ref), str(new), "--out", str(out), "--fail-on", "drift"]) == 1
    text = capsys.readouterr().out
    no2 = next(line for line in text.splitlines() if line.startswith("no2"))
    t2m = next(line for line in text.splitlines() if line.startswith("t2m"))
    assert "YES" in no2 and "4/4" in no2 and " no " in t2m
    report = xr.open_dataset(out / "drift.nc")
    assert report["drift_pooled"].sel(variable="no2").item()
    assert report["psi"].sizes == {"variable": 2, "station": 4}
    assert (out / "drift.png").read_bytes()[:4] == b"\x89PNG"


def test_check_without_fail_on_exits_0_for_drift(pair):
    assert main(["check", str(pair[0]), str(pair[1])]) == 0


def test_check_of_identical_data_has_no_drift(pair, capsys):
    assert main(["check", str(pair[0]), str(pair[0]), "--fail-on", "drift"]) == 0
    assert "YES" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["check", "REF", "nosuch.nc"], "nosuch.nc: no such file or store"),
        (["check", "REF", "REF", "--variables", "pm25"], "lacks time-varying variable(s) ['pm25']"),
        (["check", "REF", "REF", "--psi", "0"], "--psi must be > 0"),
        (["check", "REF", "nosample"], "neither a file nor an embedded sample"),
    ],
    ids=["missing-file", "unknown-variable", "bad-threshold", "unknown-sample"],
)
def test_check_mistakes_are_clean_errors(pair, argv, message, capsys):
    argv = [str(pair[0]) if a == "REF" else a for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_check_help_shows_defaults_and_example():
    proc = subprocess.run(
        [sys.executable, "-m", "geoclim.cli.main", "check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "default: 0.25" in proc.stdout and "example:" in proc.stdout


def test_check_reports_missing_rate_change(tmp_path, capsys):
    ref = make_station_dataset(2, ("no2",), days=4, static=())
    new = ref.copy(deep=True)
    new["no2"][:48] = np.nan
    a, b = write_netcdf(ref, tmp_path / "a.nc"), write_netcdf(new, tmp_path / "b.nc")
    assert main(["check", str(a), str(b), "--fail-on", "drift"]) == 1
    assert "missing" in capsys.readouterr().out
