# Time axes of every step and calendar, read from generated files, and their errors.

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import schema, sources, timeaxis
from geoclim.data.timeaxis import TimeStep
from geoclim.errors import ConfigError, DataError, SchemaError


def _mid_month(year0, n, calendar=None):
    # CF monthly-mean stamps: the middle of each month (Jan 16 12:00, Feb 15 00:00 / 14 12:00)
    out = []
    for i in range(n):
        y, m = divmod(i, 12)
        if calendar is None:
            start = pd.Timestamp(year0 + y, m + 1, 1)
            out.append(start + (start + pd.offsets.MonthBegin(1) - start) / 2)
        else:
            start = cftime.datetime(year0 + y, m + 1, 1, calendar=calendar)
            out.append(start + pd.Timedelta(days=start.daysinmonth / 2).to_pytimedelta())
    return np.array(out, dtype="datetime64[ns]") if calendar is None else np.array(out)


AXES = {
    "hourly": (pd.date_range("2023-03-25", periods=72, freq="h"), "1h"),
    "10min": (pd.date_range("2023-03-25", periods=72, freq="10min"), "10min"),
    "daily": (pd.date_range("2020-01-01", periods=400, freq="D"), "1D"),
    "monthly-start": (pd.date_range("1979-01-01", periods=30, freq="MS"), "1 month"),
    "monthly-mid": (_mid_month(1979, 30), "1 month"),
    "monthly-end": (pd.date_range("1979-01-31", periods=30, freq="ME"), "1 month"),
    "quarterly": (pd.date_range("1979-01-01", periods=12, freq="QS"), "3 months"),
    "yearly": (pd.date_range("1950-01-01", periods=12, freq="YS"), "1 year"),
    "yearly-mid": (pd.date_range("1950-07-01 12:00", periods=12, freq="12MS"), "1 year"),
    "noleap-daily": (
        xr.date_range("2000-01-01", periods=400, freq="D", calendar="noleap", use_cftime=True),
        "1D",
    ),
    "noleap-monthly-mid": (_mid_month(2000, 30, "noleap"), "1 month"),
    "360day-daily": (
        xr.date_range("2000-01-01", periods=400, freq="D", calendar="360_day", use_cftime=True),
        "1D",
    ),
    "360day-monthly": (
        xr.date_range("2000-01-01", periods=30, freq="MS", calendar="360_day", use_cftime=True),
        "1 month",
    ),
}


def _write(path, times, values=None):
    n = len(times)
    v = np.arange(n * 6, dtype=np.float32).reshape(n, 2, 3) if values is None else values
    ds = xr.Dataset(
        {"t2m": (("time", "lat", "lon"), v, {"units": "K", "long_name": "temperature"})},
        coords={"time": times, "lat": [10.0, 15.0], "lon": [0.0, 5.0, 10.0]},
    )
    ds.to_netcdf(path)
    return path


@pytest.mark.parametrize(("times", "label"), AXES.values(), ids=AXES.keys())
def test_generated_file_step(tmp_path, times, label):
    assert timeaxis.calendar_name(times) in ("standard", "noleap", "360_day")
    ds = sources.open_dataset(_write(tmp_path / "f.nc", times))
    step = schema.time_step(ds)
    assert str(step) == label
    assert step == timeaxis.parse_step(label)
    assert timeaxis.calendar_name(ds.time.values) == timeaxis.calendar_name(times)


def test_monthly_360_day_is_a_calendar_step_not_30_days():
    t = AXES["360day-monthly"][0]
    assert timeaxis.infer_step(t) == TimeStep(1, "month")
    assert timeaxis.infer_step(AXES["daily"][0]).timedelta == np.timedelta64(1, "D")


@pytest.mark.parametrize(
    ("times", "where", "rule"),
    [
        pytest.param(
            pd.date_range("2020-01-01", periods=40, freq="D").delete(17),
            "2020-01-17",
            "data.source.resample=1D",
            id="daily-gap",
        ),
        pytest.param(
            pd.DatetimeIndex(["1979-01-01", "1979-02-01", "1979-03-20", "1979-04-01"]),
            "1979-02-01",
            "data.source.resample=MS",
            id="monthly-wandering",
        ),
        pytest.param(
            pd.DatetimeIndex(["1979-01-15", "1979-02-15", "1979-04-15", "1979-05-15"]),
            "1979-02-15",
            "data.source.resample=MS",
            id="monthly-missing-month",
        ),
        pytest.param(
            pd.date_range("2023-01-01", periods=30, freq="h").delete([3, 4]),
            "2023-01-01 02:00",
            "data.source.resample=1h",
            id="hourly-gap",
        ),
    ],
)
def test_irregular_axis_error_offers_resample(tmp_path, times, where, rule):
    with pytest.raises(SchemaError, match="irregular step") as err:
        sources.open_dataset(_write(tmp_path / "f.nc", times))
    assert rule in str(err.value) and where in str(err.value) and "f.nc" in str(err.value)


def test_resample_makes_an_irregular_file_regular(tmp_path):
    times = pd.date_range("2020-01-01", periods=12, freq="12h").delete([4, 5])  # day 3 missing
    v = np.arange(10 * 6, dtype=np.float32).reshape(10, 2, 3)
    ds = sources.open_dataset(_write(tmp_path / "f.nc", times, v), resample="1D")
    assert str(schema.time_step(ds)) == "1D" and ds.sizes["time"] == 6
    np.testing.assert_allclose(ds.t2m.values[0], (v[0] + v[1]) / 2)
    assert np.isnan(ds.t2m.values[2]).all()  # the empty day is missing, not invented
    assert ds.t2m.dtype == np.float32 and ds.attrs["geoclim_resample"] == "1D"


