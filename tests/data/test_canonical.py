"""Variables as the file has them: kept, renamed, converted, dropped -- never silently."""

import logging

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoclim.data import canonical, schema, sources
from geoclim.errors import ConfigError, SchemaError

TIMES = pd.date_range("2021-03-01", periods=4, freq="h")


def station_file(tmp_path, variables, attrs=None, name="f.nc"):
    data = {k: (("time", "site"), np.full((4, 2), value), a) for k, (value, a) in variables.items()}
    raw = xr.Dataset(
        data,
        coords={"time": TIMES, "lat": ("site", [45.0, 46.0]), "lon": ("site", [-73.0, -74.0])},
        attrs=attrs or {},
    )
    raw.to_netcdf(tmp_path / name)
    return tmp_path / name


def test_unregistered_variable_keeps_its_units_and_long_name(tmp_path):
    path = station_file(tmp_path, {"dew": (2.5, {"units": "C", "long_name": "dew point"})})
    ds = sources.open_dataset(path)
    assert ds.dew.dtype == np.float32 and float(ds.dew[0, 0]) == 2.5
    assert ds.dew.attrs["units"] == "degC" and ds.dew.attrs["long_name"] == "dew point"
    assert schema.validate(ds) is ds


def test_registered_variable_is_converted_exactly(tmp_path):
    path = station_file(
        tmp_path, {"T": (15.0, {"units": "Celsius"}), "o3": (0.04, {"units": "ppm"})}
    )
    ds = sources.open_dataset(path, rename={"T": "t2m"})
    assert ds.t2m.attrs["units"] == "K" and ds.o3.attrs["units"] == "ppb"
    np.testing.assert_allclose(ds.t2m.values, np.float32(288.15))
    np.testing.assert_allclose(ds.o3.values, np.float32(40.0))


def test_one_load_table_names_every_decision(tmp_path, caplog):
    path = station_file(
        tmp_path,
        {
            "T": (15.0, {"units": "degC"}),
            "PM2.5": (3.0, {"units": "ug/m3"}),
            "dew": (1.0, {"units": "degC"}),
            "junk": (1.0, {"units": "1"}),
        },
    )
    with caplog.at_level(logging.INFO, logger="geoclim.data.sources"):
        sources.open_dataset(path, rename={"T": "t2m"}, drop=["junk"])
    tables = [r.getMessage() for r in caplog.records if "variable" in r.getMessage()]
    assert len(tables) == 1
    lines = {line.split()[0]: line for line in tables[0].splitlines()[2:]}
    assert "converted" in lines["t2m"] and "'degC' -> 'K' (x 1 + 273.15)" in lines["t2m"]
    assert "<- T" in lines["t2m"]
    assert "renamed" in lines["pm25"] and "<- PM2.5" in lines["pm25"]
    assert "kept" in lines["dew"]
    assert "dropped" in lines["junk"] and "data.source.drop" in lines["junk"]


def test_a_variable_without_units_is_an_error_naming_the_key(tmp_path):
    path = station_file(tmp_path, {"dew": (1.0, {}), "rain": (0.0, {})})
    with pytest.raises(SchemaError) as err:
        sources.open_dataset(path)
    message = str(err.value)
    assert "f.nc" in message
    assert "'dew' has no units: declare them with data.variables.dew.units" in message
    assert "data.variables.rain.units" in message  # every problem at once


def test_registered_variable_without_units_is_not_assumed_canonical(tmp_path):
    path = station_file(tmp_path, {"t2m": (25.99, {})})
    with pytest.raises(SchemaError, match="'t2m' has no units"):
        sources.open_dataset(path)
    ds = sources.open_dataset(path, variables={"t2m": {"units": "degC"}})
    np.testing.assert_allclose(ds.t2m.values, np.float32(25.99 + 273.15))


def test_global_units_are_reported_and_used_only_when_declared(tmp_path):
    path = station_file(tmp_path, {"sst": (20.0, {})}, attrs={"units": "degC"})
    with pytest.raises(SchemaError, match="global attributes say units='degC'.*only when declared"):
        sources.open_dataset(path)
    ds = sources.open_dataset(path, variables={"sst": {"units": "degC", "long_name": "SST"}})
    assert ds.sst.attrs == {"units": "degC", "long_name": "SST"}


