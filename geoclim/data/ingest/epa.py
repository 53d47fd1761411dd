"""US EPA AirData daily CSV files -> tidy tables -> one canonical station Dataset.

Format: the "Download Daily Data" CSV of https://www.epa.gov/outdoor-air-quality-data, one
pollutant per file, one row per (site, POC, day). Columns used (others are ignored)::

    Date (MM/DD/YYYY) | Site ID (9-digit AQS id) | POC | <pollutant column> | Units |
    Daily Obs Count | Percent Complete | Local Site Name | State |
    Site Latitude | Site Longitude

where the pollutant column is one of :data:`POLLUTANT_COLUMNS`. The older upper-case header
spelling (``UNITS``, ``Site Name``, ``SITE_LATITUDE``, ...) is accepted too.

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
* **Empty values**: a row with an empty concentration is dropped; an empty ``Daily Obs
  Count`` / ``Percent Complete`` counts as lowest in the duplicate rule below.
* **Duplicate rows** for one (site, POC, day) -- AirData repeats a day when AQS and AirNow
  both report it or several sample durations exist -- keep the row with the highest
  ``Percent Complete``, then the highest ``Daily Obs Count``, then the first one read (files
  in the order given, rows in file order). Completeness ranks first because a complete 24-h
  filter sample counts one observation while a partial day of hourly data counts many.
* **Several POCs** (collocated instruments) at one site: each day takes the value of the
  lowest POC that reported on that day. No averaging, so a day's value always comes from a
  single instrument, and gaps of the primary instrument are filled by the next one.
* **Station metadata** (``latitude``, ``longitude``, ``site_name``, ``state``): the most
  frequent combination over all rows of the site (ties: first read).

Malformed files raise :class:`geoclim.errors.IngestError` naming the file, the 1-based line
(header = line 1) and what was expected.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import variables
from geoclim.data.ingest._common import (
    check_coordinates,
    clean_header,
    first_bad,
    ingest_error,
    most_frequent,
    parse_numbers,
    regular_axis,
    scatter,
    station_dataset,
)
from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE

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

_LEGACY_COLUMNS = {
    "UNITS": "Units",
    "Site Name": "Local Site Name",
    "DAILY_OBS_COUNT": "Daily Obs Count",
    "PERCENT_COMPLETE": "Percent Complete",
    "STATE": "State",
    "SITE_LATITUDE": "Site Latitude",
    "SITE_LONGITUDE": "Site Longitude",
}

# AirData qualifies mass units by the conditions they refer to; both are plain ug m-3 to us.
TIDY_COLUMNS: tuple[str, ...] = (
    "station",
    "poc",
    "time",
    "variable",
    "value",
    "obs_count",
    "percent_complete",
    LATITUDE,
    LONGITUDE,
    "site_name",
    "state",
    "units",
    "line",
)
"""Columns of the tidy table :func:`read_epa_daily` returns (one row per kept file row)."""

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


def _site_ids(path: Path, text: pd.Series, lines: np.ndarray) -> np.ndarray:
    ids = text.str.strip()
    # spreadsheets drop the leading zero of state codes 01-09: pad back to 9 digits
    ok = ids.str.fullmatch(r"\d{1,9}").to_numpy(dtype=bool, na_value=False)
    first_bad(path, ~ok, lines, ids.to_numpy(), "Site ID", "a 9-digit AQS site id")
    return ids.str.zfill(9).to_numpy(dtype=str)


def _factors(
    path: Path, variable: str, units: pd.Series, lines: np.ndarray, column: str
) -> np.ndarray:
    units = units.str.strip()
    factors = np.empty(len(units), dtype=np.float64)
    for spelling in units.unique():  # a handful of distinct strings, not rows
        rows = (units == spelling).to_numpy()
        try:
            factors[rows] = unit_factor(variable, spelling)
        except SchemaError as err:
            raise ingest_error(
                path, int(lines[np.argmax(rows)]), f"bad units for column {column!r}: {err}"
            ) from None
    return factors


def read_epa_daily(path: str | os.PathLike) -> pd.DataFrame:
    """Parse one AirData daily CSV file into a tidy table in canonical units.

    Args:
        path: the CSV file.

    Returns:
        One row per file row with a value, columns :data:`TIDY_COLUMNS`: ``station`` (9-digit
        AQS site id), ``poc``, ``time`` (local day), ``variable``, ``value`` (canonical
        units), ``obs_count``, ``percent_complete``, ``latitude``, ``longitude``,
        ``site_name``, ``state``, ``units`` (as written in the file) and ``line`` (1-based).

    Raises:
        IngestError: naming the file, line and expectation for missing columns, bad dates,
            ids, numbers, units or coordinates, or a file without data rows.

    """
    path = Path(path)
    frame, lines = _read_text(path)
    columns = list(frame.columns)
    column = _pollutant_column(path, columns)
    variable = POLLUTANT_COLUMNS[column]
    if frame.empty:
        raise ingest_error(path, 2, "no data rows; expected at least one row after the header")

    dates = frame["Date"].str.strip()
    time = pd.to_datetime(dates, format="%m/%d/%Y", errors="coerce")
    first_bad(path, time.isna().to_numpy(), lines, dates.to_numpy(), "Date", "MM/DD/YYYY")
    station = _site_ids(path, frame["Site ID"], lines)
    poc = parse_numbers(path, frame["POC"], lines, "POC", allow_empty=False)
    first_bad(path, poc != np.round(poc), lines, poc, "POC", "an integer")
    value = parse_numbers(path, frame[column], lines, column)
    obs = parse_numbers(path, frame["Daily Obs Count"], lines, "Daily Obs Count")
    pct = parse_numbers(path, frame["Percent Complete"], lines, "Percent Complete")
    lat = parse_numbers(path, frame["Site Latitude"], lines, "Site Latitude", allow_empty=False)
    lon = parse_numbers(path, frame["Site Longitude"], lines, "Site Longitude", allow_empty=False)
    check_coordinates(path, lat, lon, lines, "Site Latitude", "Site Longitude")
    factor = _factors(path, variable, frame["Units"], lines, column)

    tidy = pd.DataFrame(
        {
            "station": station,
            "poc": poc.astype(np.int64),
            "time": time.to_numpy(dtype="datetime64[ns]"),
            "variable": variable,
            "value": value * factor,
            "obs_count": obs,
            "percent_complete": pct,
            LATITUDE: lat,
            LONGITUDE: lon,
            "site_name": frame["Local Site Name"].str.strip().to_numpy(dtype=str),
            "state": frame["State"].str.strip().to_numpy(dtype=str),
            "units": frame["Units"].str.strip().to_numpy(dtype=str),
            "line": lines,
        }
    )
    return tidy.loc[~np.isnan(value)].reset_index(drop=True)


def select_daily(tidy: pd.DataFrame) -> pd.DataFrame:
    """Apply the duplicate and multi-POC rules: one row per (variable, station, day).

    ``tidy`` is the concatenation of :func:`read_epa_daily` tables with an integer
    ``order`` column giving the file order (row order within a file is ``line``).
    """
    ranked = tidy.sort_values(
        ["variable", "station", "time", "poc", "percent_complete", "obs_count", "order", "line"],
        ascending=[True, True, True, True, False, False, True, True],
        na_position="last",
        kind="stable",
    )
    # lowest POC first, within it the best duplicate: the first row per day is the kept one
    return ranked.drop_duplicates(["variable", "station", "time"], keep="first")


def _conversions(tidy: pd.DataFrame) -> str:
    pairs = tidy[["variable", "units"]].drop_duplicates().sort_values(["variable", "units"])
    return "; ".join(
        f"{var}: {units!r} x {unit_factor(var, units):g} -> {variables.get(var).units!r}"
        for var, units in pairs.itertuples(index=False)
    )


def combine_epa_daily(tables: Sequence[pd.DataFrame], *, source: str = "AirData") -> xr.Dataset:
    """Merge tidy tables (from :func:`read_epa_daily`, in file order) into one station Dataset.

    Args:
        tables: tidy tables; earlier tables win ties in the duplicate rule.
        source: label for validation messages.

    Returns:
        Dataset with dims ``(time, station)`` (daily, regular, NaN gaps), one float32 variable
        per pollutant present, station coords ``latitude``, ``longitude``, ``site_name``,
        ``state``.

    """
    tables = [t for t in tables if len(t)]
    if not tables:
        raise ingest_error(source, None, "no data rows in any file")
    tidy = pd.concat([t.assign(order=i) for i, t in enumerate(tables)], ignore_index=True)
    meta = most_frequent(tidy, "station", [LATITUDE, LONGITUDE, "site_name", "state"])
    kept = select_daily(tidy)
    axis = regular_axis(kept["time"].to_numpy(), "D")
    stations = pd.Index(meta.index, name="station")
    data = {}
    for var in [v for v in POLLUTANT_COLUMNS.values() if v in set(kept["variable"])]:
        rows = kept.loc[kept["variable"] == var]
        data[var] = scatter(
            axis,
            stations,
            rows["time"].to_numpy(),
            rows["station"].to_numpy(),
            rows["value"].to_numpy(),
        )
    attrs = {
        "title": "US EPA AirData daily station observations",
        "source": SOURCE,
        "references": "https://www.epa.gov/outdoor-air-quality-data",
        "time_convention": "local calendar day of the daily summary (no UTC shift)",
        "unit_conversions": _conversions(tidy),
        "duplicate_rule": "per (site, POC, day): highest Percent Complete, then highest "
        "Daily Obs Count, then first read",
        "poc_rule": "per (site, day): value of the lowest POC that reported",
    }
    ds = station_dataset(
        data, axis, meta[[LATITUDE, LONGITUDE, "site_name", "state"]], attrs, source=source
    )
    statistic = {v: c for c, v in POLLUTANT_COLUMNS.items()}
    for var in data:
        ds[var].attrs["epa_statistic"] = statistic[var]
    return ds


def epa_files(folder: str | os.PathLike, pattern: str = "*.csv") -> list[Path]:
    """The CSV files of ``folder`` in sorted (deterministic) order."""
    return sorted(p for p in Path(folder).glob(pattern) if p.is_file())


def open_epa_daily(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> xr.Dataset:
    """Read AirData daily CSV files (a folder or a list of files) into one station Dataset.

    Args:
        paths: a folder (all ``*.csv`` in it, sorted by name) or an iterable of files (read
            in the given order, which decides ties in the duplicate rule).

    Returns:
        The canonical, validated station Dataset (see :func:`combine_epa_daily`).

    """
    if isinstance(paths, (str, os.PathLike)) and Path(paths).is_dir():
        files = epa_files(paths)
        label = os.fspath(paths)
        if not files:
            raise ingest_error(label, None, "folder holds no *.csv files")
    else:
        files = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
        label = ", ".join(p.name for p in files)
    return combine_epa_daily([read_epa_daily(p) for p in files], source=label)
