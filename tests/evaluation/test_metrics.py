import numpy as np
import pytest
import xarray as xr

from geoclim.errors import DataError
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


def test_area_weights_equal_cos_latitude_on_a_regular_grid():
    w = m.cell_area_weights(xr.DataArray([0.0, 60.0], dims="latitude"))
    np.testing.assert_allclose(w.values, [4 / 3, 2 / 3])  # cos = 1, 1/2; mean 3/4
    lat = xr.DataArray(np.linspace(-80, 80, 17), dims="latitude")
    w = m.cell_area_weights(lat)
    assert w.mean().item() == pytest.approx(1.0)
    cos = np.cos(np.deg2rad(lat.values))
    np.testing.assert_allclose(w.values, cos / cos.mean(), rtol=1e-12)


def test_area_weights_of_an_uneven_grid_come_from_cell_edges():
    # centres 0, 10, 40: edges -5 | 5 | 25 | 55 (midway, and half a spacing beyond)
    w = m.cell_area_weights(xr.DataArray([0.0, 10.0, 40.0], dims="latitude"))
    s = np.sin(np.deg2rad([-5.0, 5.0, 25.0, 55.0]))
    area = np.diff(s)
    np.testing.assert_allclose(w.values, area / area.mean(), rtol=1e-12)
    cos = np.cos(np.deg2rad([0.0, 10.0, 40.0]))
    assert np.max(np.abs(w.values - cos / cos.mean())) > 0.3  # cos-lat is far off here


def test_area_weights_use_lat_bnds_when_the_data_has_them():
    lat = [0.0, 10.0, 40.0]
    bnds = np.array([[-10.0, 5.0], [5.0, 20.0], [20.0, 90.0]])
    ds = xr.Dataset({"lat_bnds": (("latitude", "nv"), bnds)}, coords={"latitude": lat})
    area = np.diff(np.sin(np.deg2rad([-10.0, 5.0, 20.0, 90.0])))
    np.testing.assert_allclose(m.spatial_weights(ds).values, area / area.mean(), rtol=1e-12)
    with pytest.raises(DataError, match=r"expected \(3, 2\)"):
        m.cell_area_weights(ds.latitude, xr.DataArray(np.zeros((3, 3))))
    with pytest.raises(DataError, match="no area"):
        m.cell_area_weights(ds.latitude, xr.DataArray(np.array([[0, 0], [0, 1], [1, 2]])))
    assert m.spatial_weights(xr.Dataset(coords={"station": ["a"]})) is None


@pytest.mark.parametrize("c", [2.5, -1.0])
def test_rmse_of_a_constant_offset_is_its_magnitude(c):
    truth = _ds(_random())
    truth["x"][0, 0, 0, 0] = np.nan  # missing truth changes nothing
    weights = m.cell_area_weights(truth.latitude)
    for pooled in (False, True):
        kw = {"reduce_dims": GRID, "weights": weights, "pooled": pooled}
        np.testing.assert_allclose(m.rmse(truth + c, truth, **kw)["x"].values, abs(c))
        np.testing.assert_allclose(m.bias(truth + c, truth, **kw)["x"].values, c)
        np.testing.assert_allclose(m.mae(truth + c, truth, **kw)["x"].values, abs(c))


