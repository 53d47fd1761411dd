import numpy as np
import pytest

from geoclim.data.summary import describe, format_summary
from tests.conftest import make_grid, make_stations


def test_describe_counts_missing_and_imputed_exactly():
    ds = make_stations(nt=10, n=2, nan_fraction=0.0, variables=("no2",))
    ds["no2"][:2, 0] = np.nan
    mask = ds.no2.isnull().copy()
    mask[:] = False
    mask[5, 1] = True
    ds["no2_imputed"] = mask
    d = describe(ds)
    assert d["space"] == "2 stations" and d["step"] == "1 h" and d["n_time"] == 10
    assert d["variables"]["no2"]["missing_pct"] == pytest.approx(10.0)
    assert d["variables"]["no2"]["imputed_pct"] == pytest.approx(5.0)


def test_grid_completeness_counts_covered_cells_only():
    ds = make_grid(nt=4, nlat=2, nlon=2, nan_fraction=0.0, variables=("no2",))
    ds = ds.drop_vars(["elevation", "land_sea_mask"])
    cov = ds.no2.isel(time=0) * 0 + 1
    cov[0, 0] = 0
    ds["no2"][:, 0, 0] = np.nan
    ds["coverage"] = cov.assign_attrs(units="1", long_name="coverage")
    d = describe(ds)
    assert d["space"] == "2 x 2 cells (3 covered)"
    assert d["variables"]["no2"]["missing_pct"] == 0.0
    text = format_summary("x", ds)
    assert "no2" in text and "0.00" in text


def test_describe_reads_calendar_steps_and_cftime():
    import xarray as xr

    ds = make_stations(nt=24, n=2, variables=("no2",))
    t = xr.date_range("2000-01-01", periods=24, freq="MS", calendar="360_day", use_cftime=True)
    d = describe(ds.assign_coords(time=t))
    assert d["step"] == "1 month" and d["start"].startswith("2000-01-01") and d["n_time"] == 24
