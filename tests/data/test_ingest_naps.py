from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geoclim.data import schema
from geoclim.data.ingest.naps import open_naps_hourly, utc_offsets
from geoclim.errors import IngestError

TINY = Path(__file__).parent / "fixtures" / "naps" / "NO2_tiny.csv"
HEADER_LINE = 8  # 7 preamble lines


@pytest.fixture(scope="module")
def tiny():
    return open_naps_hourly(TINY)


def at(ds, station, stamp):
    return float(ds.no2.sel(station=station, time=pd.Timestamp(stamp)))


def test_tiny_file_is_a_validated_hourly_utc_dataset(tiny):
    schema.validate(tiny, ["no2"])
    assert list(tiny.station.values) == ["010102", "060410", "105504"]
    assert (np.diff(tiny.time.values) == np.timedelta64(1, "h")).all()
    assert tiny.no2.attrs["units"] == "ppb"
    assert list(tiny.province.values) == ["NL", "ON", "BC"]
    np.testing.assert_array_equal(tiny.utc_offset.values, [-3.5, -5.0, -7.0])
    assert tiny.latitude.values[1] == 43.74792


def test_ontario_h01_is_0500_utc_and_h24_next_day(tiny):
    # H01 on 2023-01-01 covers 00:00-01:00 EST = 05:00-06:00 UTC
    assert at(tiny, "060410", "2023-01-01T05:00") == 300.0
    assert at(tiny, "060410", "2023-01-01T07:00") == 302.0  # H03
    assert at(tiny, "060410", "2023-01-02T04:00") == 323.0  # H24 of day 1
    assert at(tiny, "060410", "2023-01-02T05:00") == 400.0  # H01 of day 2


def test_newfoundland_half_hour_is_floored(tiny):
    # H01 covers 03:30-04:30 UTC and is labelled 03:00, the UTC hour it begins in
    assert tiny.time.values[0] == np.datetime64("2023-01-01T03:00")
    assert at(tiny, "010102", "2023-01-01T03:00") == 100.0
    assert at(tiny, "010102", "2023-01-02T02:00") == 123.0  # H24
    assert at(tiny, "010102", "2023-01-02T03:00") == 200.0
    assert "30 min early" in tiny.attrs["time_convention"]


def test_peace_river_bc_station_is_utc_minus_7(tiny):
    assert at(tiny, "105504", "2023-01-01T07:00") == 500.0


def test_minus_999_becomes_nan(tiny):
    assert np.isnan(at(tiny, "060410", "2023-01-01T06:00"))  # ON H02 was -999
    assert np.isnan(at(tiny, "010102", "2023-01-02T07:00"))  # NL day 2 H05 was -999
    assert int(tiny.no2.notnull().sum()) == 5 * 24 - 2
    assert float(tiny.no2.min()) >= 100.0


