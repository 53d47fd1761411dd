"""Lead hours and valid-time strings of the JSON answer, for numpy and cftime axes; the
request series stacked at once as variable by variable."""

import re

import cftime
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.errors import SchemaError
from geoclim.serving import records
from geoclim.serving.records import _hours_since, _iso, _iso_all, stack_each, stack_series


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


@pytest.mark.parametrize(
    "valid",
    [
        np.datetime64("2024-06-01T13", "ns") + np.arange(3) * np.timedelta64(1, "h"),
        np.array([cftime.DatetimeNoLeap(2023, 2, 28), cftime.DatetimeNoLeap(2023, 3, 1)]),
    ],
    ids=["datetime64", "cftime"],
)
def test_time_fields_are_the_formulas_and_a_kept_answer_is_not_shared(valid):
    init = np.datetime64("2024-06-01T12", "ns")
    t0 = valid[0] - (valid[1] - valid[0])
    expected = (
        "2024-06-01T12:00:00Z",
        _hours_since(valid, t0),
        [f"{t}Z" for t in _iso_all(valid)],
    )
    for _ in range(3):  # formed, then (datetime64) kept
        answer = records.time_fields(init, t0, valid)
        assert answer == expected
        answer[1].append(-1.0)  # a caller changing its answer
        answer[2].clear()
    later = valid + (valid[1] - valid[0])  # other stamps: other fields
    assert records.time_fields(init, t0, later)[2] == [f"{t}Z" for t in _iso_all(later)]


_VALUE = st.one_of(st.none(), st.floats(-1e6, 1e6, width=32))


@given(
    series=st.lists(
        st.dictionaries(
            st.sampled_from(["no2", "o3", "t2m"]),
            st.lists(_VALUE, min_size=0, max_size=4),
            max_size=3,
        ),
        min_size=1,
        max_size=4,
    ),
    common=st.integers(0, 4),
    uniform=st.booleans(),
)
@settings(max_examples=150, deadline=None, derandomize=True)
def test_series_stacked_at_once_equal_variable_by_variable(series, common, uniform):
    if uniform:  # the usual request: every location, every variable, one length
        names = sorted({k for s in series for k in s}) or ["no2"]
        series = [
            {k: (list(s.get(k, [])) + [1.5] * common)[:common] for k in names} for s in series
        ]
    try:
        expected = stack_each(series)
    except SchemaError as err:
        with pytest.raises(SchemaError, match=re.escape(str(err))):
            stack_series(series)
        return
    got = stack_series(series)
    assert list(got) == list(expected)
    for name, a in expected.items():
        np.testing.assert_array_equal(got[name], a, strict=True)
