import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoclim.data import schema
from geoclim.data.ingest import epa, epa_merge
from geoclim.data.ingest.epa import read_epa_daily, unit_factor
from geoclim.data.ingest.epa_merge import open_epa_daily
from geoclim.errors import ConfigError, IngestError, SchemaError
from tests.data.airdata import COLUMNS, GOOD, days, write_csv

FIXTURES = Path(__file__).parent / "fixtures" / "epa"
NC, VA = "370630015", "510130020"
NAN = np.nan


@pytest.fixture(scope="module")
def fixture_ds():
    return open_epa_daily(FIXTURES)


def test_folder_becomes_one_validated_station_dataset(fixture_ds):
    ds = fixture_ds
    schema.validate(ds, ["pm25", "o3"])
    assert list(ds.station.values) == [NC, VA]
    assert list(pd.DatetimeIndex(ds.time.values).strftime("%Y-%m-%d")) == [
        "2024-01-01",
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
        "2024-01-05",
    ]
    assert list(ds.site_name.values) == ["Durham Armory", "Aurora Hills"]
    assert list(ds.state.values) == ["North Carolina", "Virginia"]
    np.testing.assert_array_equal(ds.latitude.values, [35.9883, 38.857574])
    np.testing.assert_array_equal(ds.longitude.values, [-78.9073, -77.059459])
    assert ds.pm25.dtype == np.float32 and ds.pm25.attrs["units"] == "ug m-3"
    assert ds.o3.attrs["units"] == "ppb"
    assert ds.o3.attrs["epa_statistic"] == "Daily Max 8-hour Ozone Concentration"
    assert "o3: 'ppm' x 1000 -> 'ppb'" in ds.attrs["unit_conversions"]


def test_ppm_ozone_becomes_exact_ppb(fixture_ds):
    expected = [[31.0, NAN], [45.0, 52.0], [NAN, 38.0], [NAN, NAN], [40.5, NAN]]
    np.testing.assert_array_equal(
        fixture_ds.o3.transpose("time", "station").values, np.array(expected, dtype=np.float32)
    )


def test_pm25_values_follow_duplicate_and_poc_rules(fixture_ds):
    # NC day 1: POC 1 (8.5) beats POC 3 (9.0); day 2: POC 1 duplicates, 100 % complete
    # (6.25) beats 83 % with more obs; day 3: only POC 3 reported (4.75); day 4: identical
    # ranks, first row (11.0). VA day 3: equal completeness, more obs wins (3.75).
    expected = [[8.5, 10.5], [6.25, NAN], [4.75, 3.75], [11.0, 2.0], [NAN, NAN]]
    np.testing.assert_array_equal(
        fixture_ds.pm25.transpose("time", "station").values, np.array(expected, dtype=np.float32)
    )


