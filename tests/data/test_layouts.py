"""Every layout and naming the loader reads, from small files written by plain xarray."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import schema, sources
from geoclim.errors import SchemaError

TIMES = pd.date_range("2021-03-01", periods=6, freq="h")


def _series(n_station=None, dim="station", lat="lat", lon="lon", ids=True, attrs=None):
    values = np.arange(6 * (n_station or 1), dtype="f8").reshape(6, -1)
    if n_station is None:
        data = {"sst": ("time", values[:, 0], {"units": "degC"})}
        coords = {"time": TIMES, lat: 45.5, lon: -73.5}
    else:
        data = {"sst": (("time", dim), values, {"units": "degC"})}
        coords = {
            "time": TIMES,
            lat: (dim, np.linspace(40, 50, n_station), attrs or {}),
            lon: (dim, np.linspace(-80, -70, n_station)),
        }
        if ids:
            coords[dim] = [f"s{i}" for i in range(n_station)]
    return xr.Dataset(data, coords=coords)


def _open(ds, tmp_path, name="f.nc", **kwargs):
    path = tmp_path / name
    ds.to_zarr(path) if name.endswith(".zarr") else ds.to_netcdf(path)
    return sources.open_dataset(path, **kwargs)


def test_single_series_becomes_a_one_station_network(tmp_path):
    ds = _open(_series().assign_attrs(station_id="MTL-01"), tmp_path)
    assert dict(ds.sizes) == {"time": 6, "station": 1}
    assert list(ds.station.values) == ["MTL-01"]
    assert ds.latitude.dims == ("station",) and float(ds.latitude[0]) == 45.5
    assert ds.sst.dims == ("time", "station")
    np.testing.assert_array_equal(ds.sst.values[:, 0], np.arange(6))
    assert schema.layout_of(ds) == "station"


def test_single_series_without_an_id_is_named_after_the_file(tmp_path):
    ds = _open(_series(), tmp_path, name="montreal.nc")
    assert list(ds.station.values) == ["montreal"]


@pytest.mark.parametrize("dim", ["site", "id", "station_id", "stn"])
def test_any_station_dim_name(tmp_path, dim):
    ds = _open(_series(3, dim=dim), tmp_path)
    assert dict(ds.sizes) == {"time": 6, "station": 3}
    assert list(ds.station.values) == ["s0", "s1", "s2"]
    np.testing.assert_allclose(ds.latitude.values, [40, 45, 50])


@pytest.mark.parametrize(
    ("lat", "lon"), [("lat", "lon"), ("nav_lat", "nav_lon"), ("latitude", "longitude")]
)
def test_coordinate_names_are_found(tmp_path, lat, lon):
    ds = _open(_series(2, dim="site", lat=lat, lon=lon), tmp_path)
    assert {"latitude", "longitude"} <= set(ds.coords)
    assert ds.latitude.dims == ("station",)


def test_coordinates_found_by_cf_attributes_alone(tmp_path):
    raw = xr.Dataset(
        {"sst": (("t", "p"), np.zeros((6, 2)), {"units": "K"})},
        coords={
            "t": ("t", TIMES, {"standard_name": "time"}),
            "north": ("p", [10.0, 20.0], {"units": "degrees_north"}),
            "east": ("p", [1.0, 2.0], {"standard_name": "longitude"}),
        },
    )
    ds = _open(raw, tmp_path)
    assert dict(ds.sizes) == {"time": 6, "station": 2}
    np.testing.assert_allclose(ds.longitude.values, [1.0, 2.0])


def test_station_coordinates_stored_as_data_variables(tmp_path):
    raw = _series(2, dim="stn", ids=False)
    raw = raw.reset_coords(["lat", "lon"])  # many station files keep lat/lon as variables
    ds = _open(raw, tmp_path)
    assert list(ds.data_vars) == ["sst"] and list(ds.station.values) == ["0", "1"]


def test_station_ids_from_a_timeseries_id_variable(tmp_path):
    raw = _series(2, dim="stn", ids=False)
    raw["code"] = ("stn", np.array(["A", "B"]), {"cf_role": "timeseries_id"})
    ds = _open(raw, tmp_path)
    assert list(ds.station.values) == ["A", "B"] and "code" not in ds


def test_grid_on_named_dims_descending_latitude(tmp_path):
    raw = xr.Dataset(
        {"sst": (("time", "y", "x"), np.arange(36.0).reshape(6, 2, 3), {"units": "K"})},
        coords={"time": TIMES, "lat": ("y", [10.0, 5.0]), "lon": ("x", [0.0, 5.0, 10.0])},
    )
    ds = _open(raw, tmp_path)
    assert ds.sst.dims == ("time", "latitude", "longitude")
    assert list(ds.latitude.values) == [5.0, 10.0]
    assert float(ds.sst.isel(time=0, latitude=0, longitude=0)) == 3.0  # was row y=1


def test_zarr_store(tmp_path):
    ds = _open(_series(2, dim="site", ids=False), tmp_path, name="f.zarr")
    assert dict(ds.sizes) == {"time": 6, "station": 2} and list(ds.station.values) == ["0", "1"]


def test_curvilinear_grid_is_refused(tmp_path):
    raw = xr.Dataset(
        {"sst": (("time", "y", "x"), np.zeros((6, 2, 3)), {"units": "K"})},
        coords={
            "time": TIMES,
            "nav_lat": (("y", "x"), np.zeros((2, 3))),
            "nav_lon": (("y", "x"), np.zeros((2, 3))),
        },
    )
    with pytest.raises(SchemaError, match="f.nc: .*are 2-D: a curvilinear grid.*regrid"):
        _open(raw, tmp_path)


def test_missing_coordinates_are_named(tmp_path):
    raw = xr.Dataset({"sst": ("time", np.zeros(6), {"units": "K"})}, coords={"time": TIMES})
    with pytest.raises(SchemaError, match="no latitude coordinate found.*data.source.rename"):
        _open(raw, tmp_path)
    raw = xr.Dataset({"sst": ("n", np.zeros(6), {"units": "K"})}, coords={"lat": 1.0, "lon": 2.0})
    with pytest.raises(SchemaError, match="no time coordinate found"):
        _open(raw, tmp_path, name="g.nc")


def test_rename_maps_unusual_names(tmp_path):
    raw = xr.Dataset(
        {"sst": (("when", "p"), np.zeros((6, 2)), {"units": "K"})},
        coords={"when": TIMES, "phi": ("p", [1.0, 2.0]), "lam": ("p", [3.0, 4.0])},
    )
    ds = _open(raw, tmp_path, rename={"phi": "latitude", "lam": "longitude"})
    np.testing.assert_allclose(ds.latitude.values, [1.0, 2.0])
    with pytest.raises(SchemaError, match=r"data.source.rename: \['nope'\] not in the file"):
        sources.open_dataset(tmp_path / "f.nc", rename={"nope": "x"})