def test_wb2_rmse_is_the_time_mean_of_spatial_mse_with_missing_values():
    # one lead, one latitude, two cells; errors init 0: [1, missing], init 1: [-1, 3]
    f = _ds(np.array([1.0, 5.0, 3.0, 5.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    o = _ds(np.array([0.0, np.nan, 4.0, 2.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    # WB2: MSE_0 = 1, MSE_1 = (1 + 9) / 2 = 5, MSE = 3; pooled: (1 + 1 + 9) / 3
    assert m.mse(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(3.0)
    assert m.rmse(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(np.sqrt(3.0))
    assert m.rmse(f, o, reduce_dims=GRID, pooled=True)["x"].item() == pytest.approx(np.sqrt(11 / 3))
    # MAE: (1 + 2) / 2; bias: (1 + 1) / 2 (init means 1 and 1)
    assert m.mae(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(1.5)
    assert m.bias(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(1.0)
    assert m.count(f, o, reduce_dims=GRID)["x"].item() == 3


def test_init_counts_turn_the_time_mean_into_a_weighted_one():
    f = _ds(np.array([1.0, 5.0, 3.0, 5.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    o = _ds(np.array([0.0, np.nan, 4.0, 2.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    counts = xr.DataArray([[1.0, 1.0], [2.0, 0.0], [1.0, 3.0]], dims=("sample", "init_time"))
    got = m.mse(f, o, reduce_dims=GRID, init_counts=counts)["x"].squeeze().values
    np.testing.assert_allclose(got, [3.0, 1.0, (1 + 15) / 4])
    n = m.count(f, o, reduce_dims=GRID, init_counts=counts)["x"].squeeze().values
    np.testing.assert_allclose(n, [3.0, 2.0, 7.0])


def test_acc_is_the_mean_over_inits_of_the_spatial_acc():
    # climatology 0, so anomalies are the values; one lead, one latitude, two cells
    f = _ds(np.array([0.0, 1.0, 2.0, 4.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    o = _ds(np.array([-1.0, 1.0, 3.0, -1.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    c = xr.zeros_like(o)
    acc_0 = 1 / np.sqrt(1 * 2)  # (0 * -1 + 1 * 1) / sqrt((0 + 1) (1 + 1))
    acc_1 = (6 - 4) / np.sqrt(20 * 10)
    got = m.anomaly_correlation(f, o, c, reduce_dims=GRID)["x"].item()
    assert got == pytest.approx((acc_0 + acc_1) / 2)
    pooled = m.anomaly_correlation(f, o, c, reduce_dims=GRID, pooled=True)["x"].item()
    assert pooled == pytest.approx(3 / np.sqrt(21 * 12))
    # by location (only init_time reduced) correlates over init times
    per_cell = m.anomaly_correlation(f, o, c, reduce_dims=["init_time"])["x"]
    assert per_cell.sel(longitude=0).item() == pytest.approx((0 + 6) / np.sqrt(4 * 10))


def test_hand_computed_correlation_and_skill():
    f = _ds(np.array([1.0, 2.0, 3.0, 5.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    o = _ds(np.array([0.0, 2.0, 4.0, 2.0]).reshape(2, 1, 1, 2), lat=(0.0,))
    r = np.corrcoef([1, 2, 3, 5], [0, 2, 4, 2])[0, 1]
    assert m.correlation(f, o, reduce_dims=GRID)["x"].item() == pytest.approx(r)
    ref = o + 2.0
    # MSE = (1 / 2 + 10 / 2) / 2 = 11 / 4; MSE_ref = 4
    assert m.mse_skill(f, o, ref, reduce_dims=GRID)["x"].item() == pytest.approx(1 - 11 / 16)
    assert m.reference_rmse(f, o, ref, reduce_dims=GRID)["x"].item() == pytest.approx(2.0)


def test_weights_and_missing_values_match_a_manual_two_stage_mean():
    f, o = _ds(_random(seed=2)), _ds(_random(seed=3))
    o["x"][1, :, 1, 2] = np.nan
    f["x"][2, 0, 0, 0] = np.nan
    w = m.cell_area_weights(o.latitude)
    got = m.rmse(f, o, reduce_dims=GRID, weights=w)["x"].values
    err = (f - o)["x"]
    ww = w.broadcast_like(err).where(err.notnull())
    space = ["latitude", "longitude"]
    per_init = (err**2 * ww).sum(space) / ww.sum(space)
    np.testing.assert_allclose(got, np.sqrt(per_init.mean("init_time")).values)


def test_weights_along_kept_dims_are_ignored_and_mixed_dims_rejected():
    f, o = _ds(_random(seed=4)), _ds(_random(seed=5))
    w = m.cell_area_weights(o.latitude)
    per_cell = m.rmse(f, o, reduce_dims=["init_time"], weights=w)
    xr.testing.assert_allclose(per_cell, m.rmse(f, o, reduce_dims=["init_time"]))
    both = w * xr.DataArray([1.0, 2.0, 3.0], dims="longitude")
    with pytest.raises(DataError, match="mix"):
        m.rmse(f, o, reduce_dims=["init_time", "latitude"], weights=both)
    with pytest.raises(DataError, match="name none"):
        m.rmse(f, o, reduce_dims=["station"])
    with pytest.raises(DataError, match="none in common"):
        m.rmse(f.rename(x="y"), o, reduce_dims=GRID)


def test_point_forecast_of_quantiles_is_the_median_or_interpolated():
    o = _ds(_random(seed=8))
    fq = xr.concat([o - 1, o, o + 3], dim="quantile").assign_coords(quantile=[0.1, 0.5, 0.9])
    xr.testing.assert_allclose(m.point_forecast(fq), o)
    two = fq.isel(quantile=[0, 2])  # (0.1, 0.9): mid-point
    xr.testing.assert_allclose(m.point_forecast(two), o + 1)
    assert m.point_forecast(o) is o


def test_shared_terms_compute_each_distinct_call_once_with_the_same_values(monkeypatch):
    f, o = _ds(_random(seed=1)), _ds(_random(seed=2))
    other = _ds(_random(seed=3))
    calls = []
    real = m.weighted_mean
    monkeypatch.setattr(m, "weighted_mean", lambda *a, **k: calls.append(1) or real(*a, **k))
    alone = m.rmse(f, o, reduce_dims=list(GRID))
    assert len(calls) == 1
    with m.shared_terms():
        first = m.rmse(f, o, reduce_dims=list(GRID))  # a new list: equal dims are one call
        again = m.mse(f, o, reduce_dims=list(GRID)) ** 0.5
        with m.shared_terms():  # nested: the outer block's results
            m.mse(f, o, reduce_dims=list(GRID))
        assert len(calls) == 2
        m.mse(other, o, reduce_dims=list(GRID))  # another forecast object: computed
        m.mse(f, o, reduce_dims=["init_time"])  # other dims: computed
        assert len(calls) == 4
    m.mse(f, o, reduce_dims=list(GRID))  # outside the block nothing is kept
    assert len(calls) == 5
    xr.testing.assert_identical(first, alone)
    xr.testing.assert_identical(again, alone)
