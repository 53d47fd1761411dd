import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import grid, schema
from geoclim.errors import GeoclimError, SchemaError

KM_PER_DEG = grid.EARTH_RADIUS_KM * np.pi / 180  # along the equator / a meridian


def stations(values, lats, lons, ids=None, name="pm25"):
    values = np.asarray(values, dtype=np.float32)
    if values.shape[0] == 1:  # a canonical time axis needs two steps
        values = np.repeat(values, 2, axis=0)
    ids = ids or [f"s{i}" for i in range(values.shape[1])]
    ds = xr.Dataset(
        {name: (("time", "station"), values)},
        coords={
            "time": pd.date_range("2020-01-01", periods=values.shape[0], freq="h"),
            "station": ids,
            "latitude": ("station", np.asarray(lats, float)),
            "longitude": ("station", np.asarray(lons, float)),
        },
    )
    return schema.annotate(ds)


def linear_grid(lat, lon, extra_dims=None):
    field = 2.0 * lat[:, None] + 3.0 * lon[None, :] + 1.0
    if extra_dims is None:
        t = pd.date_range("2020-01-01", periods=2, freq="h")
        data = np.stack([field, field + 10]).astype(np.float32)
        ds = xr.Dataset(
            {"pm25": (("time", "latitude", "longitude"), data)},
            coords={"time": t, "latitude": lat, "longitude": lon},
        )
        return schema.annotate(ds)
    shape = tuple(extra_dims.values())
    data = np.broadcast_to(field, shape + field.shape).astype(np.float32)
    return xr.Dataset(
        {"pm25": ((*extra_dims, "latitude", "longitude"), data)},
        coords={"latitude": lat, "longitude": lon},
    )


def test_idw_at_a_station_equals_its_value():
    ds = stations([[4.0, 10.0], [5.0, 20.0]], lats=[0.0, 0.0], lons=[0.0, 0.3])
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0, 0.1]))
    np.testing.assert_array_equal(out.pm25.values[:, 0, 0], [4.0, 5.0])
    assert out.pm25.dtype == np.float32


def test_idw_of_two_equidistant_stations_is_their_mean():
    ds = stations([[4.0, 10.0]], lats=[0.0, 0.0], lons=[-0.2, 0.2])
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]))
    np.testing.assert_allclose(out.pm25.values[0, 0, 0], 7.0, rtol=1e-6)


def test_idw_drops_a_missing_station_and_renormalises():
    values = [[1.0, 2.0, 4.0], [1.0, np.nan, 4.0]]
    lons = [0.1, -0.2, 0.4]
    ds = stations(values, lats=[0.0] * 3, lons=lons)
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]), power=2.0)
    w = 1.0 / (np.abs(lons) * KM_PER_DEG) ** 2  # equator: great-circle distance is linear
    expected_all = (w * [1.0, 2.0, 4.0]).sum() / w.sum()
    expected_two = (w[[0, 2]] * [1.0, 4.0]).sum() / w[[0, 2]].sum()
    np.testing.assert_allclose(out.pm25.values[:, 0, 0], [expected_all, expected_two], rtol=1e-5)


def test_idw_cell_with_no_reporting_station_is_nan():
    ds = stations([[1.0], [np.nan]], lats=[0.0], lons=[0.0])
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.2]))
    assert out.pm25.values[0, 0, 0] == pytest.approx(1.0)
    assert np.isnan(out.pm25.values[1, 0, 0])
    assert out.coverage.values[0, 0] == 1.0