def test_resample_bad_rule_names_it(tmp_path):
    times = pd.date_range("2020-01-01", periods=12, freq="12h").delete([4])
    with pytest.raises(ConfigError, match="data.source.resample='fortnightly'"):
        sources.open_dataset(_write(tmp_path / "f.nc", times), resample="fortnightly")


def test_resample_categorical_takes_the_most_frequent_code():
    times = pd.date_range("2020-01-01", periods=6, freq="8h")
    ds = xr.Dataset(
        {
            "wd": (
                ("time", "station"),
                np.array([[1], [1], [2], [3], [np.nan], [3]]),
                {"flag_values": [1, 2, 3], "flag_meanings": "a b c"},
            )
        },
        coords={"time": times, "station": ["s"]},
    )
    out = timeaxis.resample(ds, "1D")
    np.testing.assert_array_equal(out.wd.values[:, 0], [1, 3])
    assert out.wd.attrs["flag_meanings"] == "a b c"


@pytest.mark.parametrize(
    ("text", "step"),
    [
        ("1h", TimeStep(3600 * 10**9, "ns")),
        ("30min", TimeStep(1800 * 10**9, "ns")),
        ("1D", TimeStep(86400 * 10**9, "ns")),
        ("1 month", TimeStep(1, "month")),
        ("3 months", TimeStep(3, "month")),
        ("MS", TimeStep(1, "month")),
        ("QS", TimeStep(3, "month")),
        ("2YS", TimeStep(2, "year")),
        ("1 year", TimeStep(1, "year")),
    ],
)
def test_parse_step(text, step):
    assert timeaxis.parse_step(text) == step
    assert timeaxis.parse_step(str(step)) == step


def test_parse_step_refuses_nonsense():
    with pytest.raises(ConfigError, match="'fortnight' is not understood"):
        timeaxis.parse_step("fortnight")
    with pytest.raises(ConfigError, match="must be positive"):
        TimeStep(0, "month")


def test_steps_in_and_timedelta():
    assert TimeStep(1, "month").steps_in(TimeStep(1, "year")) == 12
    assert timeaxis.parse_step("1h").steps_in(timeaxis.parse_step("1D")) == 24
    with pytest.raises(ConfigError, match="not a whole number of time steps"):
        TimeStep(1, "month").steps_in(timeaxis.parse_step("24h"))
    with pytest.raises(DataError, match="calendar step with no fixed duration"):
        _ = TimeStep(1, "month").timedelta


def test_lead_coordinates_and_labels():
    fixed = xr.DataArray(timeaxis.lead_coordinate(timeaxis.parse_step("6h"), 3))
    assert fixed.dtype == "timedelta64[ns]"
    assert timeaxis.lead_labels(fixed) == ["6h", "12h", "18h"]
    monthly = xr.DataArray(timeaxis.lead_coordinate(TimeStep(3, "month"), 2))
    np.testing.assert_array_equal(monthly.values, [3, 6])
    assert monthly.attrs["units"] == "months"
    assert timeaxis.lead_labels(monthly) == ["3 months", "6 months"]
    yearly = xr.DataArray(timeaxis.lead_coordinate(TimeStep(1, "year"), 2))
    assert timeaxis.lead_labels(yearly) == ["1 year", "2 years"]
    np.testing.assert_array_equal(timeaxis.lead_steps(monthly), [1, 2])
    np.testing.assert_array_equal(timeaxis.lead_steps(fixed), [1, 2, 3])


def test_valid_times_are_the_axis_stamps_and_extrapolate_by_months():
    mid = _mid_month(2001, 4)  # Jan 16 12:00, Feb 15 00:00, Mar 16 12:00, Apr 16 00:00
    got = timeaxis.valid_times(mid, TimeStep(1, "month"), np.array([0, 2]), 2)
    np.testing.assert_array_equal(got[0], mid[1:3])
    assert pd.Timestamp(got[1, 0]) == pd.Timestamp(mid[3])
    assert pd.Timestamp(got[1, 1]) == pd.Timestamp("2001-05-16")  # Apr 16 + 1 month
    ends = xr.date_range("2001-01-31", periods=2, freq="ME", calendar="noleap", use_cftime=True)
    out = timeaxis.valid_times(ends.values, TimeStep(1, "month"), np.array([1]), 2)
    assert out[0, 1] == cftime.datetime(2001, 4, 28, calendar="noleap")  # 28 Feb + 2 months


def test_boundaries_in_a_360_day_calendar():
    from geoclim.data.task import ForecastTask, make_splits

    t = xr.date_range("2000-01-01", periods=360, freq="D", calendar="360_day", use_cftime=True)
    task = ForecastTask(targets=("t2m",), input_steps=5, horizon=5)
    splits = make_splits(
        t.values,
        task,
        boundaries={
            "train": ("2000-01-01", "2000-06-30"),
            "val": ("2000-07-11", "2000-09-30"),
            "test": ("2000-10-11", "2000-12-30"),
        },
    )
    assert splits.train == (0, 180) and splits.val == (190, 270) and splits.test == (280, 360)
    fractions = make_splits(t.values, task)
    assert fractions.train == (0, 252)
    with pytest.raises(ConfigError, match="360_day calendar"):
        make_splits(
            t.values,
            task,
            boundaries={k: ("2000-02-31", "2000-03-01") for k in ("train", "val", "test")},
        )
