"""US EPA AirData daily CSV files -> tidy tables -> one canonical station Dataset.

Format: the "Download Daily Data" CSV of https://www.epa.gov/outdoor-air-quality-data, one
pollutant per file, one row per (site, POC, day). Columns used (others are ignored)::

    Date (MM/DD/YYYY) | Site ID (9-digit AQS id) | POC | <pollutant column> | Units |
    Daily Obs Count | Percent Complete | Local Site Name | State |
    Site Latitude | Site Longitude | State FIPS Code | County FIPS Code (both optional)

where the pollutant column is one of :data:`POLLUTANT_COLUMNS`. The older upper-case header
spelling (``UNITS``, ``Site Name``, ``SITE_LATITUDE``, ``STATE_CODE``, ...) is accepted too.

Conventions:

* **Time** labels the local calendar day of the daily summary (AQS days are local standard
  time); no UTC shift is applied. The axis is regular and daily; missing days are NaN.
* **Statistic**: each variable keeps AirData's daily statistic (PM: 24-h mean; O3 and CO:
  daily maximum 8-hour mean; NO2 and SO2: daily maximum 1-hour value); the variable's
  ``epa_statistic`` attribute names it.
* **Units** are converted to the registry's canonical units with
  :func:`geoclim.data.variables.convert` (O3 ppm -> ppb is x1000). ``ug/m3 LC`` (local
  conditions) and ``ug/m3 SC`` (standard conditions) are both taken as ug m-3 as reported;
  gases must come as mixing ratios and particles as mass concentrations, anything else is
  an error. The dataset's ``unit_conversions`` attribute lists what was applied.
* **Bad rows**: every row is checked (date, site id, POC, numbers, units, coordinates, FIPS
  codes) and every bad line is reported, not only the first. ``on_bad_rows="reject"`` (the
  default) refuses a file with any bad line; ``"skip"`` keeps its valid rows.
* **Empty values**: a row with an empty concentration is dropped; an empty ``Daily Obs
  Count`` / ``Percent Complete`` counts as lowest in the duplicate rule below.
* **Merging** files -- the file, duplicate and POC rules -- is
  :mod:`geoclim.data.ingest.epa_merge`.
* **Station metadata** (``latitude``, ``longitude``, ``site_name``, ``state``,
  ``state_fips``, ``county_fips``): the most frequent combination over the site's kept rows
  (ties: first read). FIPS codes are text with their leading zeros (``"06"``, ``"037"``);
  without FIPS columns they are the first 2 and next 3 digits of the AQS site id.

Malformed files raise :class:`geoclim.errors.IngestError` naming the file, the 1-based line
(header = line 1) and what was expected.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from geoclim.data import variables
from geoclim.data.ingest._common import (
    clean_header,
    ingest_error,
    to_numbers,
)
from geoclim.data.ingest.problems import FileProblems, RowChecks
from geoclim.errors import ConfigError, IngestError, SchemaError
from geoclim.types import LATITUDE, LONGITUDE

log = logging.getLogger(__name__)

POLLUTANT_COLUMNS: dict[str, str] = {
    "Daily Mean PM2.5 Concentration": "pm25",
    "Daily Mean PM10 Concentration": "pm10",
    "Daily Max 8-hour Ozone Concentration": "o3",
    "Daily Max 1-hour NO2 Concentration": "no2",
    "Daily Max 1-hour SO2 Concentration": "so2",
    "Daily Max 8-hour CO Concentration": "co",
}
"""AirData pollutant column -> canonical variable name."""

REQUIRED_COLUMNS: tuple[str, ...] = (
    "Date",
    "Site ID",
    "POC",
    "Units",
    "Daily Obs Count",
    "Percent Complete",
    "Local Site Name",
    "State",
    "Site Latitude",
    "Site Longitude",
)

FIPS_COLUMNS: dict[str, tuple[str, int]] = {
    "state_fips": ("State FIPS Code", 2),
    "county_fips": ("County FIPS Code", 3),
}
"""Station coordinate -> (optional AirData column, digits). Absent: taken from the site id."""

_LEGACY_COLUMNS = {
    "UNITS": "Units",
    "Site Name": "Local Site Name",
    "DAILY_OBS_COUNT": "Daily Obs Count",
    "PERCENT_COMPLETE": "Percent Complete",
    "STATE": "State",
    "STATE_CODE": "State FIPS Code",
    "COUNTY_CODE": "County FIPS Code",
    "SITE_LATITUDE": "Site Latitude",
    "SITE_LONGITUDE": "Site Longitude",
}

STATION_COLUMNS: tuple[str, ...] = (
    LATITUDE,
    LONGITUDE,
    "site_name",
    "state",
    "state_fips",
    "county_fips",
)
"""Per-station metadata kept as ``station`` coordinates."""

TIDY_COLUMNS: tuple[str, ...] = (
    "station",
    "poc",
    "time",
    "variable",
    "value",
    "obs_count",
    "percent_complete",
    *STATION_COLUMNS,
    "units",
    "line",
)
"""Columns of the tidy table :func:`read_epa_daily` returns (one row per kept file row)."""

ON_BAD_ROWS: tuple[str, ...] = ("reject", "skip")
"""What to do with a file that has bad rows: refuse it whole, or keep its valid rows."""

SOURCE = "US EPA AirData daily summaries (Air Quality System / AirNow)"


def epa_units(units: str) -> str:
    """Canonical spelling of an AirData unit string (``ug/m3 LC`` -> ``ug m-3``)."""
    return variables.normalise_units(units)


def unit_factor(variable: str, units: str) -> float:
    """Factor from AirData ``units`` to ``variable``'s canonical units.

    Raises:
        SchemaError: if the units are unknown or of the wrong kind for the variable (a gas
            in mass units, a particle in a mixing ratio).

    """
    canonical = epa_units(units)
    target = variables.get(variable).units
    family = variables.MASS_UNITS if target in variables.MASS_UNITS else variables.MIXING_UNITS
    if canonical not in family:
        raise SchemaError(
            f"units {units!r} do not fit {variable!r}; expected one of {sorted(family)}"
        )
    return variables.conversion_factor(variable, units)


def check_on_bad_rows(on_bad_rows: str) -> str:
    """Return ``on_bad_rows`` if it is one of :data:`ON_BAD_ROWS`, else raise ConfigError."""
    if on_bad_rows not in ON_BAD_ROWS:
        raise ConfigError(f"on_bad_rows={on_bad_rows!r}; expected one of {list(ON_BAD_ROWS)}")
    return on_bad_rows


def _read_text(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Read all cells as strings; return the frame (blank lines dropped) and its line numbers."""
    try:
        frame = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            skip_blank_lines=False,
            encoding="utf-8-sig",
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError:
        raise ingest_error(path, 1, "file is empty; expected a header line") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise ingest_error(path, None, f"cannot be parsed as CSV: {err}") from None
    frame.columns = [_LEGACY_COLUMNS.get(c, c) for c in clean_header(frame.columns)]
    lines = np.arange(len(frame)) + 2  # header is line 1
    blank = (frame.apply(lambda col: col.str.strip()) == "").all(axis=1).to_numpy()
    return frame.loc[~blank].reset_index(drop=True), lines[~blank]


