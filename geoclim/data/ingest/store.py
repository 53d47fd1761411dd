"""Incremental, crash-safe ingestion of a folder of AirData CSVs into a station store.

A store folder holds::

    manifest.json            which raw files are in, by MD5 (see ingest.manifest)
    tables/<md5>.csv.gz      each raw file's parsed tidy table (canonical units)
    stations.nc              the combined station Dataset, rebuilt from all tables

:func:`ingest_folder` hashes every ``*.csv`` of the raw folder. Unchanged files (same relative
path and MD5) are skipped; new files are added; a changed file replaces its rows. Files that
left the raw folder (for instance into the archive) keep their rows. ``stations.nc`` is always
rebuilt from all tables taken in key order, so the result does not depend on the order in
which files arrived.

Crash safety: every file is parsed and the new Dataset built in memory before anything is
written. Then new tables are written (content-addressed, never overwriting), ``stations.nc``
is staged and swapped in, and ``manifest.json`` is replaced last. An exception at any point
rolls back: new tables are removed and the previous ``stations.nc`` is restored from a hard
link, so store and manifest stay byte-identical. A hard kill between the last two renames
leaves a ``stations.nc`` whose MD5 differs from the manifest's ``stations_md5``; the next run
notices and rebuilds it from the tables. One writer at a time per store.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from geoclim import fileio
from geoclim.data.ingest._common import ingest_error, md5_file
from geoclim.data.ingest.epa import TIDY_COLUMNS, combine_epa_daily, epa_files, read_epa_daily
from geoclim.data.ingest.manifest import (
    MANIFEST_NAME,
    FileRecord,
    Manifest,
    utc_now,
)
from geoclim.data.sources import open_dataset, write_netcdf

log = logging.getLogger(__name__)

STATIONS_NAME = "stations.nc"
TABLES_DIR = "tables"
_STRING_COLUMNS = ("station", "variable", "site_name", "state", "units")


@dataclass(frozen=True)
class IngestReport:
    """What one :func:`ingest_folder` call did.

    Attributes:
        store_dir: the store folder.
        ingested: keys (paths relative to the raw folder) added for the first time.
        replaced: keys whose content changed and whose rows were replaced.
        skipped: keys unchanged since the last ingest (no-op).
        archived: keys moved into the archive folder.
        rebuilt: whether ``stations.nc`` and the manifest were rewritten.
        stations: stations in the store.
        times: days on the store's time axis.
        variables: variables in the store.

    """

    store_dir: Path
    ingested: tuple[str, ...] = ()
    replaced: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    archived: tuple[str, ...] = ()
    rebuilt: bool = False
    stations: int = 0
    times: int = 0
    variables: tuple[str, ...] = ()

    def __str__(self) -> str:
        return (
            f"{self.store_dir}: {len(self.ingested)} new, {len(self.replaced)} replaced, "
            f"{len(self.skipped)} skipped, {len(self.archived)} archived; "
            f"{self.stations} stations x {self.times} days, variables {list(self.variables)}"
        )


def table_bytes(tidy: pd.DataFrame) -> bytes:
    """Serialise a tidy table as gzip'd CSV (deterministic bytes, float round-trip exact)."""
    text = tidy.loc[:, list(TIDY_COLUMNS)].to_csv(index=False, date_format="%Y-%m-%d")
    return gzip.compress(text.encode("utf-8"), mtime=0)


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`table_bytes`."""
    if not path.exists():
        raise ingest_error(
            path,
            None,
            "table listed in the manifest is missing; the store is "
            "damaged (delete it and ingest again)",
        )
    tidy = pd.read_csv(
        path,
        dtype={c: str for c in _STRING_COLUMNS},
        keep_default_na=False,
        na_values=[""],
        compression="gzip",
    )
    tidy["time"] = pd.to_datetime(tidy["time"], format="%Y-%m-%d").astype("datetime64[ns]")
    return tidy


def open_store(store_dir: str | os.PathLike) -> xr.Dataset:
    """Open ``store_dir/stations.nc`` as a validated canonical Dataset."""
    return open_dataset(Path(store_dir) / STATIONS_NAME)


def _record(tidy: pd.DataFrame, md5: str, size: int, table: str) -> FileRecord:
    return FileRecord(
        md5=md5,
        size=size,
        rows=len(tidy),
        pollutant=str(tidy["variable"].iloc[0]),
        sites=tuple(sorted(tidy["station"].unique())),
        time_start=tidy["time"].min().strftime("%Y-%m-%d"),
        time_end=tidy["time"].max().strftime("%Y-%m-%d"),
        ingested_at=utc_now(),
        table=table,
    )


def _consistent(store_dir: Path, manifest: Manifest) -> bool:
    stations = store_dir / STATIONS_NAME
    return stations.exists() and md5_file(stations) == manifest.stations_md5


def _commit(store_dir: Path, tables: dict[str, bytes], ds: xr.Dataset, manifest: Manifest) -> None:
    """Write tables, swap in ``stations.nc``, replace the manifest; roll back on any error."""
    stations = store_dir / STATIONS_NAME
    staged = store_dir / f".{STATIONS_NAME}.staged"
    backup = store_dir / f".{STATIONS_NAME}.bak"
    tables_dir = store_dir / TABLES_DIR
    made_store, made_tables = not store_dir.exists(), not tables_dir.exists()
    had_stations = stations.exists()
    created: list[Path] = []
    try:
        tables_dir.mkdir(parents=True, exist_ok=True)
        for name, payload in tables.items():
            if not (store_dir / name).exists():  # content-addressed: same name, same bytes
                created.append(fileio.write_bytes(store_dir / name, payload))
        write_netcdf(ds, staged)
        manifest.stations_md5 = md5_file(staged)
        backup.unlink(missing_ok=True)
        if had_stations:
            try:
                os.link(stations, backup)
            except OSError:  # filesystems without hard links
                shutil.copy2(stations, backup)
        os.replace(staged, stations)
        manifest.save(store_dir / MANIFEST_NAME)
    except BaseException:
        if had_stations and backup.exists():
            os.replace(backup, stations)
        elif not had_stations:
            stations.unlink(missing_ok=True)
        staged.unlink(missing_ok=True)
        for path in created:
            path.unlink(missing_ok=True)
        if made_tables and tables_dir.exists() and not any(tables_dir.iterdir()):
            tables_dir.rmdir()
        if made_store and store_dir.exists() and not any(store_dir.iterdir()):
            store_dir.rmdir()
        raise
    backup.unlink(missing_ok=True)


def _collect_garbage(store_dir: Path, manifest: Manifest) -> None:
    keep = {rec.table for rec in manifest.files.values()}
    for path in (store_dir / TABLES_DIR).glob("*.csv.gz"):
        if f"{TABLES_DIR}/{path.name}" not in keep:
            path.unlink(missing_ok=True)


def _archive(files: dict[str, Path], hashes: dict[str, str], archive_dir: Path) -> list[str]:
    """Move raw files into ``archive_dir`` (same relative path; a clash gets an MD5 suffix)."""
    moved = []
    for key, path in files.items():
        target = archive_dir / key
        if target.exists():
            if md5_file(target) == hashes[key]:
                path.unlink()
                moved.append(key)
                continue
            target = target.with_name(f"{target.stem}.{hashes[key][:8]}{target.suffix}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
        moved.append(key)
    return moved


def _rebuild(
    store_dir: Path,
    manifest: Manifest,
    parsed: dict[str, pd.DataFrame],
    files: dict[str, Path],
    hashes: dict[str, str],
    label: str,
) -> Manifest:
    """Combine stored and freshly parsed tables, commit them; return the new manifest."""
    updated = Manifest(dict(manifest.files), updated_at=utc_now())
    payloads = {}
    for key, tidy in parsed.items():
        if tidy.empty:
            raise ingest_error(files[key], None, "no rows with a value")
        name = f"{TABLES_DIR}/{hashes[key]}.csv.gz"
        payloads[name] = table_bytes(tidy)
        updated.files[key] = _record(tidy, hashes[key], files[key].stat().st_size, name)
    # key order, not arrival order, decides ties: the store depends only on its contents
    tables = [
        parsed[k] if k in parsed else read_table(store_dir / updated.files[k].table)
        for k in sorted(updated.files)
    ]
    ds = combine_epa_daily(tables, source=label)
    ds.attrs["ingest_manifest"] = MANIFEST_NAME
    _commit(store_dir, payloads, ds, updated)
    try:
        _collect_garbage(store_dir, updated)
    except OSError as err:  # committed already; stale tables are harmless
        log.warning("could not remove stale tables in %s: %s", store_dir, err)
    return updated


def ingest_folder(
    raw_dir: str | os.PathLike,
    store_dir: str | os.PathLike,
    *,
    archive_dir: str | os.PathLike | None = None,
    pattern: str = "*.csv",
) -> IngestReport:
    """Ingest new and changed AirData daily CSVs of ``raw_dir`` into the store ``store_dir``.

    Args:
        raw_dir: folder of AirData daily CSV files (``pattern`` matched, not recursive).
        store_dir: the store folder (created if needed).
        archive_dir: if given, every processed raw file (new, replaced or unchanged) is moved
            there after a successful commit, keeping its relative path.
        pattern: glob of raw files within ``raw_dir``.

    Returns:
        An :class:`IngestReport`; ``rebuilt`` is false when nothing changed (nothing written).

    Raises:
        IngestError: for a malformed raw file (the store is left untouched) or a damaged store.

    """
    raw_dir, store_dir = Path(raw_dir), Path(store_dir)
    if not raw_dir.is_dir():
        raise ingest_error(raw_dir, None, "raw folder does not exist")
    manifest = Manifest.load(store_dir / MANIFEST_NAME)
    files = {p.relative_to(raw_dir).as_posix(): p for p in epa_files(raw_dir, pattern)}
    hashes = {key: md5_file(path) for key, path in files.items()}
    known = manifest.files
    skipped = [k for k in files if k in known and known[k].md5 == hashes[k]]
    replaced = [k for k in files if k in known and known[k].md5 != hashes[k]]
    new = [k for k in files if k not in known]
    parsed = {key: read_epa_daily(files[key]) for key in (*new, *replaced)}  # may raise

    rebuilt = bool(parsed) or (bool(known) and not _consistent(store_dir, manifest))
    if rebuilt:
        manifest = _rebuild(store_dir, manifest, parsed, files, hashes, os.fspath(raw_dir))
        log.info(
            "ingested %d new and %d changed file(s) into %s", len(new), len(replaced), store_dir
        )
    archived = _archive(files, hashes, Path(archive_dir)) if archive_dir is not None else []

    stations = times = 0
    names: tuple[str, ...] = ()
    if manifest.files:
        with xr.open_dataset(store_dir / STATIONS_NAME, engine="netcdf4") as ds:
            stations, times = ds.sizes["station"], ds.sizes["time"]
            names = tuple(str(v) for v in ds.data_vars)
    return IngestReport(
        store_dir,
        tuple(new),
        tuple(replaced),
        tuple(skipped),
        tuple(archived),
        rebuilt,
        stations,
        times,
        names,
    )
