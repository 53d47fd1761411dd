import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats

from geoclim.errors import DataError
from geoclim.evaluation import bootstrap, paired, table

DIMS = ("init_time", "lead_time", "station")
REDUCE = ["init_time", "station"]


def _ds(values, n_lead=1):
    values = np.asarray(values, dtype=np.float64)
    coords = {
        "init_time": pd.date_range("2024-01-01", periods=values.shape[0], freq="D"),
        "lead_time": pd.to_timedelta(np.arange(1, n_lead + 1), unit="D"),
    }
    return xr.Dataset({"x": (DIMS, values)}, coords=coords)


def test_dm_statistic_on_a_hand_computed_series():
    d = np.array([1.0, -1.0, 2.0, 0.0])
    # dbar = 0.5, g0 = 1.25, V = g0 / 4, DM = 0.5 / sqrt(0.3125); HLN factor (4 + 1 - 2) / 4
    hln = 0.5 / np.sqrt(0.3125) * np.sqrt(0.75)
    stat, p = paired.diebold_mariano(d, 1)
    assert stat == pytest.approx(hln)
    assert p == pytest.approx(2 * stats.t.sf(hln, 3))
    # h = 2: g1 = -0.9375 makes V negative, so V = g0 / N; HLN factor (4 + 1 - 4 + 0.5) / 4
    stat2, _ = paired.diebold_mariano(d, 2)
    assert stat2 == pytest.approx(0.5 / np.sqrt(0.3125) * np.sqrt(0.375))
    assert np.isnan(paired.diebold_mariano(np.array([1.0, np.nan, 2.0]), 1)[0])


def test_a_better_forecast_has_a_negative_paired_difference_and_dm():
    rng = np.random.default_rng(0)
    truth = _ds(np.zeros((80, 1, 3)))
    noise = rng.normal(size=(80, 1, 3))
    good, bad = _ds(0.5 * noise), _ds(noise + rng.normal(size=noise.shape))
    inputs = table.Inputs(
        forecast=good, point=good, truth=truth, reduce_dims=REDUCE, references={"bad": bad}
    )
    diff = paired.rmse_difference(good, truth, bad, reduce_dims=REDUCE)["x"].item()
    assert diff < -0.5
    samples = bootstrap.bootstrap_scores(inputs, n_boot=300, seed=0)
    est = table.evaluate(table.lookup("rmse_diff_bad")[0], inputs)["rmse_diff_bad"]
    ci = bootstrap.confidence_interval(
        samples.sel(metric=["rmse_diff_bad"]), est.expand_dims(metric=["rmse_diff_bad"])
    )["x"]
    assert float(ci.sel(bound="upper").max()) < 0 < diff + 10  # interval excludes 0
    assert float(ci.sel(bound="lower").min()) < diff < float(ci.sel(bound="upper").max())
    assert paired.dm_statistic(good, truth, bad, reduce_dims=REDUCE)["x"].item() < -3
    assert paired.dm_pvalue(good, truth, bad, reduce_dims=REDUCE)["x"].item() < 1e-3
    # swapping the roles flips the sign
    assert paired.dm_statistic(bad, truth, good, reduce_dims=REDUCE)["x"].item() > 3
    assert paired.rmse_difference(bad, truth, good, reduce_dims=REDUCE)["x"].item() == -diff
    with pytest.raises(DataError, match="init_time"):
        paired.dm_statistic(good, truth, bad, reduce_dims=["station"])


def test_horizon_steps_per_lead():
    inits = pd.date_range("2024-01-01", periods=5, freq="6h").values
    leads = pd.to_timedelta([6, 12, 18, 24], unit="h").values
    np.testing.assert_array_equal(paired.horizon_steps(inits, leads), [1, 2, 3, 4])
    np.testing.assert_array_equal(paired.horizon_steps(inits[:1], leads), [1, 1, 1, 1])
