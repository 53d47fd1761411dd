import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data.task import ForecastTask, make_splits, window_positions
from geoclim.errors import ConfigError, DataError

TIMES = pd.date_range("2023-01-01", periods=200, freq="h")


def test_splits_are_ordered_and_separated_by_the_gap():
    task = ForecastTask(targets=("pm25",), input_steps=6, horizon=4)
    s = make_splits(TIMES, task)
    assert s.train == (0, 140)
    assert s.val == (150, 170)
    assert s.test == (180, 200)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(150, 400))
def test_no_window_crosses_a_split_boundary(input_steps, horizon, n):
    task = ForecastTask(targets=("pm25",), input_steps=input_steps, horizon=horizon)
    times = pd.date_range("2023-01-01", periods=n, freq="h")
    try:
        s = make_splits(times, task)
    except DataError:
        return
    used = {}
    for name in ("train", "val", "test"):
        inits = window_positions(s[name], task)
        lo, hi = inits.min() - input_steps + 1, inits.max() + horizon
        assert s[name][0] <= lo and hi < s[name][1]
        used[name] = (lo, hi)
    assert used["train"][1] < used["val"][0] and used["val"][1] < used["test"][0]
    # the gap: the first val input comes input_steps + horizon after the last train step
    assert s.val[0] - s.train[1] == input_steps + horizon


def test_explicit_boundaries():
    task = ForecastTask(targets=("pm25",), input_steps=2, horizon=2)
    s = make_splits(
        TIMES,
        task,
        boundaries={
            "train": ("2023-01-01", "2023-01-04 23:00"),
            "val": ("2023-01-05 04:00", "2023-01-06"),
            "test": ("2023-01-07", "2023-01-09"),
        },
    )
    assert s.train == (0, 96) and s.val == (100, 121)
    with pytest.raises(ConfigError, match="val starts 1 step\\(s\\) too early"):
        make_splits(
            TIMES,
            task,
            boundaries={
                "train": ("2023-01-01", "2023-01-04 23:00"),
                "val": ("2023-01-05 03:00", "2023-01-06"),
                "test": ("2023-01-07", "2023-01-09"),
            },
        )
    with pytest.raises(ConfigError, match="lacks \\['test'\\]"):
        make_splits(TIMES, task, boundaries={"train": ("a", "b"), "val": ("c", "d")})


def test_too_short_split_is_reported():
    task = ForecastTask(targets=("pm25",), input_steps=48, horizon=24)
    with pytest.raises(DataError, match="split 'val' has 0 time steps; one window needs"):
        make_splits(TIMES, task)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(targets=()), "task.targets is empty"),
        (dict(targets=("",)), "task.targets: \\[''\\] are not variable names"),
        (dict(targets=("pm25",), horizon=0), "must be >= 1"),
        (dict(targets=("pm25",), quantiles=(0.9, 0.1)), "must be increasing"),
        (dict(targets=("pm25",), quantiles=(0.0, 0.5)), "within \\(0, 1\\)"),
    ],
)
def test_bad_task_fields(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ForecastTask(**kwargs)


def test_task_roundtrip_and_channels():
    task = ForecastTask(
        targets="pm25",
        past_inputs=["t2m", "pm25"],
        future_inputs=["hour_sin", "t2m", "u10"],
        static_inputs=["elevation"],
        quantiles=[0.1, 0.5, 0.9],
    )
    assert task.past_variables == ("pm25", "t2m")
    assert task.dynamic_variables == ("pm25", "t2m", "u10")
    assert task.dims == {
        "c_past": 2,
        "c_known": 3,
        "c_static": 1,
        "c_out": 1,
        "n_quantiles": 3,
        "input_steps": 24,
        "horizon": 24,
    }
    assert ForecastTask.from_dict(task.to_dict()) == task
    with pytest.raises(ConfigError, match="unknown task field\\(s\\) \\['lookback'\\]"):
        ForecastTask.from_dict({"targets": ["pm25"], "lookback": 3})


def test_calendar_features_exact():
    from geoclim.data.calendar import calendar_features

    t = pd.to_datetime(["2023-01-01 00:00", "2023-01-01 06:00", "2023-01-07 18:00"])
    f = calendar_features(t, ("hour_sin", "hour_cos", "is_weekend"))
    np.testing.assert_allclose(f, [[0, 1, 1], [1, 0, 1], [-1, 0, 1]], atol=1e-6)
    with pytest.raises(ConfigError, match="unknown calendar feature 'week_sin'"):
        calendar_features(t, ("week_sin",))
