import numpy as np
import pytest
import xarray as xr

from geoclim.evaluation import metrics as m

GRID = ("init_time", "latitude", "longitude")


def _ds(values, lat=(0.0, 60.0)):
    values = np.asarray(values, dtype=np.float64)
    return xr.Dataset(
        {"x": (("init_time", "lead_time", "latitude", "longitude"), values)},
        coords={"latitude": list(lat), "longitude": np.arange(values.shape[3])},
    )


def _random(shape=(6, 2, 2, 3), seed=0):
    return np.random.default_rng(seed).normal(10, 3, shape)


def test_latitude_weights_closed_form():
    w = m.latitude_weights(xr.DataArray([0.0, 60.0], dims="latitude"))
    np.testing.assert_allclose(w.values, [4 / 3, 2 / 3])  # cos = 1, 1/2; mean 3/4
    lat = xr.DataArray(np.linspace(-80, 80, 17), dims="latitude")
    w = m.latitude_weights(lat)
    assert w.mean().item() == pytest.approx(1.0)
    assert w.sum().item() == pytest.approx(17.0)
    np.testing.assert_allclose(
        w.values, np.cos(np.deg2rad(lat.values)) * 17 / np.cos(np.deg2rad(lat.values)).sum()
    )


@pytest.mark.parametrize("c", [2.5, -1.0])
def test_rmse_of_a_constant_offset_is_its_magnitude(c):
    truth = _ds(_random())
    truth["x"][0, 0, 0, 0] = np.nan  # missing truth changes nothing
    weights = m.latitude_weights(truth.latitude)
    rmse = m.rmse(truth + c, truth, reduce_dims=GRID, weights=weights)
    np.testing.assert_allclose(rmse["x"].values, abs(c))
    np.testing.assert_allclose(m.bias(truth + c, truth, reduce_dims=GRID)["x"].values, c)
    np.testing.assert_allclose(m.mae(truth + c, truth, reduce_dims=GRID)["x"].values, abs(c))


def test_perfect_forecast_rmse_zero_skill_one_and_reference_skill_zero():
    truth = _ds(_random())
    ref = truth + _ds(_random(seed=1))
    mse_ref = m.mse(ref, truth, reduce_dims=GRID)
    perfect = m.mse(truth, truth, reduce_dims=GRID)
    np.testing.assert_array_equal(m.rmse(truth, truth, reduce_dims=GRID)["x"].values, 0.0)
    np.testing.assert_array_equal(m.skill_score(perfect, mse_ref)["x"].values, 1.0)
    np.testing.assert_array_equal(m.skill_score(mse_ref, mse_ref)["x"].values, 0.0)


def test_hand_computed_values_on_a_tiny_array():
    # one lead, one latitude (weights 1), two longitudes, two inits
    f = _ds(np.array([1.0, 2.0, 3.0, 5.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    o = _ds(np.array([0.0, 2.0, 4.0, 2.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    # errors 1, 0, -1, 3
    assert m.mse(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(11 / 4)
    assert m.rmse(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(np.sqrt(11 / 4))
    assert m.mae(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(5 / 4)
    assert m.bias(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(3 / 4)
    r = np.corrcoef([1, 2, 3, 5], [0, 2, 4, 2])[0, 1]
    assert m.correlation(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(r)
    assert m.count(o, reduce_dims=GRID)["x"].item() == 4
    # anomaly correlation against c = 1: f' = 0 1 2 4, o' = -1 1 3 1 (uncentred)
    c = xr.full_like(o, 1.0)
    acc = (0 * -1 + 1 + 6 + 4) / np.sqrt((0 + 1 + 4 + 16) * (1 + 1 + 9 + 1))
    assert m.anomaly_correlation(f, o, c, reduce_dims=GRID)["x"].item() == pytest.approx(acc)


def test_weights_and_missing_values_match_a_manual_weighted_mean():
    f, o = _ds(_random(seed=2)), _ds(_random(seed=3))
    o["x"][1, :, 1, 2] = np.nan
    f["x"][2, 0, 0, 0] = np.nan
    w = m.latitude_weights(o.latitude)
    got = m.rmse(f, o, reduce_dims=GRID, weights=w)["x"].values
    err = (f - o)["x"]
    ww = w.broadcast_like(err).where(err.notnull())
    want = np.sqrt((err**2 * ww).sum(GRID) / ww.sum(GRID)).values
    np.testing.assert_allclose(got, want)
    r = m.correlation(f, o, reduce_dims=GRID, weights=w)["x"].values
    assert np.all(np.abs(r) <= 1)


def test_weights_along_kept_dims_are_ignored_and_mixed_dims_rejected():
    f, o = _ds(_random(seed=4)), _ds(_random(seed=5))
    w = m.latitude_weights(o.latitude)
    per_cell = m.rmse(f, o, reduce_dims=["init_time"], weights=w)
    xr.testing.assert_allclose(per_cell, m.rmse(f, o, reduce_dims=["init_time"]))
    both = w * xr.DataArray([1.0, 2.0, 3.0], dims="longitude")
    with pytest.raises(ValueError, match="mix"):
        m.rmse(f, o, reduce_dims=["init_time", "latitude"], weights=both)


def _quantile_forecast(o, offsets=(-1.0, 0.0, 1.0), levels=(0.1, 0.5, 0.9)):
    fq = xr.concat([o + d for d in offsets], dim="quantile")
    return fq.assign_coords(quantile=list(levels)).transpose(..., "quantile")


def test_pinball_crps_and_coverage_hand_values():
    o = _ds(_random(seed=6))
    fq = _quantile_forecast(o)
    # rho_0.1(1) = 0.1, rho_0.5(0) = 0, rho_0.9(-1) = 0.1 -> mean 0.2 / 3
    pin = m.pinball_loss(fq, o, reduce_dims=[*GRID, "quantile"])
    np.testing.assert_allclose(pin["x"].values, 0.2 / 3)
    crps = m.crps_quantile(fq, o, reduce_dims=GRID)
    np.testing.assert_allclose(crps["x"].values, 2 * 0.2 / 3)
    np.testing.assert_allclose(m.interval_coverage(fq, o, 0.1, 0.9, reduce_dims=GRID)["x"], 1.0)
    shifted = fq + 5  # every observation below the interval
    np.testing.assert_allclose(
        m.interval_coverage(shifted, o, 0.1, 0.9, reduce_dims=GRID)["x"], 0.0
    )
    per_q = m.pinball_loss(fq, o, reduce_dims=GRID)
    assert set(per_q["x"].dims) == {"lead_time", "quantile"}


def test_crps_ignores_missing_observations():
    o = _ds(_random(seed=7))
    fq = _quantile_forecast(o)
    o_missing = o.copy(deep=True)
    o_missing["x"][0] = 1e6  # would dominate if it counted...
    o_missing["x"][0] = np.nan  # ...but it is missing
    np.testing.assert_allclose(
        m.crps_quantile(fq, o_missing, reduce_dims=GRID)["x"].values, 2 * 0.2 / 3
    )


def test_point_forecast_and_central_intervals():
    o = _ds(_random(seed=8))
    fq = _quantile_forecast(o)
    xr.testing.assert_equal(m.point_forecast(fq), o)
    assert m.point_forecast(o) is o
    assert m.central_intervals([0.05, 0.1, 0.5, 0.9, 0.95]) == [(0.05, 0.95), (0.1, 0.9)]
