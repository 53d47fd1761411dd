import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import schema, sources, variables
from geoclim.errors import SchemaError
from tests.conftest import make_grid, make_stations


def test_valid_grid_and_station_pass(tiny_grid, tiny_stations):
    assert schema.validate(tiny_grid) is tiny_grid
    assert schema.validate(tiny_stations, ["no2"]) is tiny_stations
    assert schema.layout_of(tiny_grid) == "grid"
    assert schema.layout_of(tiny_stations) == "station"


def test_time_step_is_regular_step(tiny_grid):
    assert schema.time_step(tiny_grid).timedelta == np.timedelta64(1, "h")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda ds: ds.isel(time=[0, 2, 1, 3]), "not strictly increasing"),
        (lambda ds: ds.isel(time=[0, 1, 1, 2]), "not strictly increasing"),
        (lambda ds: ds.isel(time=[0, 1, 3, 4]), "irregular step"),
        (lambda ds: ds.isel(time=[0]), "expected at least 2"),
        (lambda ds: ds.assign_coords(time=np.arange(ds.sizes["time"])), "expected datetime64"),
        (lambda ds: ds.rename(latitude="lat"), "expected ('latitude', 'longitude')"),
        (
            lambda ds: ds.isel(latitude=slice(None, None, -1)),
            "'latitude' must be strictly ascending",
        ),
        (lambda ds: ds.assign_coords(latitude=ds.latitude + 100), "within [-90.0, 90.0]"),
        (lambda ds: ds.assign(pm25=ds.pm25.astype("f8")), "dtype float64; expected float32"),
        (
            lambda ds: ds.assign(pm25=ds.pm25.assign_attrs(units="ppb")),
            "units 'ppb'; expected 'ug m-3'",
        ),
        (lambda ds: ds.assign(pm25=ds.pm25.assign_attrs(long_name="")), "no 'long_name'"),
        (
            lambda ds: ds.assign(sst=ds.pm25.copy(data=ds.pm25.values).drop_attrs()),
            "'sst' has no 'units' attribute; declare them with data.variables.sst.units",
        ),
        (lambda ds: ds.assign(elevation=ds.pm25), "variable 'elevation' has dims"),
        (
            lambda ds: ds.assign(pm25_imputed=ds.pm25 > 1).assign(
                pm25_imputed=lambda d: d.pm25_imputed.astype("f4")
            ),
            "expected bool",
        ),
    ],
    ids=[
        "unsorted",
        "duplicate",
        "gap",
        "one-step",
        "numeric-time",
        "no-space",
        "lat-desc",
        "lat-range",
        "float64",
        "units",
        "long-name",
        "unregistered-no-units",
        "static-dims",
        "mask",
    ],
)
def test_each_breach_is_named(tiny_grid, mutate, message):
    with pytest.raises(SchemaError, match=None) as err:
        schema.validate(mutate(tiny_grid), source="f.nc")
    assert message in str(err.value)
    assert str(err.value).startswith("f.nc: ")


def test_missing_required_variable_lists_present(tiny_grid):
    with pytest.raises(SchemaError, match=r"missing variable\(s\) \['o3'\]; dataset has"):
        schema.validate(tiny_grid, ["pm25", "o3"])


def test_station_breaches(tiny_stations):
    dup = tiny_stations.assign_coords(station=["a", "a", "b", "c", "d"])
    with pytest.raises(SchemaError, match="duplicate station ids"):
        schema.validate(dup)
    with pytest.raises(SchemaError, match="expected an xarray.Dataset"):
        schema.validate(tiny_stations.no2)


def test_unit_conversion_closed_forms():
    # 1 ppm = 1000 ppb; at 25 degC Vm = 24.465 L/mol so 1 ppb NO2 = 46.01/24.465 ug m-3
    assert variables.conversion_factor("o3", "ppm") == pytest.approx(1000.0)
    vm = variables.molar_volume(25.0)
    assert vm == pytest.approx(0.0244654, rel=1e-5)
    assert variables.conversion_factor("no2", "ug/m3", reference_temperature_c=25) == pytest.approx(
        vm / 46.01 * 1e3, rel=1e-8
    )
    with pytest.raises(SchemaError, match="needs a stated reference temperature and pressure"):
        variables.conversion_factor("no2", "ug/m3")
    assert variables.conversion_factor("co", "mg/m3", reference_temperature_c=20) == pytest.approx(
        variables.molar_volume(20.0) / 28.01 * 1e3
    )
    np.testing.assert_allclose(
        variables.convert(np.array([0.0, 15.0]), "t2m", "degC"), [273.15, 288.15]
    )
    with pytest.raises(SchemaError, match="'pm25': cannot convert 'ppb' to 'ug m-3'"):
        variables.conversion_factor("pm25", "ppb")
    with pytest.raises(SchemaError, match="unknown units 'bananas'"):
        variables.normalise_units("bananas")


def test_open_renames_converts_and_roundtrips(tmp_path):
    raw = xr.Dataset(
        {"O3": (("time", "lat", "lon"), np.full((3, 2, 2), 0.04), {"units": "ppm"})},
        coords={
            "time": pd.date_range("2023-01-01", periods=3, freq="h"),
            "lat": [50.0, 40.0],
            "lon": [0.0, 1.0],
        },
    )
    raw.to_netcdf(tmp_path / "raw.nc")
    ds = sources.open_dataset(tmp_path / "raw.nc", required=("o3",))
    assert list(ds.latitude.values) == [40.0, 50.0]
    np.testing.assert_allclose(ds.o3.values, 40.0, rtol=1e-6)
    assert ds.o3.dtype == np.float32 and ds.o3.attrs["units"] == "ppb"
    sources.write_netcdf(ds, tmp_path / "out.nc")
    back = sources.open_dataset(tmp_path / "out.nc")
    xr.testing.assert_equal(back.o3.load(), ds.o3.load())
    assert back.o3.attrs == ds.o3.attrs
    assert not list(tmp_path.glob(".*tmp"))


def test_open_missing_file_and_bad_suffix(tmp_path):
    with pytest.raises(SchemaError, match="no such file"):
        sources.open_dataset(tmp_path / "nope.nc")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(SchemaError, match=r"unknown file type '.csv'"):
        sources.open_dataset(tmp_path / "x.csv")
    (tmp_path / "bad.nc").write_text("not netcdf")
    with pytest.raises(SchemaError, match="cannot be read as netcdf4"):
        sources.open_dataset(tmp_path / "bad.nc")


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    good = make_grid(nt=5)
    path = sources.write_netcdf(good, tmp_path / "store.nc")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        sources.write_netcdf(make_grid(nt=7, seed=3), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["store.nc"]


def test_zarr_roundtrip(tmp_path):
    ds = make_stations(nt=6)
    ds.to_zarr(tmp_path / "s.zarr", zarr_format=2, consolidated=False)
    back = sources.open_dataset(tmp_path / "s.zarr")
    xr.testing.assert_allclose(back.no2.load(), ds.no2)