def test_declaration_conflicting_with_the_file_is_an_error(tmp_path):
    path = station_file(tmp_path, {"dew": (1.0, {"units": "K"})})
    with pytest.raises(SchemaError, match="units 'K' in the file but data.variables.dew.units"):
        sources.open_dataset(path, variables={"dew": {"units": "degC"}})
    ds = sources.open_dataset(path, variables={"dew": {"units": "kelvin"}})  # same unit
    assert ds.dew.attrs["units"] == "K"


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({"dew": "degC"}, "expected a mapping"),
        ({"dew": {"unit": "degC"}}, r"unknown key\(s\) \['unit'\]"),
        ({"nope": {"units": "K"}}, "data.variables.nope is declared but the file has no"),
        ({"dew": {"units": "bananas"}}, "unknown units 'bananas'"),
    ],
)
def test_bad_declarations_are_named(tmp_path, declared, message):
    path = station_file(tmp_path, {"dew": (1.0, {})})
    with pytest.raises(SchemaError, match=message):
        sources.open_dataset(path, variables=declared)


def test_gas_by_mass_needs_reference_conditions(tmp_path):
    path = station_file(tmp_path, {"no2": (46.01, {"units": "ug m-3"})})
    with pytest.raises(SchemaError, match="'no2': converting 'ug m-3' to 'ppb' needs a stated"):
        sources.open_dataset(path)
    with pytest.raises(ConfigError, match="state both"):
        sources.open_dataset(path, reference_temperature_c=25)
    ds = sources.open_dataset(path, reference_temperature_c=25, reference_pressure_hpa=1013.25)
    # 46.01 ug m-3 of NO2 is 1 umol m-3: R T / p = 24.465 L mol-1 -> 24.465 ppb
    np.testing.assert_allclose(ds.no2.values, 8.31446261815324 * 298.15 / 101325 * 1e3, rtol=1e-6)


def test_unusable_variables_are_dropped_with_a_reason(tmp_path):
    raw = xr.Dataset(
        {
            "sst": (("time", "site"), np.ones((4, 2)), {"units": "K"}),
            "name": (("site",), np.array(["a", "b"])),
            "profile": (("time", "site", "level"), np.ones((4, 2, 3)), {"units": "K"}),
            "wind_class": (("time", "site"), np.ones((4, 2), "i1"), {"flag_values": [0, 1]}),
            "time_bnds": (("time", "nv"), np.zeros((4, 2))),
        },
        coords={"time": TIMES, "lat": ("site", [45.0, 46.0]), "lon": ("site", [-73.0, -74.0])},
    )
    raw.time.attrs["bounds"] = "time_bnds"
    ds, report = canonical.canonicalise(raw, source="x")
    assert list(ds.data_vars) == ["sst"]
    why = {r.name: r.detail for r in report.rows if r.action == "dropped"}
    assert "not numeric" in why["name"]
    assert "extra dim(s) ['level']" in why["profile"]
    assert "flag_values" in why["wind_class"]
    assert why["time_bnds"] == "cell bounds of 'time'"
    assert not report.problems


def test_static_unregistered_field_is_kept(tmp_path):
    raw = xr.Dataset(
        {
            "sst": (("time", "site"), np.ones((4, 2)), {"units": "K"}),
            "depth": (("site",), np.array([5.0, 7.0]), {"units": "m"}),
        },
        coords={"time": TIMES, "lat": ("site", [45.0, 46.0]), "lon": ("site", [-73.0, -74.0])},
    )
    ds, report = canonical.canonicalise(raw)
    assert ds.depth.dims == ("station",) and ds.depth.attrs["units"] == "m"
    assert "static" in next(r.detail for r in report.rows if r.name == "depth")
    assert schema.validate(ds) is ds


def test_resample_is_a_placeholder(tmp_path):
    path = station_file(tmp_path, {"dew": (1.0, {"units": "K"})})
    with pytest.raises(ConfigError, match="resample"):
        sources.open_dataset(path, resample="1h")
