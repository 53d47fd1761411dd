"""Merge tidy AirData tables into one station Dataset: the file, duplicate and POC rules.

* **Several files** with rows for one (pollutant, site, POC, day) -- a revised download, or
  overlapping date ranges: the rows of the most recently modified file win (file mtime;
  equal times: the later path in sorted order), the other files' rows of that day are
  *superseded* and reported. So a re-download replaces what it covers and nothing else.
* **Duplicate rows** within a file for one (site, POC, day) -- AirData repeats a day when
  AQS and AirNow both report it or several sample durations exist -- keep the row with the
  highest ``Percent Complete``, then the highest ``Daily Obs Count``, then the first line.
  Completeness ranks first because a complete 24-h filter sample counts one observation
  while a partial day of hourly data counts many.
* **Several POCs** (collocated instruments) at one site: each day takes the value of the
  lowest POC that reported on that day. No averaging, so a day's value always comes from a
  single instrument, and gaps of the primary instrument are filled by the next one.

:func:`open_epa_daily` reads a folder (or a list of files) with
:func:`~geoclim.data.ingest.epa.read_epa_daily` and merges it here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from geoclim.data import variables
from geoclim.data.ingest._common import (
    ingest_error,
    most_frequent,
    regular_axis,
    scatter,
    station_dataset,
)
from geoclim.data.ingest.epa import (
    FIPS_COLUMNS,
    POLLUTANT_COLUMNS,
    SOURCE,
    STATION_COLUMNS,
    read_epa_daily,
    unit_factor,
)

log = logging.getLogger(__name__)

FILE_RULE = (
    "per (pollutant, site, POC, day) present in several files: the most recently modified "
    "file wins (equal times: the later path), the others' rows of that day are superseded"
)
DUPLICATE_RULE = (
    "per (site, POC, day) within a file: highest Percent Complete, then highest Daily Obs "
    "Count, then first line"
)
POC_RULE = "per (site, day): value of the lowest POC that reported"


@dataclass(frozen=True)
class Superseded:
    """Rows of one file replaced by another file's rows for the same (site, POC, day).

    Attributes:
        file: the file whose rows were superseded.
        by: the file whose rows were kept.
        rows: number of ``file``'s rows superseded.

    """

    file: str
    by: str
    rows: int

    def __str__(self) -> str:
        return f"{self.file}: {self.rows} row(s) superseded by {self.by}"


def file_ranks(names: Iterable[str], mtimes: Mapping[str, int] | None = None) -> dict[str, int]:
    """Rank files for the overlap rule: higher wins (later mtime, then later name)."""
    times = mtimes or {}
    order = sorted(set(names), key=lambda name: (times.get(name, 0), name))
    return {name: rank for rank, name in enumerate(order)}


def resolve_overlaps(tidy: pd.DataFrame) -> tuple[pd.DataFrame, list[Superseded]]:
    """Apply the file rule: per (variable, station, POC, day) keep the best-ranked file's rows.

    ``tidy`` carries ``order`` (the file's rank, higher wins) and ``file`` (its name).

    Returns:
        The kept rows and, per (superseded file, winning file), the rows superseded.

    """
    key = ["variable", "station", "poc", "time"]
    best = tidy.groupby(key, sort=False)["order"].transform("max")
    lost = (tidy["order"] < best).to_numpy()
    if not lost.any():
        return tidy, []
    winners = tidy.loc[~lost, [*key, "file"]].drop_duplicates(key).rename(columns={"file": "by"})
    losers = tidy.loc[lost, [*key, "file"]].merge(winners, on=key, how="left")
    counts = losers.groupby(["file", "by"]).size()
    return tidy.loc[~lost], [Superseded(f, b, int(n)) for (f, b), n in counts.items()]


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


def _annotate(ds: xr.Dataset, names: Iterable[str]) -> xr.Dataset:
    statistic = {v: c for c, v in POLLUTANT_COLUMNS.items()}
    for var in names:
        ds[var].attrs["epa_statistic"] = statistic[var]
    for name, (column, width) in FIPS_COLUMNS.items():
        ds[name].attrs.update(
            long_name=f"{column} ({width}-digit text, leading zeros kept)",
            comment="from the file's column, or else from the AQS site id",
        )
    return ds


def merge_epa_daily(
    tables: Mapping[str, pd.DataFrame],
    *,
    mtimes: Mapping[str, int] | None = None,
    source: str = "AirData",
) -> tuple[xr.Dataset, list[Superseded]]:
    """Merge tidy tables (from :func:`read_epa_daily`) into one station Dataset.

    Args:
        tables: file name -> tidy table.
        mtimes: file name -> modification time (ns) for the file rule; missing: equal.
        source: label for validation messages.

    Returns:
        The Dataset (dims ``(time, station)``, daily, regular, NaN gaps, one float32 variable
        per pollutant present, station coords :data:`STATION_COLUMNS`) and the superseded
        rows of the file rule.

    """
    tables = {name: t for name, t in tables.items() if len(t)}
    if not tables:
        raise ingest_error(source, None, "no data rows in any file")
    ranks = file_ranks(tables, mtimes)
    tidy = pd.concat(
        [t.assign(order=ranks[name], file=name) for name, t in tables.items()], ignore_index=True
    )
    tidy, superseded = resolve_overlaps(tidy)
    meta = most_frequent(tidy, "station", list(STATION_COLUMNS))
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
        "file_rule": FILE_RULE,
        "duplicate_rule": DUPLICATE_RULE,
        "poc_rule": POC_RULE,
    }
    ds = station_dataset(data, axis, meta[list(STATION_COLUMNS)], attrs, source=source)
    return _annotate(ds, data), superseded


def combine_epa_daily(
    tables: Mapping[str, pd.DataFrame],
    *,
    mtimes: Mapping[str, int] | None = None,
    source: str = "AirData",
) -> xr.Dataset:
    """The Dataset of :func:`merge_epa_daily` (superseded rows are logged)."""
    ds, superseded = merge_epa_daily(tables, mtimes=mtimes, source=source)
    for item in superseded:
        log.info("%s", item)
    return ds


def epa_files(
    folder: str | os.PathLike,
    pattern: str = "*.csv",
    *,
    recursive: bool = False,
    exclude: Iterable[str | os.PathLike] = (),
) -> list[Path]:
    """The CSV files of ``folder`` (and its subfolders if ``recursive``), sorted by path.

    Hidden files and folders (name starting with ``.``) and anything under ``exclude`` (the
    store or archive folder, say) are left out.
    """
    folder = Path(folder)
    skip = [Path(e).resolve() for e in exclude]
    found = folder.rglob(pattern) if recursive else folder.glob(pattern)
    files = []
    for path in found:
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        if any(path.resolve().is_relative_to(s) for s in skip):
            continue
        files.append(path)
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def open_epa_daily(
    paths: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    on_bad_rows: str = "reject",
    recursive: bool = False,
) -> xr.Dataset:
    """Read AirData daily CSV files (a folder or a list of files) into one station Dataset.

    Args:
        paths: a folder (all ``*.csv`` in it) or an iterable of files.
        on_bad_rows: see :func:`read_epa_daily`.
        recursive: read the folder's subfolders too.

    Returns:
        The canonical, validated station Dataset (see :func:`merge_epa_daily`); overlaps
        between files follow the file rule (later modified wins), whatever the order given.

    """
    if isinstance(paths, (str, os.PathLike)) and Path(paths).is_dir():
        folder = Path(paths)
        files = {
            p.relative_to(folder).as_posix(): p for p in epa_files(folder, recursive=recursive)
        }
        label = os.fspath(paths)
        if not files:
            raise ingest_error(label, None, "folder holds no *.csv files")
    else:
        items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        files = {Path(p).as_posix(): Path(p) for p in items}
        label = ", ".join(p.name for p in files.values())
    tables = {name: read_epa_daily(p, on_bad_rows=on_bad_rows) for name, p in files.items()}
    mtimes = {name: p.stat().st_mtime_ns for name, p in files.items()}
    return combine_epa_daily(tables, mtimes=mtimes, source=label)
