import os

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.baselines.features import FeatureSpec, LagFeatures
from geoclim.baselines.persistence import PersistenceBaseline
from geoclim.baselines.trees import (
    LightGBMBaseline,
    RandomForestBaseline,
    XGBoostBaseline,
    _lead_scale,
)
from geoclim.data import schema
from geoclim.data.assemble import truth_at_valid_time
from geoclim.data.datamodule import GeoDataModule
from geoclim.errors import ConfigError
from tests.conftest import make_grid

# One thread each: OpenMP tree libraries spin-wait on a busy machine (LightGBM took 60 s
# instead of 1 s beside other test processes); the tests check results, not parallelism.
FAST = {
    "xgboost": (
        XGBoostBaseline,
        {"n_estimators": 60, "max_depth": 4, "learning_rate": 0.2, "n_jobs": 1},
    ),
    "lightgbm": (
        LightGBMBaseline,
        {"n_estimators": 60, "learning_rate": 0.2, "min_child_samples": 5, "n_jobs": 1},
    ),
    "random_forest": (
        RandomForestBaseline,
        {"n_estimators": 30, "max_depth": 10, "min_samples_leaf": 2, "n_jobs": 1},
    ),
}


def _lagged_dataset(nt=400, lag=3, seed=0):
    # pm25(t) = 50 + 10 * t2m(t - lag): the past covariate determines the target exactly
    rng = np.random.default_rng(seed)
    driver = rng.normal(0, 1, (nt + lag, 2, 2))
    target = 50 + 10 * driver[:-lag]
    ds = xr.Dataset(
        {
            "pm25": (("time", "latitude", "longitude"), target.astype(np.float32)),
            "t2m": (("time", "latitude", "longitude"), (280 + driver[lag:]).astype(np.float32)),
        },
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq="h"),
            "latitude": [40.0, 41.0],
            "longitude": [-80.0, -79.0],
        },
    )
    return schema.annotate(ds)


def _dm(ds, quantiles=(), window=None, horizon=2):
    dm = GeoDataModule(
        ds,
        dict(
            targets=["pm25"],
            past_inputs=["t2m"],
            future_inputs=["hour_sin"],
            input_steps=6,
            horizon=horizon,
            quantiles=list(quantiles),
        ),
        window=window or {"patch": 1},
    )
    dm.setup()
    return dm


def _rmse(forecast, dm):
    truth = truth_at_valid_time(forecast, dm.ds)["pm25"]
    fc = forecast["pm25"]
    if "quantile" in fc.dims:
        fc = fc.sel(quantile=0.5)
    return float(np.sqrt(((fc - truth) ** 2).mean()))


@pytest.mark.parametrize("name", list(FAST))
def test_trees_beat_persistence_when_a_lag_determines_the_target(name):
    dm = _dm(_lagged_dataset())
    cls, params = FAST[name]
    model = cls(
        params=params, features={"lags": [0, 1, 2, 3], "rolling": []}, max_train_samples=3000
    )
    tree = _rmse(model.fit(dm).predict(dm, "test"), dm)
    persistence = _rmse(PersistenceBaseline().fit(dm).predict(dm, "test"), dm)
    assert tree < 0.5 * persistence, (tree, persistence)


@pytest.mark.parametrize("name", ["xgboost", "lightgbm"])
def test_quantile_predictions_never_cross(name):
    dm = _dm(make_grid(nt=240, nlat=2, nlon=2, seed=4), quantiles=(0.1, 0.5, 0.9))
    cls, params = FAST[name]
    fc = cls(params=params, max_train_samples=2000).fit(dm).predict(dm, "test")
    assert fc["pm25"].dims[-1] == "quantile"
    np.testing.assert_array_equal(fc["quantile"].values, [0.1, 0.5, 0.9])
    diffs = fc["pm25"].diff("quantile")
    assert bool((diffs.where(diffs.notnull(), 0) >= 0).all())
    assert int(fc["pm25"].notnull().sum()) > 0


def test_per_lead_strategy_and_patches_predict_exactly_the_split_samples():
    ds = make_grid(nt=240, nlat=3, nlon=3, seed=2)
    dm = _dm(ds, window={"patch": 2, "patch_stride": 1}, horizon=3)
    cls, params = FAST["lightgbm"]
    fc = (
        cls(params=params, strategy="per_lead", max_train_samples=1000)
        .fit(dm)
        .predict(dm, "val")["pm25"]
    )
    assert fc.dims == ("init_time", "lead_time", "latitude", "longitude")
    t, y, x = dm.index["val"].decode()
    covered = np.zeros((fc.sizes["init_time"], 3, 3), bool)
    rows = np.searchsorted(fc.init_time.values, ds.time.values[t])
    for dy in range(2):
        for dx in range(2):
            covered[rows, y + dy, x + dx] = True
    np.testing.assert_array_equal(fc.notnull().all("lead_time").values, covered)