def test_coverage_follows_max_distance_along_the_equator():
    ds = stations([[3.0]], lats=[0.0], lons=[0.0])
    lon = np.array([0.0, 0.5, 1.0, 1.5])  # 0, 55.6, 111.2, 166.8 km from the station
    out = grid.stations_to_grid(ds, np.array([-0.5, 0.0]), lon, max_distance_km=100.0)
    # (lat -0.5, lon 0.5) is ~78.6 km away: covered; (-0.5, 1.0) ~124 km: not
    expected = np.array([[1, 1, 0, 0], [1, 1, 0, 0]], dtype=np.float32)
    np.testing.assert_array_equal(out.coverage.values, expected)
    assert out.coverage.attrs["units"] == "1"
    assert out.coverage.dims == ("latitude", "longitude")
    np.testing.assert_array_equal(np.isnan(out.pm25.values[0]), expected == 0)


def test_idw_k_limits_the_stations_per_cell():
    ds = stations([[1.0, 100.0]], lats=[0.0, 0.0], lons=[0.1, 0.3])
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]), k=1)
    assert out.pm25.values[0, 0, 0] == pytest.approx(1.0)


def test_nearest_binning_averages_stations_in_a_cell():
    ds = stations(
        [[2.0, 6.0, 9.0], [np.nan, 6.0, 9.0]], lats=[0.1, -0.2, 1.1], lons=[0.2, 0.3, 1.0]
    )
    out = grid.stations_to_grid(
        ds, np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0]), method="nearest"
    )
    np.testing.assert_array_equal(out.pm25.values[:, 0, 0], [4.0, 6.0])
    np.testing.assert_array_equal(out.pm25.values[:, 1, 1], [9.0, 9.0])
    np.testing.assert_array_equal(out.coverage.values, [[1, 0, 0], [0, 1, 0]])
    assert np.isnan(out.pm25.values[:, 0, 1]).all()


def test_nearest_binning_wraps_longitude_into_the_grid_convention():
    ds = stations([[5.0]], lats=[0.0], lons=[-170.0])
    out = grid.stations_to_grid(ds, np.array([0.0]), np.arange(0.0, 360.0, 10.0), method="nearest")
    assert out.pm25.sel(longitude=190.0).values[0, 0] == 5.0
    assert out.coverage.sum() == 1


def test_gridding_carries_imputation_masks():
    ds = stations([[1.0, 3.0]], lats=[0.0, 0.0], lons=[0.0, 2.0])
    ds["pm25_imputed"] = (("time", "station"), np.array([[True, False], [False, False]]))
    out = grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0, 2.0]), max_distance_km=50)
    np.testing.assert_array_equal(out.pm25_imputed.values[:, 0], [[True, False], [False, False]])


def test_stations_to_grid_output_is_canonical():
    ds = stations(np.ones((3, 2)), lats=[10.0, 11.0], lons=[20.0, 21.0])
    out = grid.stations_to_grid(ds, *grid.regular_grid(9.0, 12.0, 19.0, 22.0, 1.0))
    schema.validate(out, ["pm25", "coverage"])
    assert out.pm25.dims == ("time", "latitude", "longitude")
    np.testing.assert_array_equal(out.time.values, ds.time.values)


def test_regular_grid_gives_cell_centres():
    lat, lon = grid.regular_grid(0.0, 2.0, 10.0, 11.0, 0.5)
    np.testing.assert_allclose(lat, [0.25, 0.75, 1.25, 1.75])
    np.testing.assert_allclose(lon, [10.25, 10.75])


def test_grid_to_stations_bilinear_is_exact_on_a_linear_field():
    lat, lon = np.arange(0.0, 5.0), np.arange(10.0, 16.0)
    target = stations(np.zeros((2, 3)), lats=[0.5, 2.25, 3.9], lons=[10.5, 12.7, 14.1])
    out = grid.grid_to_stations(linear_grid(lat, lon), target)
    expected = 2.0 * target.latitude.values + 3.0 * target.longitude.values + 1.0
    np.testing.assert_allclose(out.pm25.values, [expected, expected + 10], rtol=1e-6)
    assert out.pm25.dims == ("time", "station")
    assert list(out.station.values) == list(target.station.values)
    np.testing.assert_array_equal(out.longitude.values, target.longitude.values)
    schema.validate(out)


