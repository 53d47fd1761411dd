import numpy as np
import pandas as pd
import xarray as xr

from geoclim.evaluation import bootstrap
from geoclim.evaluation import metrics as m


def _data(n_init=40, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n_init, 3, 2, 2)
    coords = {
        "init_time": pd.date_range("2023-01-01", periods=n_init, freq="h"),
        "lead_time": pd.to_timedelta([1, 2, 3], unit="h"),
        "latitude": [10.0, 50.0],
        "longitude": [0.0, 1.0],
    }
    dims = ("init_time", "lead_time", "latitude", "longitude")
    truth = xr.Dataset({"x": (dims, rng.normal(0, 1, shape))}, coords=coords)
    truth["x"][3, 1, 0, 0] = np.nan
    forecast = truth + rng.normal(0, 0.5, shape)
    reference = truth + rng.normal(0, 1.0, shape)
    return forecast, truth, reference


def test_counts_draw_every_init_total_and_whole_blocks():
    rng = np.random.default_rng(0)
    counts = bootstrap.resample_counts(10, 50, 3, rng)
    assert counts.shape == (50, 10)
    np.testing.assert_array_equal(counts.sum(1), 10)
    whole = bootstrap.resample_counts(10, 4, 10, rng)  # one block = the sample itself
    np.testing.assert_array_equal(whole, 1)


def test_per_init_sums_reproduce_the_full_sample_scores():
    forecast, truth, reference = _data()
    w = m.latitude_weights(truth.latitude)
    sums = bootstrap.init_time_sums(
        forecast, truth, {"ref": reference}, space_dims=["latitude", "longitude"], weights=w
    )
    rmse = np.sqrt(sums["se"].sum("init_time") / sums["w"].sum("init_time"))
    want = m.rmse(forecast, truth, reduce_dims=["init_time", "latitude", "longitude"], weights=w)
    xr.testing.assert_allclose(rmse, want)
    skill = 1 - sums["se"].sum("init_time") / sums["se_ref"].sum("init_time")
    dims = ["init_time", "latitude", "longitude"]
    kw = {"reduce_dims": dims, "weights": w}
    xr.testing.assert_allclose(
        skill, m.skill_score(m.mse(forecast, truth, **kw), m.mse(reference, truth, **kw))
    )


def test_intervals_are_seeded_and_bracket_the_estimate():
    forecast, truth, reference = _data()
    kw = {"space_dims": ["latitude", "longitude"], "n_boot": 300, "seed": 3}
    a = bootstrap.bootstrap_scores(forecast, truth, {"ref": reference}, **kw)
    b = bootstrap.bootstrap_scores(forecast, truth, {"ref": reference}, **kw)
    xr.testing.assert_identical(a, b)
    assert a.attrs["block_length"] == 3  # 3 h of leads / 1 h between inits
    assert list(a["metric"].values) == ["rmse", "mae", "skill_ref"]
    ci = bootstrap.confidence_interval(a, 0.9)
    est = m.rmse(forecast, truth, reduce_dims=["init_time", "latitude", "longitude"])["x"]
    lower, upper = (
        ci["x"].sel(metric="rmse", bound="lower"),
        ci["x"].sel(metric="rmse", bound="upper"),
    )
    assert bool(((lower <= est) & (est <= upper)).all())
    assert bool((upper - lower > 0).all())


def test_default_block_length_follows_init_spacing():
    inits = pd.date_range("2023-01-01", periods=5, freq="3h").values
    leads = pd.to_timedelta([1, 2, 3, 4, 5, 6, 7], unit="h").values
    assert bootstrap.default_block_length(inits, leads) == 3
    assert bootstrap.default_block_length(inits[:1], leads) == 1


def test_default_block_length_with_calendar_leads():
    import xarray as xr

    inits = pd.date_range("2000-01-01", periods=6, freq="2MS").values  # an init every 2 months
    leads = xr.DataArray([1, 2, 3, 4, 5], dims="lead_time", attrs={"units": "months"})
    assert bootstrap.default_block_length(inits, leads) == 3
    years = xr.DataArray([1, 2], dims="lead_time", attrs={"units": "years"})
    assert bootstrap.default_block_length(inits, years) == 12
