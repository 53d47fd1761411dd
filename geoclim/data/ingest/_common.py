"""Helpers shared by the raw-file readers: error messages, parsing, station Datasets.

Line numbers in messages are 1-based and count every physical line of the file, the header
and any preamble included, so ``file.csv, line 7`` is what an editor shows as line 7.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import schema
from geoclim.errors import IngestError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME


class FileError(IngestError):
    """An :class:`IngestError` about one file, with its parts kept for reports.

    Attributes:
        path: the file.
        line: the 1-based line at fault, or ``None`` for the whole file.
        detail: what is wrong and what was expected (the message without the location).

    """

    def __init__(self, path: str | os.PathLike, line: int | None, detail: str) -> None:
        self.path, self.line, self.detail = os.fspath(path), line, detail
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {detail}")


def ingest_error(path: str | os.PathLike, line: int | None, message: str) -> FileError:
    """Build the error for a malformed file: ``<path>, line <n>: <message>``."""
    return FileError(path, line, message)


def md5_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex MD5 digest of a file's bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def clean_header(columns: pd.Index) -> list[str]:
    """Strip whitespace (and a stray BOM) from column names."""
    return [str(c).replace("\ufeff", "").strip() for c in columns]


def require_columns(path: Path, columns: list[str], required: tuple[str, ...], line: int) -> None:
    """Raise naming every required column the header (at ``line``) lacks."""
    missing = [c for c in required if c not in columns]
    if missing:
        raise ingest_error(path, line, f"missing column(s) {missing}; the header has {columns}")


def first_bad(
    path: Path, bad: np.ndarray, lines: np.ndarray, values: np.ndarray, column: str, expected: str
) -> None:
    """Raise for the first row where ``bad`` is true, quoting its value; no-op if none."""
    if bad.any():
        i = int(np.argmax(bad))
        raise ingest_error(
            path,
            int(lines[i]),
            f"bad value {values[i]!r} in column {column!r}; expected {expected}",
        )


def to_numbers(text: pd.Series, *, allow_empty: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Parse a column of strings as float64 without raising.

    Returns:
        ``(numbers, bad)``: the values (empty cells NaN) and a bool mask of the cells that are
        not a finite number (empty cells count as bad only if ``allow_empty`` is false).

    """
    stripped = text.astype(str).str.strip()
    empty = (stripped == "").to_numpy()
    numbers = pd.to_numeric(stripped.where(~empty, None), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )
    bad = np.isnan(numbers) & ~empty if allow_empty else np.isnan(numbers)
    # "nan"/"inf" parse as floats but are not values a monitoring file may contain
    bad |= ~np.isfinite(numbers) & ~np.isnan(numbers)
    return numbers, bad


def parse_numbers(
    path: Path, text: pd.Series, lines: np.ndarray, column: str, *, allow_empty: bool = True
) -> np.ndarray:
    """Parse a column of strings as float64; empty cells become NaN (or raise if not allowed)."""
    numbers, bad = to_numbers(text, allow_empty=allow_empty)
    first_bad(path, bad, lines, text.astype(str).str.strip().to_numpy(), column, "a number")
    return numbers


def check_coordinates(
    path: Path,
    lat: np.ndarray,
    lon: np.ndarray,
    lines: np.ndarray,
    lat_column: str,
    lon_column: str,
) -> None:
    """Raise for the first latitude outside [-90, 90] or longitude outside [-180, 180]."""
    first_bad(path, (lat < -90) | (lat > 90), lines, lat, lat_column, "a latitude in [-90, 90]")
    first_bad(
        path, (lon < -180) | (lon > 180), lines, lon, lon_column, "a longitude in [-180, 180]"
    )


def most_frequent(frame: pd.DataFrame, key: str, columns: list[str]) -> pd.DataFrame:
    """Per ``key``, the most frequent combination of ``columns`` (ties: first in ``frame``).

    Returns:
        A frame indexed by ``key`` (sorted) with ``columns`` and ``n_variants``, the number of
        distinct combinations seen for that key.

    """
    order = np.arange(len(frame))
    counts = (
        frame.assign(_order=order)
        .groupby([key, *columns], sort=False, dropna=False)
        .agg(_n=("_order", "size"), _first=("_order", "min"))
        .reset_index()
    )
    variants = counts.groupby(key).size()
    best = counts.sort_values([key, "_n", "_first"], ascending=[True, False, True], kind="stable")
    best = best.drop_duplicates(key).set_index(key)[columns]
    best["n_variants"] = variants.reindex(best.index).to_numpy()
    return best


def regular_axis(times: np.ndarray, step: str) -> pd.DatetimeIndex:
    """The regular axis from the first to the last of ``times`` (datetime64[ns]) every ``step``."""
    times = np.asarray(times, dtype="datetime64[ns]")
    return pd.date_range(times.min(), times.max(), freq=step, unit="ns", name=TIME)


def scatter(
    axis: pd.DatetimeIndex,
    stations: pd.Index,
    times: np.ndarray,
    station_ids: np.ndarray,
    values: np.ndarray,
) -> np.ndarray:
    """Place ``values`` at ``(time, station)`` into a NaN-filled ``(T, S)`` float32 array.

    Raises:
        ValueError: if a time is off the axis or a station is unknown (a programming error).

    """
    t = axis.get_indexer(pd.DatetimeIndex(np.asarray(times, dtype="datetime64[ns]")))
    s = stations.get_indexer(station_ids)
    if (t < 0).any() or (s < 0).any():
        raise ValueError("value off the time axis or at an unknown station")
    out = np.full((len(axis), len(stations)), np.nan, dtype=np.float32)
    out[t, s] = values
    return out


def station_dataset(
    data: Mapping[str, np.ndarray],
    axis: pd.DatetimeIndex,
    stations: pd.DataFrame,
    attrs: Mapping[str, object],
    *,
    source: str,
) -> xr.Dataset:
    """Build, annotate and validate a canonical station Dataset.

    Args:
        data: canonical variable name -> ``(time, station)`` array in canonical units.
        axis: the regular time axis.
        stations: one row per station, indexed by station id, with ``latitude``, ``longitude``
            and any further per-station columns (stored as ``station`` coordinates).
        attrs: global attributes.
        source: file or folder name for validation messages.

    Returns:
        Dataset with dims ``(time, station)``, float32 variables with CF attributes.

    """
    coords: dict[str, object] = {
        TIME: axis.values.astype("datetime64[ns]"),
        STATION: np.asarray(stations.index, dtype=str),
    }
    for name in stations.columns:
        column = stations[name].to_numpy()
        if name in (LATITUDE, LONGITUDE):
            coords[name] = (STATION, column.astype(np.float64))
        elif column.dtype.kind in "fiub":
            coords[name] = (STATION, column)
        else:
            coords[name] = (STATION, column.astype(str))
    ds = xr.Dataset(
        {name: ((TIME, STATION), values) for name, values in data.items()},
        coords=coords,
        attrs=dict(attrs),
    )
    ds[LATITUDE].attrs.update(units="degrees_north", standard_name="latitude")
    ds[LONGITUDE].attrs.update(units="degrees_east", standard_name="longitude")
    return schema.validate(schema.annotate(ds), source=source)