def test_grid_to_stations_nearest_takes_the_containing_cell():
    lat, lon = np.arange(0.0, 5.0), np.arange(10.0, 16.0)
    table = pd.DataFrame(
        {"latitude": [0.4, 2.6], "longitude": [10.6, 15.2]},
        index=pd.Index(["a", "b"], name="station"),
    )
    out = grid.grid_to_stations(linear_grid(lat, lon), table, method="nearest")
    expected = [2.0 * 0 + 3.0 * 11 + 1, 2.0 * 3 + 3.0 * 15 + 1]
    np.testing.assert_array_equal(out.pm25.values[0], expected)
    np.testing.assert_array_equal(out.latitude.values, [0.4, 2.6])


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
def test_grid_to_stations_outside_the_grid_is_nan(method):
    lat, lon = np.arange(0.0, 5.0), np.arange(10.0, 16.0)
    target = stations(np.zeros((1, 3)), lats=[2.0, 30.0, 2.0], lons=[12.0, 12.0, 40.0])
    out = grid.grid_to_stations(linear_grid(lat, lon), target, method=method)
    assert np.isfinite(out.pm25.values[:, 0]).all()
    assert np.isnan(out.pm25.values[:, 1:]).all()


def test_grid_to_stations_works_on_forecast_dims():
    lat, lon = np.arange(0.0, 5.0), np.arange(10.0, 16.0)
    fc = linear_grid(lat, lon, extra_dims={"init_time": 2, "lead_time": 3})
    target = stations(np.zeros((1, 1)), lats=[1.5], lons=[11.5])
    out = grid.grid_to_stations(fc, target)
    assert out.pm25.dims == ("init_time", "lead_time", "station")
    np.testing.assert_allclose(out.pm25.values, 2 * 1.5 + 3 * 11.5 + 1, rtol=1e-6)


def test_error_no_stations():
    ds = stations(np.zeros((2, 0)), lats=[], lons=[])
    with pytest.raises(SchemaError, match="no stations"):
        grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]))


def test_error_grid_not_strictly_increasing():
    ds = stations([[1.0]], lats=[0.0], lons=[0.0])
    with pytest.raises(SchemaError, match="longitude must be strictly increasing"):
        grid.stations_to_grid(ds, np.array([0.0]), np.array([1.0, 0.0]))


def test_error_non_positive_max_distance():
    ds = stations([[1.0]], lats=[0.0], lons=[0.0])
    with pytest.raises(GeoclimError, match="max_distance_km must be > 0"):
        grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]), max_distance_km=0)


def test_error_unknown_gridding_method_lists_valid_ones():
    ds = stations([[1.0]], lats=[0.0], lons=[0.0])
    with pytest.raises(GeoclimError, match=r"'kriging'.*\['idw', 'nearest'\]"):
        grid.stations_to_grid(ds, np.array([0.0]), np.array([0.0]), method="kriging")


def test_error_unknown_colocation_method_lists_valid_ones():
    lat, lon = np.arange(0.0, 3.0), np.arange(0.0, 3.0)
    target = stations([[1.0]], lats=[0.0], lons=[0.0])
    with pytest.raises(GeoclimError, match=r"'cubic'.*\['nearest', 'bilinear'\]"):
        grid.grid_to_stations(linear_grid(lat, lon), target, method="cubic")


def test_time_blocks_do_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(0)
    values = rng.normal(size=(7, 5))
    values[rng.random(values.shape) < 0.3] = np.nan
    ds = stations(values, lats=rng.uniform(0, 1, 5), lons=rng.uniform(0, 1, 5))
    lat, lon = grid.regular_grid(0.0, 1.0, 0.0, 1.0, 0.25)
    whole = grid.stations_to_grid(ds, lat, lon)
    monkeypatch.setattr(grid, "_BLOCK_ELEMENTS", 16)
    xr.testing.assert_identical(grid.stations_to_grid(ds, lat, lon), whole)
