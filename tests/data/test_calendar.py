# Calendar encodings per time step: exact values, and refusals that name the feature.

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import calendar, timeaxis
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError

HOURLY, DAILY = timeaxis.parse_step("1h"), timeaxis.parse_step("1D")
MONTHLY, YEARLY = TimeStep(1, "month"), TimeStep(1, "year")


def test_hourly_values():
    t = pd.DatetimeIndex(["2023-01-02 06:00", "2023-01-07 18:00"])  # a Monday, a Saturday
    f = calendar.calendar_features(
        t, ("hour_sin", "hour_cos", "dow_sin", "is_weekend"), step=HOURLY
    )
    np.testing.assert_allclose(f[:, 0], [1.0, -1.0], atol=1e-6)
    np.testing.assert_allclose(f[:, 1], [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(f[:, 2], [0.0, np.sin(2 * np.pi * 5 / 7)], atol=1e-6)
    np.testing.assert_array_equal(f[:, 3], [0.0, 1.0])


def test_daily_doy_and_refused_hour():
    t = pd.date_range("2023-01-01", periods=3, freq="D")
    f = calendar.calendar_features(t, ("doy_sin",), step=DAILY)
    np.testing.assert_allclose(f[:, 0], np.sin(2 * np.pi * np.arange(3) / 365.25), atol=1e-6)
    with pytest.raises(ConfigError, match=r"\['hour_sin'\] do not vary .* time step of 1D"):
        calendar.calendar_features(t, ("hour_sin", "doy_cos"), step=DAILY)


def test_monthly_month_of_year_exact_and_doy_refused():
    mid = pd.DatetimeIndex(["2001-01-16 12:00", "2001-04-16", "2001-07-16 12:00"])
    f = calendar.calendar_features(mid, ("month_sin", "month_cos"), step=MONTHLY)
    np.testing.assert_allclose(f, [[0, 1], [1, 0], [0, -1]], atol=1e-6)
    with pytest.raises(
        ConfigError, match=r"\['doy_sin', 'hour_cos'\].*\['month_sin', 'month_cos'\]"
    ):
        calendar.calendar_features(mid, ("doy_sin", "hour_cos"), step=MONTHLY)


def test_yearly_has_no_calendar_feature():
    assert calendar.valid_features(YEARLY) == ()
    assert calendar.valid_features(TimeStep(12, "month")) == ()
    with pytest.raises(ConfigError, match="valid for this step are none"):
        calendar.check_features(("month_sin",), YEARLY)


def test_defaults_follow_the_step():
    assert calendar.default_features(HOURLY) == (
        "hour_sin", "hour_cos", "dow_sin", "dow_cos", "doy_sin", "doy_cos",
    )  # fmt: skip
    assert calendar.default_features(DAILY) == ("dow_sin", "dow_cos", "doy_sin", "doy_cos")
    assert calendar.default_features(timeaxis.parse_step("7D")) == ("doy_sin", "doy_cos")
    assert calendar.default_features(MONTHLY) == ("month_sin", "month_cos")
    assert calendar.default_features(YEARLY) == ()


def test_cftime_calendars_use_their_own_year_length():
    t360 = xr.date_range("2000-04-01", periods=2, freq="D", calendar="360_day", use_cftime=True)
    f = calendar.calendar_features(t360.values, ("doy_sin", "month_cos", "hour_cos"))
    np.testing.assert_allclose(f[0], [1.0, np.cos(2 * np.pi * 3 / 12), 1.0], atol=1e-6)
    noleap = xr.date_range("2001-07-02", periods=1, freq="D", calendar="noleap", use_cftime=True)
    g = calendar.calendar_features(noleap.values, ("doy_cos",))
    np.testing.assert_allclose(g[0, 0], np.cos(2 * np.pi * 182 / 365), atol=1e-6)


def test_unknown_feature():
    with pytest.raises(ConfigError, match="unknown calendar feature"):
        calendar.check_features(("moon_sin",), HOURLY)