def test_lag_features_read_the_normalised_arrays_at_the_right_steps():
    dm = _dm(make_grid(nt=200, nlat=2, nlon=2, seed=7))
    feats = LagFeatures(
        dm, FeatureSpec(lags=(0, 2, 9), rolling=(3,), calendar=("hour_sin",)), with_lead=True
    )
    assert feats.lags == (0, 2)  # lag 9 reaches past the 6 input steps
    t, y, x = dm.index["train"].decode()
    t, y, x = t[:50], y[:50], x[:50]
    lead = np.full(50, 2)
    table = feats.build(t, y, x, lead)
    assert table.shape == (50, len(feats.names))
    col = {n: i for i, n in enumerate(feats.names)}
    dyn = dm.arrays.dynamic
    np.testing.assert_array_equal(table[:, col["pm25_lag2"]], dyn[t - 2, y, x, 0])
    np.testing.assert_array_equal(table[:, col["t2m_lag0"]], dyn[t, y, x, 1])
    window = dyn[t[:, None] + np.arange(-2, 1), y[:, None], x[:, None], 0]
    np.testing.assert_allclose(table[:, col["pm25_mean3"]], np.nanmean(window, axis=1), rtol=1e-6)
    np.testing.assert_array_equal(table[:, col["lead"]], 2)
    hour = pd.DatetimeIndex(dm.ds.time.values[t + 2]).hour.to_numpy()
    np.testing.assert_allclose(table[:, col["hour_sin"]], np.sin(2 * np.pi * hour / 24), atol=1e-6)


def test_lead_scale_is_the_per_lead_standard_deviation():
    values = np.array([1.0, 3.0, 10.0, 30.0, 5.0])
    lead = np.array([1, 1, 2, 2, 3])
    np.testing.assert_allclose(_lead_scale(values, lead, 4), [1.0, 10.0, 1.0, 1.0])


def test_config_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match="per_lead"):
        XGBoostBaseline(strategy="recursive")
    with pytest.raises(ConfigError, match="no quantile objective"):
        RandomForestBaseline(quantiles=[0.1, 0.9])
    with pytest.raises(ConfigError, match="valid are"):
        LightGBMBaseline(features={"lag": [1]})
    with pytest.raises(ConfigError, match="calendar"):
        FeatureSpec(calendar=("month",))


def test_trees_learn_from_a_categorical_input():
    # no2 jumps by 40 where the wind sector (a CF flag variable) at the init time is "S"
    rng = np.random.default_rng(0)
    nt = 600
    codes = rng.integers(0, 4, (nt, 2))
    no2 = np.full((nt, 2), 20.0)
    no2[1:] += 40.0 * (codes[:-1] == 2)  # lead-1 value set by the init-time sector
    ds = xr.Dataset(
        {
            "no2": (("time", "station"), no2.astype(np.float32)),
            "wd": (
                ("time", "station"),
                codes.astype(np.int8),
                {"flag_values": [0, 1, 2, 3], "flag_meanings": "N E S W"},
            ),
        },
        coords={
            "time": pd.date_range("2023-01-01", periods=nt, freq="h"),
            "station": ["a", "b"],
            "latitude": ("station", [40.0, 41.0]),
            "longitude": ("station", [-80.0, -79.0]),
        },
    )
    dm = GeoDataModule(
        schema.annotate(ds), dict(targets=["no2"], past_inputs=["wd"], input_steps=3, horizon=1)
    )
    spec = FeatureSpec(lags=(0, 1), rolling=(), calendar=(), coordinates=False)
    feats = LagFeatures(dm, spec, with_lead=False)
    assert feats.names[:5] == ["no2_lag0", "wd=N_lag0", "wd=E_lag0", "wd=S_lag0", "wd=W_lag0"]
    t, y, _ = dm.index["train"].decode()
    table = feats.build(t, y, np.zeros_like(y), np.ones_like(t))
    np.testing.assert_array_equal(table[:, 3], codes[t, y] == 2)
    params = FAST["lightgbm"][1] | {"n_jobs": 1}
    model = LightGBMBaseline(params=params, features=spec, residual=False).fit(dm)
    pred = model.predict(dm, "test")["no2"]
    truth = truth_at_valid_time(pred.to_dataset(), dm.ds)["no2"]
    np.testing.assert_allclose(pred.values, truth.values, atol=1.0)


@pytest.mark.parametrize(
    "env,expected",
    [(None, 2), ("1", 1), ("8", 2), ("0", 2), ("", 2), ("auto", 2)],
    ids=["unset", "one", "above-the-cores", "zero", "empty", "not-a-number"],
)
def test_tree_threads_are_the_cores_capped_by_omp_num_threads(monkeypatch, env, expected):
    from geoclim.baselines.trees import available_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    if env is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OMP_NUM_THREADS", env)
    assert available_cores() == expected
    assert LightGBMBaseline().params["n_jobs"] == expected
    assert LightGBMBaseline(params={"n_jobs": 3}).params["n_jobs"] == 3  # said explicitly
