"""The openair example data (London Marylebone Road, 1998-2005) -> canonical station Dataset.

Format: the CSV export of openair's ``mydata`` (as shipped by the bivapp package as
``openair_test_data.csv``): columns ``"", date, ws, wd, nox, no2, o3, pm10, so2, co, pm25``,
the first being R's row names, ``NA`` marking missing values.

Conventions:

* **Time**: ``date`` is GMT (= UTC) and hour-beginning, as in openair. The axis is made
  regular (hourly from the first to the last stamp); absent hours are NaN; duplicate stamps
  are an error.
* **Units** follow openair's documentation of ``mydata``
  (https://rdrr.io/pkg/openair/man/mydata.html): nox, no2, o3, so2 in ppb, co in ppm,
  pm10 and pm25 in ug m-3 (PM10 is raw TEOM), ws in m s-1, wd in degrees from north. These
  are already the canonical units, so no conversion -- in particular no mass-to-mixing-ratio
  conversion and no reference temperature -- is applied; should a source state mass units for
  the gases, :data:`UNITS` is the one place to change, and :func:`open_openair` converts at
  the EU reference temperature of 20 degC.
* One station, ``london_marylebone_road`` at 51.52253 N, 0.15461 W.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import variables
from geoclim.data.ingest._common import (
    first_bad,
    ingest_error,
    parse_numbers,
    regular_axis,
    require_columns,
    station_dataset,
)
from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE

UNITS: dict[str, str] = {
    "ws": "m/s",
    "wd": "degree",
    "nox": "ppb",
    "no2": "ppb",
    "o3": "ppb",
    "pm10": "ug/m3",
    "so2": "ppb",
    "co": "ppm",
    "pm25": "ug/m3",
}
"""Column -> units as documented for openair's ``mydata``."""

STATION_ID = "london_marylebone_road"
STATION_NAME = "London Marylebone Road"
LATITUDE_DEG = 51.52253
LONGITUDE_DEG = -0.15461
REFERENCE_TEMPERATURE_C = 20.0
"""EU reference temperature for mass <-> mixing-ratio conversion of gases (if ever needed)."""

SOURCE = "openair / King's College London via the openair R package"
LICENSE = "as distributed in openair / bivapp (MIT for the package)"
REFERENCES = (
    "Carslaw, D. C. and K. Ropkins (2012) openair - an R package for air quality data "
    "analysis, Environmental Modelling & Software 27-28, 52-61; "
    "https://rdrr.io/pkg/openair/man/mydata.html; https://www.londonair.org.uk"
)


def open_openair(path: str | os.PathLike) -> xr.Dataset:
    """Read the openair ``mydata`` CSV into a one-station Dataset on a regular UTC hourly axis.

    Args:
        path: the CSV file (``openair_test_data.csv``).

    Returns:
        Dataset with dims ``(time, station)`` (station ``london_marylebone_road``), float32
        variables ws, wd, nox, no2, o3, pm10, so2, co, pm25 in canonical units.

    Raises:
        IngestError: naming the file and line for missing columns, bad dates, non-numeric
            values, duplicate time stamps or an empty file.

    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise ingest_error(path, 1, "file is empty; expected a header line") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    require_columns(path, list(frame.columns), ("date", *UNITS), 1)
    if frame.empty:
        raise ingest_error(path, 2, "no data rows after the header")
    lines = np.arange(len(frame)) + 2

    stamps = frame["date"].str.strip()
    time = pd.to_datetime(stamps, format="%Y-%m-%d %H:%M:%S", errors="coerce")
    first_bad(path, time.isna().to_numpy(), lines, stamps.to_numpy(), "date", "YYYY-MM-DD HH:MM:SS")
    first_bad(
        path, time.duplicated().to_numpy(), lines, stamps.to_numpy(), "date", "each hour once"
    )
    axis = regular_axis(time.to_numpy(), "h")
    off_axis = axis.get_indexer(pd.DatetimeIndex(time)) < 0
    first_bad(path, off_axis, lines, stamps.to_numpy(), "date", "whole hours")
    rows = axis.get_indexer(pd.DatetimeIndex(time))

    data, conversions = {}, []
    for column, units in UNITS.items():
        text = frame[column].where(frame[column].str.strip() != "NA", "")
        values = parse_numbers(path, text, lines, column)
        try:
            converted = variables.convert(
                values, column, units, reference_temperature_c=REFERENCE_TEMPERATURE_C
            )
        except SchemaError as err:  # a bad edit of UNITS
            raise ingest_error(path, 1, f"column {column!r}: {err}") from None
        if variables.normalise_units(units) != variables.get(column).units:
            conversions.append(
                f"{column}: {units!r} -> {variables.get(column).units!r} at "
                f"{REFERENCE_TEMPERATURE_C:g} degC"
            )
        series = np.full((len(axis), 1), np.nan, dtype=np.float32)
        series[rows, 0] = converted
        data[column] = series

    stations = pd.DataFrame(
        {LATITUDE: [LATITUDE_DEG], LONGITUDE: [LONGITUDE_DEG], "site_name": [STATION_NAME]},
        index=pd.Index([STATION_ID], name="station"),
    )
    attrs = {
        "title": "openair example data: hourly air quality at London Marylebone Road",
        "source": SOURCE,
        "license": LICENSE,
        "references": REFERENCES,
        "time_convention": "hour-beginning GMT/UTC, as in openair",
        "unit_conversions": "; ".join(conversions)
        or (
            "none: openair documents nox, no2, o3, so2 in ppb, co in ppm, pm10 and pm25 in "
            "ug m-3, already canonical"
        ),
        "missing_hours": int(len(axis) - len(frame)),
        "source_file": path.name,
    }
    return station_dataset(data, axis, stations, attrs, source=os.fspath(path))
