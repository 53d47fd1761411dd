"""Canadian NAPS hourly "wide" CSV files -> canonical station Dataset on a UTC hourly axis.

Format (National Air Pollution Surveillance programme, Environment and Climate Change
Canada, continuous data by pollutant and year): a UTF-8 file with a BOM, a bilingual
preamble (``Pollutant // Polluant:, NO2``, ``Units // Unités, ppb``, notes), then the header::

    Pollutant//Polluant, NAPS ID//Identifiant SNPA, City//Ville,
    Province/Territory//Province/Territoire, Latitude//Latitude, Longitude//Longitude,
    Date//Date, H01//H01, ..., H24//H24

and one row per station and local day. Header names are matched on their English half.

Conventions:

* **Hours.** ``Hnn`` on local date ``D`` is hour-ending local *standard* time (NAPS never
  applies daylight saving): it covers ``[D + (nn-1) h, D + nn h)`` local standard time. The
  output axis is **UTC, hour-beginning**: ``time = D + (nn-1) h - utc_offset``.
* **Half-hour offsets** (Newfoundland, UTC-3:30) do not fall on the hourly axis: their
  values are labelled with the UTC hour in which their interval *begins*
  (``floor``): H01 of 2023-01-01 covers 03:30-04:30 UTC and is stored at 03:00 UTC, i.e.
  30 minutes early. The ``time_convention`` attribute says so.
* **Missing**: ``-999`` (and empty cells) become NaN. Zeros are valid. Other values are kept
  as reported.
* **Stations**: ids are the 6-digit NAPS id as a string (``"010102"``). ``latitude``,
  ``longitude``, ``city`` and ``province`` are the most frequent values over the station's
  rows; stations whose rows disagree are listed in the ``coordinate_notes`` attribute.
* **Duplicates**: two rows for one station and date are an error.

UTC offsets of local standard time (:func:`utc_offsets`); the first matching rule wins:

==========  =========================================================  ======
Province    Rule                                                       Offset
==========  =========================================================  ======
BC          NE (Peace River, Fort Nelson): lat > 55, lon > -122.9      -7
BC          East Kootenay / Creston: longitude > -117.0                -7
BC          otherwise                                                  -8
ON          west of 90 W (longitude < -90)                             -6
ON          otherwise                                                  -5
QC          east of 63 W (Magdalen Is., Lower North Shore)             -4
QC          otherwise                                                  -5
NL          Labrador west of 58 W (latitude > 52, longitude < -58)     -4
NL          otherwise (island of Newfoundland, SE Labrador)            -3.5
NU          longitude > -85 / > -102 / otherwise                       -5/-6/-7
NS, NB, PE  all                                                        -4
MB, SK      all (Saskatchewan's Lloydminster is not special-cased)     -6
AB, NT      all                                                        -7
YT (YU)     all (Yukon is UTC-7 all year since 2020)                   -7
==========  =========================================================  ======

In the 2023 NO2 file (196 stations) the provinces are AB, BC, MB, NB, NL, NS, NT, ON, PE, QC,
SK and YU; the exceptions that apply are Taylor and Fort St. John (BC Peace, UTC-7),
Cranbrook (BC East Kootenay, UTC-7) and Labrador City (NL Labrador, UTC-4). No Ontario
station lies west of 90 W.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import variables
from geoclim.data.ingest._common import (
    check_coordinates,
    first_bad,
    ingest_error,
    most_frequent,
    parse_numbers,
    regular_axis,
    require_columns,
    scatter,
    station_dataset,
)
from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE

HOURS: tuple[str, ...] = tuple(f"H{h:02d}" for h in range(1, 25))
REQUIRED_COLUMNS: tuple[str, ...] = (
    "Pollutant",
    "NAPS ID",
    "City",
    "Province/Territory",
    "Latitude",
    "Longitude",
    "Date",
    *HOURS,
)
MISSING = -999.0

POLLUTANTS: dict[str, str] = {
    "NO2": "no2",
    "O3": "o3",
    "SO2": "so2",
    "CO": "co",
    "NOX": "nox",
    "PM25": "pm25",
    "PM2.5": "pm25",
    "PM10": "pm10",
}
"""NAPS pollutant code -> canonical variable name."""

_PROVINCE_OFFSET = {
    "NL": -3.5,
    "NS": -4.0,
    "NB": -4.0,
    "PE": -4.0,
    "QC": -5.0,
    "ON": -5.0,
    "MB": -6.0,
    "SK": -6.0,
    "AB": -7.0,
    "BC": -8.0,
    "YT": -7.0,
    "YU": -7.0,
    "NT": -7.0,
    "NU": -5.0,
}
"""Default UTC offset (hours) of local standard time per province / territory code."""

SOURCE = "NAPS / Environment and Climate Change Canada"
LICENSE = "Open Government Licence - Canada"
REFERENCES = (
    "https://data-donnees.az.ec.gc.ca/data/air/monitor/national-air-pollution-"
    "surveillance-naps-program/"
)
_HEADER_START = "Pollutant//Polluant"  # first header field (a preamble line has a colon)


def utc_offsets(province: np.ndarray, latitude: np.ndarray, longitude: np.ndarray) -> np.ndarray:
    """UTC offset in hours of local standard time for each station (table in module doc).

    Args:
        province: two-letter province / territory codes.
        latitude: degrees north.
        longitude: degrees east (negative in Canada).

    Returns:
        float64 offsets (e.g. -5.0 for Toronto, -3.5 for St. John's); NaN for an unknown code.

    """
    prov = np.asarray(province, dtype=str)
    lat = np.asarray(latitude, dtype=np.float64)
    lon = np.asarray(longitude, dtype=np.float64)
    default = np.array([_PROVINCE_OFFSET.get(p, np.nan) for p in np.unique(prov)])
    offset = default[np.searchsorted(np.unique(prov), prov)]
    rules = [
        ((prov == "BC") & (lat > 55.0) & (lon > -122.9), -7.0),
        ((prov == "BC") & (lon > -117.0), -7.0),
        ((prov == "ON") & (lon < -90.0), -6.0),
        ((prov == "QC") & (lon > -63.0), -4.0),
        ((prov == "NL") & (lat > 52.0) & (lon < -58.0), -4.0),
        ((prov == "NU") & (lon <= -85.0) & (lon > -102.0), -6.0),
        ((prov == "NU") & (lon <= -102.0), -7.0),
    ]
    return np.select([m for m, _ in rules], [o for _, o in rules], default=offset)


def _split_preamble(path: Path) -> tuple[dict[str, str], str, int]:
    """Return the preamble's key/value pairs, the text from the header on, and its line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ingest_error(path, None, f"not UTF-8 text: {err}") from None
    if not text.strip():
        raise ingest_error(path, 1, "file is empty; expected a NAPS preamble and header")
    preamble: dict[str, str] = {}
    offset = 0
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.split(",")[0].replace(" ", "") == _HEADER_START:
            return preamble, text[offset:], number
        key, _, rest = line.partition(",")
        value = rest.split(",")[0].strip()
        if key.strip() and value:
            preamble[key.split("//")[0].strip().lower()] = value
        offset += len(line)
    raise ingest_error(path, None, f"no header line whose first field is {_HEADER_START!r}")


def _units(path: Path, preamble: dict[str, str], variable: str) -> tuple[str, float]:
    units = preamble.get("units")
    if units is None:
        raise ingest_error(path, None, "preamble has no 'Units // Unités' line")
    try:
        return units, variables.conversion_factor(variable, units)
    except SchemaError as err:
        raise ingest_error(path, None, f"bad units in the preamble: {err}") from None


def _read_rows(path: Path) -> tuple[pd.DataFrame, np.ndarray, dict[str, str]]:
    preamble, body, header_line = _split_preamble(path)
    try:
        frame = pd.read_csv(
            io.StringIO(body), dtype=str, keep_default_na=False, skip_blank_lines=False
        )
    except pd.errors.ParserError as err:
        raise ingest_error(path, None, f"cannot be parsed as CSV: {err}") from None
    frame.columns = [str(c).split("//")[0].strip() for c in frame.columns]
    require_columns(path, list(frame.columns), REQUIRED_COLUMNS, header_line)
    lines = np.arange(len(frame)) + header_line + 1
    blank = (frame.apply(lambda col: col.str.strip()) == "").all(axis=1).to_numpy()
    frame, lines = frame.loc[~blank].reset_index(drop=True), lines[~blank]
    if frame.empty:
        raise ingest_error(path, header_line + 1, "no data rows after the header")
    return frame, lines, preamble


def _pollutant(path: Path, frame: pd.DataFrame, lines: np.ndarray) -> str:
    codes = frame["Pollutant"].str.strip().str.upper()
    first = codes.iloc[0]
    first_bad(
        path,
        (codes != first).to_numpy(),
        lines,
        codes.to_numpy(),
        "Pollutant",
        f"{first!r} in every row (one pollutant per file)",
    )
    if first not in POLLUTANTS:
        raise ingest_error(
            path,
            int(lines[0]),
            f"unsupported pollutant {first!r}; expected one of {list(POLLUTANTS)}",
        )
    return POLLUTANTS[first]


def _hourly_values(path: Path, frame: pd.DataFrame, lines: np.ndarray) -> np.ndarray:
    """The (rows, 24) values, -999 and empty -> NaN; raise at the first non-number."""
    cells = frame[list(HOURS)].apply(lambda col: col.str.strip())
    flat = cells.to_numpy(dtype=str).ravel()  # row-major: cell k is row k // 24
    numbers = parse_numbers(path, pd.Series(flat), np.repeat(lines, 24), "H01..H24")
    numbers[numbers == MISSING] = np.nan
    return numbers.reshape(len(frame), 24)


def open_naps_hourly(path: str | os.PathLike) -> xr.Dataset:
    """Read one NAPS hourly file into a station Dataset on a regular UTC hourly axis.

    Args:
        path: the CSV file (e.g. ``NO2_2023.csv``).

    Returns:
        Dataset with dims ``(time, station)``, ``time`` hour-beginning UTC, one float32
        variable in canonical units, station coords ``latitude``, ``longitude``, ``city``,
        ``province`` and ``utc_offset`` (hours).

    Raises:
        IngestError: naming the file and line for missing columns, bad dates, ids, numbers,
            coordinates, unknown provinces, duplicate station-days or bad units.

    """
    path = Path(path)
    frame, lines, preamble = _read_rows(path)
    variable = _pollutant(path, frame, lines)
    units, factor = _units(path, preamble, variable)

    station = frame["NAPS ID"].str.strip()
    ok = station.str.fullmatch(r"\d+").to_numpy(dtype=bool, na_value=False)
    first_bad(path, ~ok, lines, station.to_numpy(), "NAPS ID", "a numeric NAPS id")
    station = station.str.zfill(6).to_numpy(dtype=str)
    dates = frame["Date"].str.strip()
    day = pd.to_datetime(dates, format="%Y-%m-%d", errors="coerce")
    first_bad(path, day.isna().to_numpy(), lines, dates.to_numpy(), "Date", "YYYY-MM-DD")
    lat = parse_numbers(path, frame["Latitude"], lines, "Latitude", allow_empty=False)
    lon = parse_numbers(path, frame["Longitude"], lines, "Longitude", allow_empty=False)
    check_coordinates(path, lat, lon, lines, "Latitude", "Longitude")
    province = frame["Province/Territory"].str.strip().str.upper().to_numpy(dtype=str)
    dup = pd.DataFrame({"s": station, "d": day}).duplicated().to_numpy()
    first_bad(path, dup, lines, station, "NAPS ID", "one row per station and date")
    values = _hourly_values(path, frame, lines) * factor

    meta = most_frequent(
        pd.DataFrame(
            {
                "station": station,
                LATITUDE: lat,
                LONGITUDE: lon,
                "city": frame["City"].str.strip().to_numpy(dtype=str),
                "province": province,
            }
        ),
        "station",
        [LATITUDE, LONGITUDE, "city", "province"],
    )
    meta["utc_offset"] = utc_offsets(
        meta["province"].to_numpy(), meta[LATITUDE].to_numpy(), meta[LONGITUDE].to_numpy()
    )
    unknown = np.isnan(meta["utc_offset"].to_numpy())
    if unknown.any():
        bad = meta.index[unknown][0]
        raise ingest_error(
            path,
            int(lines[np.argmax(station == bad)]),
            f"unknown province {meta.loc[bad, 'province']!r}; expected one of "
            f"{sorted(_PROVINCE_OFFSET)}",
        )

    # time_utc = D + (nn-1) h - offset, floored to the hour (matters for UTC-3:30 only)
    offset = pd.to_timedelta(meta["utc_offset"].reindex(station).to_numpy(), unit="h")
    start = day.to_numpy(dtype="datetime64[ns]") - offset.to_numpy()
    hours = np.arange(24, dtype="int64") * np.timedelta64(1, "h").astype("timedelta64[ns]")
    times = pd.DatetimeIndex((start[:, None] + hours[None, :]).ravel()).floor("h")
    keep = ~np.isnan(values.ravel())
    axis = regular_axis(times.to_numpy(), "h")
    data = {
        variable: scatter(
            axis,
            pd.Index(meta.index),
            times.to_numpy()[keep],
            np.repeat(station, 24)[keep],
            values.ravel()[keep],
        )
    }

    moved = meta.index[meta.pop("n_variants").to_numpy() > 1]
    attrs = {
        "title": f"NAPS hourly {variable} station observations",
        "source": SOURCE,
        "license": LICENSE,
        "references": REFERENCES,
        "time_convention": "hour-beginning UTC; NAPS Hnn (hour-ending local standard time) "
        "on date D is stored at D + (nn-1) h - utc_offset, floored to the "
        "hour (UTC-3:30 stations are labelled 30 min early)",
        "unit_conversions": f"{variable}: {units!r} x {factor:g} -> "
        f"{variables.get(variable).units!r}",
        "coordinate_notes": (
            "constant per station"
            if moved.empty
            else f"stations {list(moved)} change coordinates/metadata; the most frequent were kept"
        ),
        "source_file": path.name,
    }
    return station_dataset(data, axis, meta, attrs, source=os.fspath(path))