@pytest.mark.parametrize(
    ("province", "lat", "lon", "offset"),
    [
        pytest.param("NL", 47.56, -52.71, -3.5, id="st-johns"),
        pytest.param("NL", 52.95, -66.91, -4.0, id="labrador-city"),
        pytest.param("NS", 44.65, -63.57, -4.0, id="halifax"),
        pytest.param("QC", 45.50, -73.57, -5.0, id="montreal"),
        pytest.param("QC", 47.38, -61.86, -4.0, id="magdalen-islands"),
        pytest.param("ON", 48.38, -89.29, -5.0, id="thunder-bay"),
        pytest.param("ON", 49.77, -94.49, -6.0, id="kenora"),
        pytest.param("MB", 49.90, -97.15, -6.0, id="winnipeg"),
        pytest.param("SK", 50.45, -104.62, -6.0, id="regina"),
        pytest.param("AB", 53.55, -113.49, -7.0, id="edmonton"),
        pytest.param("BC", 49.28, -123.12, -8.0, id="vancouver"),
        pytest.param("BC", 52.97, -122.49, -8.0, id="quesnel"),
        pytest.param("BC", 56.15, -120.69, -7.0, id="taylor"),
        pytest.param("BC", 58.81, -122.70, -7.0, id="fort-nelson"),
        pytest.param("BC", 55.34, -123.09, -8.0, id="mackenzie"),
        pytest.param("BC", 49.30, -115.45, -7.0, id="cranbrook"),
        pytest.param("BC", 49.32, -117.66, -8.0, id="castlegar"),
        pytest.param("YU", 60.72, -135.06, -7.0, id="whitehorse"),
        pytest.param("NT", 62.45, -114.36, -7.0, id="yellowknife"),
        pytest.param("NU", 63.75, -68.52, -5.0, id="iqaluit"),
        pytest.param("NU", 62.81, -92.09, -6.0, id="rankin-inlet"),
        pytest.param("NU", 69.12, -105.06, -7.0, id="cambridge-bay"),
    ],
)
def test_utc_offset_rules(province, lat, lon, offset):
    assert utc_offsets(np.array([province]), np.array([lat]), np.array([lon]))[0] == offset


# errors: file name and 1-based line number (preamble and header counted)


def edited(tmp_path: Path, name: str, row: int, old: str, new: str) -> Path:
    """Copy TINY with one replacement in data row ``row`` (0-based) -> line HEADER_LINE+1+row."""
    lines = TINY.read_bytes().decode("utf-8-sig").split("\r\n")
    index = HEADER_LINE + row
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new, 1)
    path = tmp_path / name
    path.write_text("\ufeff" + "\r\n".join(lines), encoding="utf-8")
    return path


def expect_error(path: Path, line: int | None, *fragments: str) -> None:
    with pytest.raises(IngestError) as info:
        open_naps_hourly(path)
    message = str(info.value)
    assert path.name in message, message
    if line is not None:
        assert f"line {line}" in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_error_bad_date(tmp_path):
    path = edited(tmp_path, "date.csv", 3, "2023-01-02", "2023-13-02")
    expect_error(path, HEADER_LINE + 4, "'2023-13-02'", "YYYY-MM-DD")


def test_error_non_numeric_hour(tmp_path):
    path = edited(tmp_path, "hour.csv", 2, ",-999,", ",n/a,")
    expect_error(path, HEADER_LINE + 3, "'n/a'", "a number")


def test_error_missing_column(tmp_path):
    path = edited(tmp_path, "col.csv", -1, ",H24//H24", "")
    expect_error(path, HEADER_LINE, "missing column(s)", "'H24'")


def test_error_unknown_province(tmp_path):
    path = edited(tmp_path, "prov.csv", 4, ",BC,", ",XX,")
    expect_error(path, HEADER_LINE + 5, "unknown province 'XX'")


def test_error_duplicate_station_day(tmp_path):
    path = edited(tmp_path, "dup.csv", 3, "2023-01-02", "2023-01-01")
    expect_error(path, HEADER_LINE + 4, "one row per station and date")


def test_error_latitude_out_of_range(tmp_path):
    path = edited(tmp_path, "lat.csv", 1, "47.56038", "147.56038")
    expect_error(path, HEADER_LINE + 2, "Latitude", "[-90, 90]")


def test_error_empty_file(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("")
    expect_error(path, 1, "empty")


def test_error_no_header(tmp_path):
    path = tmp_path / "nohead.csv"
    path.write_text("Pollutant // Polluant:, NO2\nUnits // Unités, ppb\n1,2,3\n")
    expect_error(path, None, "no header line")


def test_error_wrong_units_in_preamble(tmp_path):
    text = TINY.read_text(encoding="utf-8-sig").replace("Unités, ppb", "Unités, furlongs")
    path = tmp_path / "units.csv"
    path.write_text(text, encoding="utf-8")
    expect_error(path, None, "bad units", "'furlongs'")
