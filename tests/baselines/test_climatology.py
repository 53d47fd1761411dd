import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.baselines.climatology import ClimatologyBaseline
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from tests.conftest import make_grid, make_stations


def _dm(ds, target="pm25", input_steps=6, horizon=4):
    dm = GeoDataModule(ds, dict(targets=[target], input_steps=input_steps, horizon=horizon))
    dm.setup()
    return dm


def test_fitted_on_train_only_changing_val_and_test_changes_nothing():
    ds = make_grid(nt=24 * 20, seed=3)
    dm = _dm(ds)
    clim = ClimatologyBaseline().fit(dm)
    before = clim.predict(dm, "test")

    changed = ds.copy(deep=True)
    after_train = dm.splits.train[1]
    changed["pm25"][after_train:] = changed["pm25"][after_train:] * 10 + 500
    dm2 = _dm(changed)
    clim2 = ClimatologyBaseline().fit(dm2)
    np.testing.assert_array_equal(clim.table, clim2.table)
    xr.testing.assert_identical(before, clim2.predict(dm2, "test"))


def test_reproduces_a_pure_diurnal_cycle_everywhere():
    # x = a(cell) + b * sin(hour): the smoothed table is exact on and far from train days
    times = pd.date_range("2023-03-01", periods=24 * 40, freq="h")
    ds = make_grid(nt=times.size, nlat=2, nlon=3, nan_fraction=0.0)
    hour = times.hour.to_numpy()
    cells = np.arange(6, dtype=np.float32).reshape(2, 3)
    values = 10 + cells[None] + 3 * np.sin(2 * np.pi * hour / 24)[:, None, None]
    ds["pm25"] = ds["pm25"].copy(data=values.astype(np.float32))
    dm = _dm(ds)
    pred = ClimatologyBaseline(smoothing_days=5).fit(dm).predict(dm, "test")["pm25"]
    vt = pd.DatetimeIndex(pred.valid_time.values.ravel())
    want = 10 + cells[None] + 3 * np.sin(2 * np.pi * vt.hour.to_numpy() / 24)[:, None, None]
    np.testing.assert_allclose(pred.values.reshape(want.shape), want, rtol=1e-5)


def test_imputed_train_values_are_ignored():
    ds = make_grid(nt=24 * 20, seed=5)
    dm = _dm(ds)

    polluted = ds.copy(deep=True)
    mask = xr.zeros_like(polluted["pm25"], dtype=bool)
    mask[: dm.splits.train[1] : 7] = True
    polluted["pm25"] = polluted["pm25"].where(~mask, 1e4)
    polluted["pm25_imputed"] = mask
    with_mask = ClimatologyBaseline().fit(_dm(polluted)).table
    as_missing = ClimatologyBaseline().fit(_dm(ds.assign(pm25=ds.pm25.where(~mask)))).table
    np.testing.assert_array_equal(with_mask, as_missing)
    assert np.nanmax(with_mask) < 1e3


def test_days_far_from_train_fall_back_to_the_hour_of_day_mean():
    ds = make_grid(nt=24 * 30, nlat=2, nlon=2, seed=1, nan_fraction=0.0)
    dm = _dm(ds)
    clim = ClimatologyBaseline(smoothing_days=2).fit(dm)
    train = ds["pm25"].isel(time=slice(*dm.splits.train))
    hour_mean = train.groupby("time.hour").mean("time")
    day_far = (pd.Timestamp(ds.time.values[0]).dayofyear - 1 + 180) % 366
    for h in (0, 7, 23):
        np.testing.assert_allclose(
            clim.table[h, day_far, :, :, 0], hour_mean.sel(hour=h).values, rtol=1e-5
        )


def test_stations_and_predict_layout():
    ds = make_stations(nt=24 * 10, variables=("no2", "t2m"))
    dm = _dm(ds, target="no2")
    pred = ClimatologyBaseline().fit(dm).predict(dm, "val")
    assert pred["no2"].dims == ("init_time", "lead_time", "station")
    assert np.isfinite(pred["no2"]).any()
    assert pred["no2"].attrs["units"] == "ppb"


def test_bad_settings_name_the_value():
    with pytest.raises(ConfigError, match="smoothing_days"):
        ClimatologyBaseline(smoothing_days=-1)


def test_monthly_data_month_of_year_means_exact():
    # mid-month stamps; the table is the mean of each calendar month over the train years
    times = pd.date_range("2000-01-01", periods=72, freq="MS") + pd.Timedelta("14D")
    ds = make_stations(nt=72, n=2, nan_fraction=0.0).assign_coords(time=times)
    dm = _dm(ds, target="no2", input_steps=3, horizon=2)
    start, stop = dm.splits.train
    month = times.month.to_numpy() - 1
    x = ds["no2"].values.astype(np.float64)  # (T, S)
    for kappa in (0.0, 2.0):
        clim = ClimatologyBaseline(prior_weight=kappa).fit(dm)
        assert clim.table.shape == (1, 12, 2, 1, 1)
        train, m = x[start:stop], month[start:stop]
        overall = train.mean(0)
        want = np.stack(
            [(train[m == k].sum(0) + kappa * overall) / ((m == k).sum() + kappa) for k in range(12)]
        )
        np.testing.assert_allclose(clim.table[0, :, :, 0, 0], want, rtol=1e-5)
    pred = clim.predict(dm, "test")["no2"]
    assert pred.lead_time.attrs["units"] == "months"
    vt_month = pd.DatetimeIndex(pred.valid_time.values.ravel()).month.to_numpy() - 1
    np.testing.assert_allclose(pred.values.reshape(-1, 2), want[vt_month], rtol=1e-5)


def test_noleap_daily_uses_day_of_year():
    times = xr.date_range(
        "2001-01-01", periods=365 * 2, freq="D", calendar="noleap", use_cftime=True
    )
    doy = np.asarray(times.dayofyear) - 1
    ds = make_stations(nt=times.size, n=1, nan_fraction=0.0).assign_coords(time=times)
    ds["no2"] = ds["no2"].copy(data=(doy[:, None] * 1.0).astype(np.float32))
    dm = _dm(ds, target="no2", input_steps=3, horizon=2)
    clim = ClimatologyBaseline(smoothing_days=0, prior_weight=0).fit(dm)
    assert clim.table.shape[:2] == (1, 366)
    pred = clim.predict(dm, "test")["no2"]
    vt = xr.CFTimeIndex(pred.valid_time.values.ravel())
    np.testing.assert_allclose(pred.values.ravel(), np.asarray(vt.dayofyear) - 1)
