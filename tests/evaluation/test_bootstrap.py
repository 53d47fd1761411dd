import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.evaluation import bootstrap, table
from geoclim.evaluation import metrics as m

SPACE = ["latitude", "longitude"]


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


def _inputs(forecast, truth, reference):
    return table.Inputs(
        forecast=forecast,
        point=forecast,
        truth=truth,
        reduce_dims=["init_time", *SPACE],
        weights=m.cell_area_weights(truth.latitude),
        references={"ref": reference},
    )


def _ar1(n, phi, seed):
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.normal()
    return x


def test_stationary_counts_draw_every_init_total_in_blocks():
    rng = np.random.default_rng(0)
    counts = bootstrap.stationary_counts(50, 200, 5.0, rng)
    assert counts.shape == (200, 50)
    np.testing.assert_array_equal(counts.sum(1), 50)
    iid = bootstrap.stationary_counts(50, 2000, 1.0, rng)
    assert iid.mean() == pytest.approx(1.0) and iid.var() == pytest.approx(1 - 1 / 50, abs=0.05)

    # blocks draw neighbours together: counts of adjacent inits are correlated
    def neighbour_corr(c):
        return np.corrcoef(c[:, :-1].ravel(), c[:, 1:].ravel())[0, 1]

    assert neighbour_corr(counts) > 0.5 and abs(neighbour_corr(iid)) < 0.1


def test_block_length_follows_the_autocorrelation():
    assert bootstrap.block_length(np.random.default_rng(0).normal(size=300)) < 3
    assert bootstrap.block_length(_ar1(300, 0.8, 1)) > 8
    assert bootstrap.block_length(np.ones(50)) == 1.0
    s2, g = bootstrap.flat_top_moments(_ar1(2000, 0.5, 2))
    # AR(1) 0.5, unit innovations: long-run variance 1 / (1 - 0.5)^2 = 4
    assert s2 == pytest.approx(4.0, rel=0.25) and g > 0


def test_replicates_with_all_counts_one_are_the_estimate():
    forecast, truth, reference = _data()
    inputs = _inputs(forecast, truth, reference)
    ones = xr.DataArray(np.ones((1, 40)), dims=("sample", "init_time"))
    for row in table.ci_rows():
        for name, rep in table.evaluate(row, inputs, ones).items():
            xr.testing.assert_allclose(rep.isel(sample=0), table.evaluate(row, inputs)[name])


def test_intervals_are_seeded_and_bracket_the_estimate():
    forecast, truth, reference = _data()
    inputs = _inputs(forecast, truth, reference)
    a = bootstrap.bootstrap_scores(inputs, n_boot=300, seed=3)
    b = bootstrap.bootstrap_scores(inputs, n_boot=300, seed=3)
    xr.testing.assert_identical(a, b)
    assert list(a["metric"].values) == ["rmse", "mae", "skill_ref", "rmse_diff_ref"]
    assert a.attrs["block_length"] >= 1 and a.attrs["widening"] > 1
    est = m.rmse(forecast, truth, reduce_dims=["init_time", *SPACE], weights=inputs.weights)
    ci = bootstrap.confidence_interval(a.sel(metric=["rmse"]), est.expand_dims(metric=["rmse"]))
    lower, upper = ci["x"].sel(bound="lower"), ci["x"].sel(bound="upper")
    assert bool(((lower <= est["x"]) & (est["x"] <= upper)).all())
    narrow = bootstrap.confidence_interval(
        a.sel(metric=["rmse"]), est.expand_dims(metric=["rmse"]), widen=1.0
    )["x"]
    assert bool((upper - lower > narrow.sel(bound="upper") - narrow.sel(bound="lower")).all())


@pytest.mark.slow
def test_coverage_of_a_small_simulation():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "check_bootstrap.py"
    spec = importlib.util.spec_from_file_location("check_bootstrap", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = np.random.default_rng(0)
    hits = [mod.one_run(rng, 60, 4, 0.8, 300, k)["hit"]["rmse"] for k in range(60)]
    assert np.mean(hits) >= 0.8  # 0.91 at 400 simulations of 100 inits (experiments/)


def test_widened_intervals_stay_within_each_scores_range():
    import xarray as xr

    metric = ["rmse", "skill_persistence", "rmse_diff_persistence"]
    samples = xr.Dataset(
        {"no2": (("sample", "metric"), np.array([[0.1, 0.9, -0.5], [0.3, 0.99, 0.5]]))},
        coords={"metric": metric},
    )
    estimate = xr.Dataset(
        {"no2": ("metric", np.array([0.2, 0.95, 0.0]))}, coords={"metric": metric}
    )
    ci = bootstrap.confidence_interval(samples, estimate, widen=10.0).no2
    assert float(ci.sel(metric="rmse", bound="lower")) == 0.0  # RMSE >= 0
    assert float(ci.sel(metric="skill_persistence", bound="upper")) == 1.0  # skill <= 1
    assert float(ci.sel(metric="skill_persistence", bound="lower")) < 0.5  # not clipped at 0
    assert float(ci.sel(metric="rmse_diff_persistence", bound="lower")) < -4  # unbounded
