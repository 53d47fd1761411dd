import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.baselines.base import Baseline
from geoclim.baselines.persistence import PersistenceBaseline, last_observed
from geoclim.baselines.references import reference_forecasts
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from geoclim.evaluation.score import score_run
from tests.conftest import make_grid, make_stations


def _dm(ds, window=None, input_steps=4, horizon=3):
    target = "pm25" if "pm25" in ds else "no2"
    dm = GeoDataModule(
        ds,
        dict(targets=[target], past_inputs=["t2m"], input_steps=input_steps, horizon=horizon),
        window=window or {"patch": 1},
    )
    dm.setup()
    return dm, target


def _expected_last_observed(series, t, window):
    for back in range(window):
        if t - back >= 0 and np.isfinite(series[t - back]):
            return series[t - back]
    return np.nan


LAYOUTS = [
    pytest.param("grid", {"patch": 1}, id="grid-points"),
    pytest.param("grid", {"patch": 2, "patch_stride": 1}, id="grid-overlapping-patches"),
    pytest.param("grid", {"patch": None}, id="whole-grid"),
    pytest.param("stations", {}, id="stations"),
]


@pytest.mark.parametrize(("layout", "window"), LAYOUTS)
@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nan_fraction=st.sampled_from([0.0, 0.2, 0.6]),
    split=st.sampled_from(["train", "val", "test"]),
)
def test_persistence_equals_source_at_init_time(layout, window, seed, nan_fraction, split):
    make = make_grid if layout == "grid" else make_stations
    ds = make(nt=120, seed=seed, nan_fraction=nan_fraction)
    dm, target = _dm(ds, window)
    fc = PersistenceBaseline().fit(dm).predict(dm, split)[target]
    src = ds[target].sel(time=fc.init_time.values).rename(time="init_time")
    expected = src.broadcast_like(fc).transpose(*fc.dims)
    observed = expected.notnull() & fc.notnull()
    assert int(observed.sum()) > 0
    # exactly the source value at the init time, for every lead, wherever it is observed
    np.testing.assert_array_equal(fc.values[observed.values], expected.values[observed.values])
    # every forecast lead is the same value
    np.testing.assert_array_equal(fc.values, np.broadcast_to(fc.isel(lead_time=[0]), fc.shape))
    # exactly the samples of the split: one init time per sample init position
    t, _, _ = dm.index[split].decode()
    np.testing.assert_array_equal(fc.init_time.values, ds.time.values[np.unique(t)])


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_missing_init_value_falls_back_to_last_observed_in_window(seed):
    ds = make_stations(nt=120, seed=seed, nan_fraction=0.5)
    dm, target = _dm(ds, input_steps=4)
    fc = PersistenceBaseline().fit(dm).predict(dm, "test")[target].isel(lead_time=0)
    series = ds[target].transpose("time", "station").values
    t, s, _ = dm.index["test"].decode()
    row = np.searchsorted(fc.init_time.values, ds.time.values[t])
    got = fc.values[row, s]
    want = np.array(
        [_expected_last_observed(series[:, j], i, 4) for i, j in zip(t, s, strict=True)]
    )
    assert np.isnan(series[t, s]).any() and np.isfinite(want).any()  # fallbacks happen
    np.testing.assert_array_equal(got, want)


def test_diurnal_persistence_takes_the_same_hour_one_period_back():
    ds = make_grid(nt=24 * 25, nlat=2, nlon=2, nan_fraction=0.0)
    dm, target = _dm(ds, input_steps=6, horizon=30)
    fc = PersistenceBaseline(period="24h").fit(dm).predict(dm, "test")[target]
    for k in (1, 5, 24, 25, 30):
        lead = fc.isel(lead_time=k - 1)
        back = 24 * int(np.ceil(k / 24))  # always at or before the init time
        source_time = lead.valid_time.values - np.timedelta64(back, "h")
        want = ds[target].sel(time=source_time).values
        np.testing.assert_array_equal(lead.values, want)
        assert (source_time <= lead.init_time.values).all()


def test_last_observed_fills_within_window_only():
    x = np.array([1.0, np.nan, np.nan, np.nan, 5.0, np.nan])
    np.testing.assert_array_equal(last_observed(x, 3), [1, 1, 1, np.nan, 5, 5])
    np.testing.assert_array_equal(last_observed(x, 1), x)


def test_persistence_skill_against_itself_is_zero():
    dm, target = _dm(make_grid(nt=200), input_steps=6, horizon=4)
    scores = score_run(
        PersistenceBaseline().fit(dm).predict(dm, "test"),
        dm,
        references=reference_forecasts(dm, "test"),
        n_boot=20,
    )
    skill = scores[target].sel(metric="skill_persistence")
    np.testing.assert_array_equal(skill.values, 0.0)
    ci = scores[target].sel(metric=["skill_persistence_ci_lower", "skill_persistence_ci_upper"])
    np.testing.assert_array_equal(ci.values, 0.0)


def test_config_errors_name_the_bad_value():
    dm, _ = _dm(make_grid(nt=120))
    with pytest.raises(ConfigError, match="90min"):
        PersistenceBaseline(period="90min").fit(dm)
    with pytest.raises(ConfigError, match="not a duration"):
        PersistenceBaseline(period="yesterday")
    with pytest.raises(ConfigError, match="kind"):
        PersistenceBaseline(kind="network")
    with pytest.raises(ConfigError, match="valid splits"):
        PersistenceBaseline().predict(dm, "validation")


def test_persistence_is_a_baseline():
    assert isinstance(PersistenceBaseline(), Baseline)
    assert PersistenceBaseline(pd.Timedelta("1D")).name == "persistence_24h"


def test_same_month_last_year_on_monthly_data():
    times = pd.date_range("1980-01-01", periods=300, freq="MS") + pd.Timedelta("14D")
    ds = make_stations(nt=300, n=2, nan_fraction=0.0).assign_coords(time=times)
    dm, target = _dm(ds, input_steps=3, horizon=14)
    model = PersistenceBaseline(period="1 year").fit(dm)
    assert model.name == "persistence_1year" and model.period_steps(dm) == 12
    pred = model.predict(dm, "test")[target]
    pos = np.searchsorted(ds.time.values, pred.init_time.values)
    for k in (1, 12, 13, 14):
        src = pos + k - 12 * int(np.ceil(k / 12))  # one (or two) years before the valid month
        np.testing.assert_array_equal(pred.sel(lead_time=k).values, ds[target].values[src])
    with pytest.raises(ConfigError, match="period 1D is not a whole number of time steps"):
        PersistenceBaseline(period="24h").fit(dm)