def test_overlap_across_files_later_modified_wins_whatever_the_order(tmp_path):
    a = write_csv(tmp_path / "a.csv", [{"Daily Max 8-hour Ozone Concentration": "0.040"}])
    b = write_csv(tmp_path / "b.csv", [{"Daily Max 8-hour Ozone Concentration": "0.050"}])
    extra = write_csv(tmp_path / "c.csv", days(1, start=2))
    os.utime(a, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_000))
    os.utime(b, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    assert open_epa_daily([a, b, extra]).o3.values[0, 0] == 40.0
    assert open_epa_daily([b, a, extra]).o3.values[0, 0] == 40.0
    os.utime(a, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    assert open_epa_daily([a, b, extra]).o3.values[0, 0] == 50.0  # same time: later path


def test_site_id_zero_padding_and_empty_values(tmp_path):
    rows = [{"Site ID": "60371103", **d} for d in days(3)]
    rows[1]["Daily Max 8-hour Ozone Concentration"] = ""
    tidy = read_epa_daily(write_csv(tmp_path / "o3.csv", rows))
    assert list(tidy["station"].unique()) == ["060371103"]
    assert list(tidy["line"]) == [2, 4]
    assert tidy["value"].tolist() == pytest.approx([41.0, 41.0])


def test_station_metadata_is_most_frequent(tmp_path):
    rows = days(3)
    rows[2]["Local Site Name"] = "Renamed"
    ds = open_epa_daily(write_csv(tmp_path / "o3.csv", rows))
    assert ds.site_name.values[0] == "Los Angeles-N. Main Street"


def test_legacy_upper_case_header_is_accepted(tmp_path):
    legacy = {
        "Units": "UNITS",
        "Local Site Name": "Site Name",
        "State": "STATE",
        "Daily Obs Count": "DAILY_OBS_COUNT",
        "Percent Complete": "PERCENT_COMPLETE",
        "Site Latitude": "SITE_LATITUDE",
        "Site Longitude": "SITE_LONGITUDE",
    }
    columns = [legacy.get(c, c) for c in COLUMNS]
    rows = [{legacy.get(k, k): v for k, v in {**GOOD, **d}.items()} for d in days(2)]
    ds = open_epa_daily(write_csv(tmp_path / "old.csv", rows, columns))
    assert ds.o3.values[:, 0].tolist() == [41.0, 41.0]


def test_unit_factor_accepts_lc_sc_and_rejects_wrong_kind():
    assert unit_factor("pm25", "ug/m3 LC") == 1.0
    assert unit_factor("pm10", "ug/m3 SC") == 1.0
    assert unit_factor("co", "ppm") == 1.0
    with pytest.raises(SchemaError, match="do not fit 'no2'"):
        unit_factor("no2", "ug/m3 LC")


# one test per error message: file name and line number must both appear


def expect_error(path: Path, line: int, *fragments: str) -> None:
    with pytest.raises(IngestError) as info:
        read_epa_daily(path)
    message = str(info.value)
    assert path.name in message and f"line {line}" in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_error_missing_columns(tmp_path):
    columns = [c for c in COLUMNS if c not in ("Units", "Site Latitude")]
    path = write_csv(tmp_path / "cols.csv", days(2), columns)
    expect_error(path, 1, "missing column(s)", "'Units'", "'Site Latitude'")


def test_error_missing_pollutant_column(tmp_path):
    columns = [c for c in COLUMNS if "Ozone Concentration" not in c]
    expect_error(
        write_csv(tmp_path / "nopoll.csv", days(2), columns), 1, "Daily Mean PM2.5 Concentration"
    )


def test_error_bad_date(tmp_path):
    rows = days(4)
    rows[2]["Date"] = "2024-06-03"
    expect_error(write_csv(tmp_path / "date.csv", rows), 4, "'2024-06-03'", "MM/DD/YYYY")


def test_error_non_numeric_value(tmp_path):
    rows = days(3)
    rows[1]["Daily Max 8-hour Ozone Concentration"] = "0.04x"
    expect_error(write_csv(tmp_path / "num.csv", rows), 3, "'0.04x'", "a number")


def test_error_wrong_units_for_pollutant(tmp_path):
    rows = days(3)
    rows[2]["Units"] = "ug/m3 LC"
    expect_error(write_csv(tmp_path / "units.csv", rows), 4, "bad units", "ug/m3 LC")


def test_error_unknown_units(tmp_path):
    rows = days(2)
    rows[0]["Units"] = "furlongs"
    expect_error(write_csv(tmp_path / "unknown.csv", rows), 2, "'furlongs'")


def test_error_header_only_file(tmp_path):
    expect_error(write_csv(tmp_path / "header.csv", []), 2, "no data rows")


def test_error_zero_byte_file(tmp_path):
    path = tmp_path / "zero.csv"
    path.write_text("")
    expect_error(path, 1, "empty")


def test_error_latitude_out_of_range(tmp_path):
    rows = days(3)
    rows[1]["Site Latitude"] = "134.06659"
    expect_error(write_csv(tmp_path / "lat.csv", rows), 3, "Site Latitude", "[-90, 90]")


def test_error_longitude_out_of_range(tmp_path):
    rows = days(2)
    rows[1]["Site Longitude"] = "-218.2"
    expect_error(write_csv(tmp_path / "lon.csv", rows), 3, "Site Longitude")


def test_error_bad_site_id(tmp_path):
    rows = days(2)
    rows[1]["Site ID"] = "06-037-1103"
    expect_error(write_csv(tmp_path / "site.csv", rows), 3, "AQS site id")


def test_error_line_numbers_count_blank_lines(tmp_path):
    path = write_csv(tmp_path / "blank.csv", days(2))
    text = path.read_text().splitlines()
    text.insert(2, "")
    text.append('"06/0x/2024"' + ',"x"' * (len(COLUMNS) - 1))
    path.write_text("\n".join(text) + "\n")
    expect_error(path, 5, "'06/0x/2024'")


row_strategy = st.tuples(
    st.sampled_from(["A", "B"]),  # station
    st.integers(1, 3),  # poc
    st.integers(0, 2),  # day
    st.sampled_from([np.nan, 50.0, 100.0]),  # percent complete
    st.sampled_from([np.nan, 1.0, 24.0]),  # obs count
    st.integers(0, 1),  # file order
)


@settings(max_examples=60, deadline=None)
@given(st.lists(row_strategy, min_size=1, max_size=25))
def test_select_daily_matches_the_documented_rule(rows):
    tidy = pd.DataFrame(
        rows, columns=["station", "poc", "day", "percent_complete", "obs_count", "order"]
    )
    tidy["time"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(tidy.pop("day"), unit="D")
    tidy["variable"] = "o3"
    tidy["line"] = np.arange(len(tidy)) + 2
    tidy["value"] = np.arange(len(tidy), dtype=float)
    kept = epa_merge.select_daily(tidy).set_index(["station", "time"])["value"]

    def rank(row):  # lowest POC, then most complete, most obs, earliest file, earliest line
        nan_last = [-v if np.isfinite(v) else np.inf for v in (row.percent_complete, row.obs_count)]
        return (row.poc, *nan_last, row.order, row.line)

    for (station, time), group in tidy.groupby(["station", "time"]):
        best = min(group.itertuples(), key=rank)
        assert kept[(station, time)] == best.value
    assert len(kept) == tidy.groupby(["station", "time"]).ngroups


# every bad line is found, not only the first


def test_reject_message_lists_first_20_bad_lines_and_counts_all(tmp_path):
    rows = days(28)
    for i in range(3, 28):  # 25 bad dates on lines 5..29
        rows[i]["Date"] = f"2024-06-{i:02d}"
    with pytest.raises(IngestError) as info:
        read_epa_daily(write_csv(tmp_path / "dates.csv", rows))
    message = str(info.value)
    assert "dates.csv: 25 bad lines of 28 data rows (first 20 shown):" in message
    shown = [line.strip() for line in message.splitlines()[1:]]
    assert shown[0] == "line 5: bad value '2024-06-03' in column 'Date'; expected MM/DD/YYYY"
    assert [s.split(":")[0] for s in shown[:20]] == [f"line {n}" for n in range(5, 25)]
    assert shown[20] == "... and 5 more bad line(s)" and len(shown) == 21


def test_every_problem_of_a_line_is_named(tmp_path):
    rows = days(3)
    rows[1].update({"POC": "1.5", "Site Latitude": "95", "Units": "furlongs"})
    parsed = epa.parse_epa_daily(write_csv(tmp_path / "many.csv", rows))
    assert parsed.problems.count == 1 and len(parsed.tidy) == 2
    message = str(parsed.problems.shown[0])
    assert message.startswith("line 3: bad value '1.5' in column 'POC'; expected an integer; ")
    assert "bad value '95' in column 'Site Latitude'; expected a latitude in [-90, 90]" in message
    assert "bad units 'furlongs'" in message


def test_skip_keeps_the_valid_rows(tmp_path):
    rows = days(5)
    rows[1]["Daily Max 8-hour Ozone Concentration"] = "n/a"
    rows[3]["Site ID"] = "06-037-1103"
    path = write_csv(tmp_path / "skip.csv", rows)
    tidy = read_epa_daily(path, on_bad_rows="skip")
    assert tidy["line"].tolist() == [2, 4, 6]
    with pytest.raises(IngestError, match=r"skip\.csv: 2 bad lines"):
        read_epa_daily(path)
    with pytest.raises(ConfigError, match=r"on_bad_rows='drop'; expected one of \['reject'"):
        read_epa_daily(path, on_bad_rows="drop")


def test_fips_codes_are_text_with_leading_zeros(tmp_path, fixture_ds):
    assert fixture_ds.state_fips.values.tolist() == ["37", "51"]
    assert fixture_ds.county_fips.values.tolist() == ["063", "013"]
    rows = days(3)
    rows[1].update({"State FIPS Code": "6", "County FIPS Code": "37"})  # a spreadsheet's doing
    ds = open_epa_daily(write_csv(tmp_path / "o3.csv", rows))
    assert ds.state_fips.values.tolist() == ["06"] and ds.county_fips.values.tolist() == ["037"]
    assert ds.state_fips.dtype.kind == "U"


def test_fips_codes_come_from_the_site_id_without_fips_columns(tmp_path):
    columns = [c for c in COLUMNS if "FIPS" not in c]
    rows = [{"Site ID": "60371103", **d} for d in days(2)]
    ds = open_epa_daily(write_csv(tmp_path / "o3.csv", rows, columns))
    assert (ds.state_fips.item(), ds.county_fips.item()) == ("06", "037")


def test_error_bad_fips_code(tmp_path):
    rows = days(2)
    rows[1]["County FIPS Code"] = "03a"
    expect_error(write_csv(tmp_path / "fips.csv", rows), 3, "'County FIPS Code'", "3-digit")