def _pollutant_column(path: Path, columns: list[str]) -> str:
    found = [c for c in POLLUTANT_COLUMNS if c in columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if not found:
        missing.append(f"one of {list(POLLUTANT_COLUMNS)}")
    if missing:
        raise ingest_error(path, 1, f"missing column(s) {missing}; the header has {columns}")
    if len(found) > 1:
        raise ingest_error(path, 1, f"several pollutant columns {found}; expected one per file")
    return found[0]


def _site_ids(text: pd.Series, checks: RowChecks) -> np.ndarray:
    ids = text.str.strip()
    # spreadsheets drop the leading zero of state codes 01-09: pad back to 9 digits
    ok = ids.str.fullmatch(r"\d{1,9}").to_numpy(dtype=bool, na_value=False)
    checks.flag(~ok, ids.to_numpy(), "Site ID", "a 9-digit AQS site id")
    return ids.str.zfill(9).to_numpy(dtype=str)


def _fips(frame: pd.DataFrame, station: np.ndarray, checks: RowChecks) -> dict[str, np.ndarray]:
    """State and county FIPS codes as zero-padded text, from their columns or the site id."""
    out, start = {}, 0
    for name, (column, width) in FIPS_COLUMNS.items():
        if column in frame:
            codes = frame[column].str.strip()
            ok = codes.str.fullmatch(rf"\d{{1,{width}}}").to_numpy(dtype=bool, na_value=False)
            checks.flag(~ok, codes.to_numpy(), column, f"a {width}-digit FIPS code")
            out[name] = codes.str.zfill(width).to_numpy(dtype=str)
        else:  # an AQS site id is SS CCC NNNN: state FIPS, county FIPS, site number
            out[name] = pd.Series(station).str.slice(start, start + width).to_numpy(dtype=str)
        start += width
    return out


def _number(
    frame: pd.DataFrame, column: str, checks: RowChecks, *, allow_empty: bool = True
) -> np.ndarray:
    numbers, bad = to_numbers(frame[column], allow_empty=allow_empty)
    checks.flag(bad, frame[column].str.strip().to_numpy(), column, "a number")
    return numbers


def _check_coordinates(
    lat: np.ndarray, lon: np.ndarray, text: dict[str, np.ndarray], checks: RowChecks
) -> None:
    for column, values, limit in (("Site Latitude", lat, 90), ("Site Longitude", lon, 180)):
        expected = f"a {column.split()[1].lower()} in [-{limit}, {limit}]"
        checks.flag(np.abs(values) > limit, text[column], column, expected)


def _factors(variable: str, units: pd.Series, column: str, checks: RowChecks) -> np.ndarray:
    units = units.str.strip()
    factors = np.full(len(units), np.nan, dtype=np.float64)
    for spelling in units.unique():  # a handful of distinct strings, not rows
        rows = (units == spelling).to_numpy()
        try:
            factors[rows] = unit_factor(variable, spelling)
        except SchemaError as err:
            checks.flag_rows(rows, f"bad units {spelling!r} for column {column!r}: {err}")
    return factors


@dataclass(frozen=True)
class ParsedFile:
    """One AirData file, every row checked.

    Attributes:
        tidy: the valid rows with a value (columns :data:`TIDY_COLUMNS`).
        problems: the file's bad lines, or ``None`` if it has none.

    """

    tidy: pd.DataFrame
    problems: FileProblems | None


def parse_epa_daily(path: str | os.PathLike) -> ParsedFile:
    """Parse one AirData daily CSV file, checking every row.

    Args:
        path: the CSV file.

    Returns:
        The valid rows in canonical units and the bad lines (all of them counted, the first
        :data:`~geoclim.data.ingest.problems.MAX_SHOWN` quoted).

    Raises:
        IngestError: if the file cannot be read at all (empty, not CSV, missing columns, no
            data rows).

    """
    path = Path(path)
    frame, lines = _read_text(path)
    column = _pollutant_column(path, list(frame.columns))
    variable = POLLUTANT_COLUMNS[column]
    if frame.empty:
        raise ingest_error(path, 2, "no data rows; expected at least one row after the header")

    checks = RowChecks(lines)
    dates = frame["Date"].str.strip()
    time = pd.to_datetime(dates, format="%m/%d/%Y", errors="coerce")
    checks.flag(time.isna().to_numpy(), dates.to_numpy(), "Date", "MM/DD/YYYY")
    station = _site_ids(frame["Site ID"], checks)
    poc = _number(frame, "POC", checks, allow_empty=False)
    text = {c: frame[c].str.strip().to_numpy() for c in ("POC", "Site Latitude", "Site Longitude")}
    checks.flag(np.isfinite(poc) & (poc != np.round(poc)), text["POC"], "POC", "an integer")
    value = _number(frame, column, checks)
    obs = _number(frame, "Daily Obs Count", checks)
    pct = _number(frame, "Percent Complete", checks)
    lat = _number(frame, "Site Latitude", checks, allow_empty=False)
    lon = _number(frame, "Site Longitude", checks, allow_empty=False)
    _check_coordinates(lat, lon, text, checks)
    fips = _fips(frame, station, checks)
    factor = _factors(variable, frame["Units"], column, checks)

    keep = ~checks.bad & ~np.isnan(value)
    tidy = pd.DataFrame(
        {
            "station": station[keep],
            "poc": poc[keep].astype(np.int64),
            "time": time.to_numpy(dtype="datetime64[ns]")[keep],
            "variable": variable,
            "value": (value * factor)[keep],
            "obs_count": obs[keep],
            "percent_complete": pct[keep],
            LATITUDE: lat[keep],
            LONGITUDE: lon[keep],
            "site_name": frame["Local Site Name"].str.strip().to_numpy(dtype=str)[keep],
            "state": frame["State"].str.strip().to_numpy(dtype=str)[keep],
            **{name: codes[keep] for name, codes in fips.items()},
            "units": frame["Units"].str.strip().to_numpy(dtype=str)[keep],
            "line": lines[keep],
        },
        columns=list(TIDY_COLUMNS),
    )
    return ParsedFile(tidy, checks.problems(path))


def read_epa_daily(path: str | os.PathLike, *, on_bad_rows: str = "reject") -> pd.DataFrame:
    """Parse one AirData daily CSV file into a tidy table in canonical units.

    Args:
        path: the CSV file.
        on_bad_rows: ``"reject"`` raises if any row is bad; ``"skip"`` drops the bad rows
            (logged as a warning with their lines).

    Returns:
        One row per valid file row with a value, columns :data:`TIDY_COLUMNS`: ``station``
        (9-digit AQS site id), ``poc``, ``time`` (local day), ``variable``, ``value``
        (canonical units), ``obs_count``, ``percent_complete``, ``latitude``, ``longitude``,
        ``site_name``, ``state``, ``state_fips``, ``county_fips`` (text), ``units`` (as
        written in the file) and ``line`` (1-based).

    Raises:
        IngestError: naming the file, every bad line (the first 20 quoted) and what was
            expected: missing columns, bad dates, ids, numbers, units, coordinates or FIPS
            codes, or a file without data rows.

    """
    parsed = parse_epa_daily(path)
    if parsed.problems is not None:
        if check_on_bad_rows(on_bad_rows) == "reject":
            raise IngestError(parsed.problems.format())
        log.warning("dropped bad rows of %s", parsed.problems.format())
    return parsed.tidy
