import numpy as np
import pytest

from geoclim.data import samples, schema
from geoclim.errors import ConfigError


@pytest.fixture(scope="module")
def naps():
    return samples.load("naps_no2")


@pytest.fixture(scope="module")
def grid():
    return samples.load("naps_no2_grid")


def test_available_names():
    assert samples.available() == ["london", "naps_no2", "naps_no2_grid"]


def test_unknown_name_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"unknown sample 'pm25'.*'london', 'naps_no2'"):
        samples.load("pm25")


def test_describe_names_source_and_license():
    text = samples.describe("naps_no2")
    assert "Environment and Climate Change Canada" in text
    assert "Open Government Licence - Canada" in text
    assert "MIT" in samples.describe("london")


def test_naps_station_sample(naps):
    schema.validate(naps, ["no2"])
    assert dict(naps.sizes) == {"time": 8765, "station": 196}
    assert naps.no2.attrs["units"] == "ppb"
    for key in ("title", "source", "license", "history", "references", "time_convention"):
        assert naps.attrs[key]
    # St. John's (UTC-3:30) H01..H03 of 2023-01-01 are 7, 4, 1 ppb in the raw file
    first = naps.no2.sel(station="010102").isel(time=slice(0, 3)).values
    np.testing.assert_array_equal(first, [7.0, 4.0, 1.0])
    values = naps.no2.values[np.isfinite(naps.no2.values)]
    assert (values == np.round(values)).all() and values.min() >= 0


def test_naps_grid_sample_has_coverage(grid):
    schema.validate(grid, ["no2", "coverage"])
    assert dict(grid.sizes) == {"time": 8765, "latitude": 10, "longitude": 26}
    assert grid.latitude.values[0] == 42.25 and grid.longitude.values[-1] == -71.25
    coverage = grid.coverage.values
    assert set(np.unique(coverage)) == {0.0, 1.0}
    assert np.isnan(grid.no2.values[:, coverage == 0]).all()
    assert np.isfinite(grid.no2.values[:, coverage == 1]).mean() > 0.9


def test_london_sample():
    ds = samples.load("london")
    schema.validate(ds, ["no2", "nox", "o3", "pm10", "pm25", "so2", "co", "ws", "wd"])
    assert dict(ds.sizes) == {"time": 65533, "station": 1}
    assert ds.station.values[0] == "london_marylebone_road"
    assert str(ds.time.values[0])[:19] == "1998-01-01T00:00:00"
    assert float(ds.no2.values[0, 0]) == 39.0
