import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from geoclim.data import schema
from geoclim.data.impute import Imputer, report
from geoclim.errors import ConfigError, DataError, GeoclimError

NAN = np.nan


def station_ds(pm25, o3=None, freq="h"):
    pm25 = np.asarray(pm25, dtype=np.float32)
    if pm25.ndim == 1:
        pm25 = pm25[:, None]
    n_time, n_st = pm25.shape
    data = {"pm25": (("time", "station"), pm25)}
    if o3 is not None:
        data["o3"] = (("time", "station"), np.asarray(o3, dtype=np.float32).reshape(pm25.shape))
    data["elevation"] = (("station",), np.full(n_st, NAN, np.float32))
    ds = xr.Dataset(
        data,
        coords={
            "time": pd.date_range("2020-01-01", periods=n_time, freq=freq),
            "station": [f"s{i}" for i in range(n_st)],
            "latitude": ("station", np.linspace(0, 1, n_st)),
            "longitude": ("station", np.linspace(0, 1, n_st)),
        },
    )
    return schema.annotate(ds)


def test_interpolation_fills_a_short_gap_linearly_and_leaves_a_long_one():
    series = [1, NAN, NAN, 4, 5, NAN, NAN, NAN, NAN, 10, NAN]
    out = Imputer(method="interpolate", max_gap=3).fit_transform(station_ds(series))
    schema.validate(out)
    got = out.pm25.values[:, 0]
    np.testing.assert_array_equal(got[:5], [1, 2, 3, 4, 5])
    assert np.isnan(got[5:9]).all() and got[9] == 10 and np.isnan(got[10])
    expected_mask = np.zeros(11, bool)
    expected_mask[[1, 2]] = True
    np.testing.assert_array_equal(out.pm25_imputed.values[:, 0], expected_mask)
    assert out.pm25_imputed.dtype == bool


def test_interpolation_without_max_gap_fills_every_interior_gap():
    out = Imputer(method="interpolate", max_gap=None).fit_transform(
        station_ds([NAN, 0, NAN, NAN, NAN, NAN, 5, NAN])
    )
    np.testing.assert_array_equal(out.pm25.values[1:7, 0], [0, 1, 2, 3, 4, 5])
    assert np.isnan(out.pm25.values[[0, 7], 0]).all()


def test_interpolation_works_on_grids():
    data = np.arange(24, dtype=np.float32).reshape(4, 2, 3)
    data[1, 0, 2] = NAN
    ds = schema.annotate(
        xr.Dataset(
            {"pm25": (("time", "latitude", "longitude"), data)},
            coords={
                "time": pd.date_range("2020", periods=4, freq="D"),
                "latitude": [0.0, 1.0],
                "longitude": [0.0, 1.0, 2.0],
            },
        )
    )
    out = Imputer(max_gap=1).fit_transform(ds)
    assert out.pm25.values[1, 0, 2] == 8.0
    assert out.pm25_imputed.values.sum() == 1 and out.pm25_imputed.values[1, 0, 2]
    assert out.pm25_imputed.dims == ("time", "latitude", "longitude")


def test_existing_mask_is_kept_and_ored():
    ds = station_ds([1, NAN, 3, 4])
    ds["pm25_imputed"] = (("time", "station"), np.array([[False], [False], [False], [True]]))
    out = Imputer(max_gap=1).fit_transform(ds)
    np.testing.assert_array_equal(out.pm25_imputed.values[:, 0], [False, True, False, True])


def test_static_variables_are_untouched():
    ds = station_ds([1, NAN, 3])
    out = Imputer(method="knn", n_neighbors=1).fit_transform(ds)
    assert "elevation_imputed" not in out
    assert np.isnan(out.elevation.values).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    method=st.sampled_from(["interpolate", "knn", "regression"]),
    missing=arrays(bool, (12, 3), elements=st.booleans()),
)
def test_observed_values_are_never_changed(method, missing):
    rng = np.random.default_rng(0)
    pm25 = rng.gamma(2.0, 10.0, (12, 3)).astype(np.float32)
    o3 = rng.normal(40.0, 5.0, (12, 3)).astype(np.float32)
    missing[0, 0] = False  # keep one observed value so the fit period is never empty
    pm25[missing] = NAN
    out = Imputer(method=method, max_gap=2).fit_transform(station_ds(pm25, o3))
    got = out.pm25.values
    np.testing.assert_array_equal(got[~missing], pm25[~missing])
    np.testing.assert_array_equal(out.pm25_imputed.values, missing & ~np.isnan(got))
    np.testing.assert_array_equal(out.o3.values, o3)
    assert not out.o3_imputed.values.any()


