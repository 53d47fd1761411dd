"""Lead hours and valid-time strings of the JSON answer, for numpy and cftime axes."""

import cftime
import numpy as np
import pandas as pd
import pytest

from geoclim.serving.records import _hours_since, _iso, _iso_all


@pytest.mark.parametrize(
    "times",
    [
        np.array(["2024-01-31T00", "2024-02-29T00", "2024-03-31T00"], "datetime64[ns]"),
        np.array(["2024-06-01T13:00", "2024-06-01T13:30"], "datetime64[s]"),
        np.array([cftime.DatetimeNoLeap(2023, 2, 28), cftime.DatetimeNoLeap(2023, 3, 1)]),
        np.array([cftime.Datetime360Day(2023, 2, 30, 6), cftime.Datetime360Day(2023, 3, 1)]),
    ],
    ids=["monthly-ns", "half-hourly-s", "noleap", "360-day"],
)
def test_hours_and_stamps_equal_the_one_by_one_formulas(times):
    t0 = times[0] - (times[1] - times[0])
    expected = [pd.Timedelta(t - t0) / pd.Timedelta(hours=1) for t in times]
    assert _hours_since(times, t0) == pytest.approx(expected, abs=0, rel=1e-15)
    assert _iso_all(times) == [_iso(t) for t in times]


def test_calendar_months_are_exact_hours():
    times = np.array(["2023-02-01", "2023-03-01", "2024-03-01"], "datetime64[ns]")
    assert _hours_since(times, np.datetime64("2023-01-01")) == [
        744.0,
        1416.0,
        10200.0,
    ]  # 2024 is a leap year
    assert _iso_all(times[:1]) == ["2023-02-01T00:00:00"]