def test_knn_fit_uses_the_train_period_only():
    # train: o3 = 10 * pm25; test: an observed row (pm25 1.01, o3 999) and a query row with
    # the same pm25 and o3 missing. Donors seen in training give 10; the test row would give 999.
    pm25 = [1, 2, 3, 4, 1.01, 1.01]
    o3 = [10, 20, 30, 40, 999, NAN]
    ds = station_ds(pm25, o3)
    imp = Imputer(method="knn", n_neighbors=1, calendar=False)
    out = imp.fit(ds, period=slice("2020-01-01T00", "2020-01-01T03")).transform(ds)
    assert out.o3.values[5, 0] == pytest.approx(10.0)
    leaky = Imputer(method="knn", n_neighbors=1, calendar=False).fit_transform(ds)
    assert leaky.o3.values[5, 0] == pytest.approx(999.0)


def test_regression_recovers_an_exact_linear_relation():
    pm25 = np.arange(1.0, 9.0)
    o3 = 3.0 * pm25 + 2.0
    o3[[2, 6]] = NAN
    out = Imputer(method="regression", calendar=False).fit_transform(station_ds(pm25, o3))
    np.testing.assert_allclose(out.o3.values[[2, 6], 0], [11.0, 23.0], rtol=1e-5)


def test_mice_fills_every_gap_with_finite_values():
    rng = np.random.default_rng(1)
    pm25 = rng.normal(20, 3, (48, 2))
    o3 = pm25 * 2 + rng.normal(0, 0.1, (48, 2))
    pm25[::7, 0] = NAN
    o3[3::5, 1] = NAN
    out = Imputer(method="mice", max_iter=5).fit_transform(station_ds(pm25, o3))
    assert np.isfinite(out.pm25.values).all() and np.isfinite(out.o3.values).all()
    assert out.pm25_imputed.values.sum() == np.isnan(pm25).sum()


def test_predictors_are_used_but_not_filled():
    o3 = np.array([10, 20, NAN, 40, 50, 60], dtype=float)
    pm25 = np.array([1, 2, 3, 4, 5, NAN], dtype=float)
    ds = station_ds(pm25, o3)
    imp = Imputer(method="regression", variables=["o3"], predictors=["pm25"], calendar=False)
    out = imp.fit(ds, period=slice(None, "2020-01-01T04")).transform(ds)
    assert out.o3.values[2, 0] == pytest.approx(30.0, rel=1e-5)
    assert np.isnan(out.pm25.values[5, 0]) and "pm25_imputed" not in out
    assert imp.targets == ["o3"]


def test_report_counts_exactly():
    ds = station_ds([[1, NAN], [NAN, NAN], [3, NAN], [4, 5]])  # 4 of 8 missing
    out = Imputer(max_gap=1).fit_transform(ds)  # fills (1, s0) only
    rep = report(out)
    assert list(rep.variable.values) == ["pm25"]
    assert rep.missing_before.sel(variable="pm25") == 50.0
    assert rep.imputed.sel(variable="pm25") == 12.5
    assert rep.missing_after.sel(variable="pm25") == 37.5
    xr.testing.assert_equal(Imputer(max_gap=1).fit(ds).report(ds), rep)


def test_error_unknown_method_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"'spline'.*\['interpolate', 'knn', 'mice'"):
        Imputer(method="spline")


def test_error_variable_not_in_dataset_lists_present_ones():
    with pytest.raises(ConfigError, match=r"\['no2'\] not in dataset; dataset has \['elevation'"):
        Imputer(variables=["no2"]).fit(station_ds([1, 2, 3]))


def test_error_static_variable_cannot_be_imputed():
    with pytest.raises(ConfigError, match=r"\['elevation'\] have no 'time' dim"):
        Imputer(variables=["elevation"]).fit(station_ds([1, 2, 3]))


def test_error_period_outside_data():
    with pytest.raises(DataError, match="period 2030-01-01..2030-02-01 is outside the data"):
        Imputer().fit(station_ds([1, 2, 3]), period=slice("2030-01-01", "2030-02-01"))


def test_error_variable_all_missing_in_train_is_named():
    ds = station_ds([1, 2, 3, 4], o3=[NAN, NAN, 5, 6])
    with pytest.raises(DataError, match=r"\['o3'\] have no observed value in the fit period"):
        Imputer(method="knn").fit(ds, period=slice("2020-01-01T00", "2020-01-01T01"))


def test_error_transform_before_fit():
    with pytest.raises(GeoclimError, match="not fitted"):
        Imputer().transform(station_ds([1, 2, 3]))


def test_error_bad_max_gap():
    with pytest.raises(ConfigError, match="max_gap must be >= 1"):
        Imputer(max_gap=0)
