"""Incremental, crash-safe ingestion of a folder of AirData CSVs into a station store.

A store folder holds::

    manifest.json            which raw files are in, by MD5 (see ingest.manifest)
    tables/<md5>.csv.gz      each raw file's parsed tidy table (canonical units)
    stations.nc              the combined station Dataset, rebuilt from all tables

:func:`ingest_folder` hashes every ``*.csv`` of the raw folder (and its subfolders with
``recursive=True``; hidden files and the store and archive folders are left out). Unchanged
files (same relative path and MD5) are skipped; new files are added; a changed file
replaces its rows. Files that left the raw folder (for instance into the archive) keep their
rows. ``stations.nc`` is always rebuilt from all tables, so the result depends only on the
store's contents, not on the order in which files arrived; where files overlap, the file
rule of :mod:`~geoclim.data.ingest.epa_merge` decides (later modified wins) and the report
names the superseded rows.

**Bad files never block good ones.** Every file is checked row by row; a file with bad lines
is rejected (``on_bad_rows="reject"``, the default) or ingested without them (``"skip"``),
and the report lists each such file with all its bad lines (the first 20 quoted, plus a
count). A rejected file that was ingested before keeps its previous version in the store;
a rejected file is not archived.

Crash safety (:mod:`~geoclim.data.ingest.generation`): each run takes the store's writer
lock, cleans up after any interrupted run, and switches generations with the manifest as
the commit point; readers (:func:`open_store`, ``geoclim summary``, ``data/source``) check
``stations.nc`` against the manifest's checksum.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import xarray as xr

from geoclim.data.ingest import generation
from geoclim.data.ingest._common import FileError, ingest_error, md5_file
from geoclim.data.ingest.epa import (
    TIDY_COLUMNS,
    ParsedFile,
    check_on_bad_rows,
    parse_epa_daily,
)
from geoclim.data.ingest.epa_merge import Superseded, epa_files, merge_epa_daily
from geoclim.data.ingest.generation import STATIONS_NAME, TABLES_DIR
from geoclim.data.ingest.manifest import MANIFEST_NAME, FileRecord, Manifest, utc_now
from geoclim.data.ingest.problems import BadLine, FileProblems
from geoclim.data.ingest.report import IngestReport
from geoclim.data.sources import open_dataset, write_netcdf

log = logging.getLogger(__name__)

_STRING_COLUMNS = ("station", "variable", "site_name", "state", "state_fips", "county_fips")


def table_bytes(tidy: pd.DataFrame) -> bytes:
    """Serialise a tidy table as gzip'd CSV (deterministic bytes, float round-trip exact)."""
    text = tidy.loc[:, list(TIDY_COLUMNS)].to_csv(index=False, date_format="%Y-%m-%d")
    return gzip.compress(text.encode("utf-8"), mtime=0)


def read_table(path: Path) -> pd.DataFrame:
    """Read a table written by :func:`table_bytes` (older tables get FIPS from the site id)."""
    if not path.exists():
        raise ingest_error(
            path,
            None,
            "table listed in the manifest is missing; the store is "
            "damaged (delete it and ingest again)",
        )
    tidy = pd.read_csv(
        path,
        dtype={c: str for c in (*_STRING_COLUMNS, "units")},
        keep_default_na=False,
        na_values=[""],
        compression="gzip",
        float_precision="round_trip",
    )
    tidy["time"] = pd.to_datetime(tidy["time"], format="%Y-%m-%d").astype("datetime64[ns]")
    if "state_fips" not in tidy:  # tables written before FIPS codes were kept
        tidy["state_fips"] = tidy["station"].str.slice(0, 2)
        tidy["county_fips"] = tidy["station"].str.slice(2, 5)
    return tidy.loc[:, list(TIDY_COLUMNS)]


def open_store(store_dir: str | os.PathLike) -> xr.Dataset:
    """Open ``store_dir/stations.nc`` as a validated canonical Dataset.

    Raises:
        IngestError: if ``store_dir`` is not a store, or its ``stations.nc`` is not the one
            its manifest describes (with the command that repairs it).

    """
    store = Path(store_dir)
    if not (store / MANIFEST_NAME).is_file():
        raise ingest_error(
            store,
            None,
            f"not an ingest store (no {MANIFEST_NAME}); build one with "
            f"`geoclim ingest RAW_DIR {store}`",
        )
    generation.verify_stations(store / STATIONS_NAME)
    return open_dataset(store / STATIONS_NAME)


def _record(key: str, parsed: ParsedFile, md5: str, stat: os.stat_result) -> FileRecord:
    tidy = parsed.tidy
    return FileRecord(
        md5=md5,
        size=stat.st_size,
        rows=len(tidy),
        pollutant=str(tidy["variable"].iloc[0]),
        sites=tuple(sorted(tidy["station"].unique())),
        time_start=tidy["time"].min().strftime("%Y-%m-%d"),
        time_end=tidy["time"].max().strftime("%Y-%m-%d"),
        ingested_at=utc_now(),
        table=f"{TABLES_DIR}/{md5}.csv.gz",
        mtime_ns=stat.st_mtime_ns,
        dropped_rows=parsed.problems.count if parsed.problems else 0,
    )


def _hash(
    raw_dir: Path, found: list[Path]
) -> tuple[dict[str, Path], dict[str, str], list[FileProblems]]:
    """Key and MD5 of every raw file; a file that cannot be read is rejected, not fatal."""
    files, hashes, unreadable = {}, {}, []
    for path in found:
        key = path.relative_to(raw_dir).as_posix()
        try:
            hashes[key] = md5_file(path)
        except OSError as err:
            unreadable.append(FileProblems.whole_file(key, f"cannot be read: {err.strerror}"))
            continue
        files[key] = path
    return files, hashes, unreadable


def _parse(
    todo: dict[str, Path], on_bad_rows: str
) -> tuple[dict[str, ParsedFile], list[FileProblems], list[FileProblems]]:
    """Parse every file; sort them into ingestible, rejected and ingested-with-drops."""
    parsed, rejected, dropped = {}, [], []
    for key, path in todo.items():
        try:
            result = parse_epa_daily(path)
        except FileError as err:
            rejected.append(FileProblems(key, 1, (BadLine(err.line, err.detail),)))
            continue
        except OSError as err:  # vanished or unreadable since it was hashed
            rejected.append(FileProblems.whole_file(key, f"cannot be read: {err.strerror}"))
            continue
        problems = result.problems.with_path(key) if result.problems else None
        if problems is not None and on_bad_rows == "reject":
            rejected.append(problems)
        elif result.tidy.empty:
            no_value = FileProblems.whole_file(key, "no valid row with a value")
            rejected.append(problems or no_value)
        else:
            parsed[key] = result
            if problems is not None:
                dropped.append(problems)
    return parsed, rejected, dropped


def _rebuild(
    store_dir: Path,
    manifest: Manifest,
    parsed: dict[str, ParsedFile],
    files: dict[str, Path],
    hashes: dict[str, str],
    raw_dir: Path,
) -> tuple[Manifest, list[Superseded]]:
    """Combine stored and freshly parsed tables, commit them; return the new manifest."""
    updated = Manifest(
        dict(manifest.files), updated_at=utc_now(), raw_dir=os.fspath(raw_dir.resolve())
    )
    payloads = {}
    for key, result in parsed.items():
        record = _record(key, result, hashes[key], files[key].stat())
        payloads[record.table] = table_bytes(result.tidy)
        updated.files[key] = record
    tables = {
        key: parsed[key].tidy if key in parsed else read_table(store_dir / rec.table)
        for key, rec in sorted(updated.files.items())
    }
    mtimes = {key: rec.mtime_ns for key, rec in updated.files.items()}
    ds, superseded = merge_epa_daily(tables, mtimes=mtimes, source=os.fspath(raw_dir))
    ds.attrs["ingest_manifest"] = MANIFEST_NAME
    path = store_dir / MANIFEST_NAME
    previous = path.read_text(encoding="utf-8") if path.exists() else None
    generation.commit(store_dir, payloads, ds, updated, previous, write_netcdf)
    try:
        generation.collect_garbage(store_dir, updated)
    except OSError as err:  # committed already; stale tables are harmless and swept next run
        log.warning("could not remove stale tables in %s: %s", store_dir, err)
    return updated, superseded


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


def _contents(store_dir: Path, manifest: Manifest) -> tuple[int, int, tuple[str, ...]]:
    if not manifest.files:
        return 0, 0, ()
    with xr.open_dataset(store_dir / STATIONS_NAME, engine="netcdf4") as ds:
        return ds.sizes["station"], ds.sizes["time"], tuple(str(v) for v in ds.data_vars)


def ingest_folder(
    raw_dir: str | os.PathLike,
    store_dir: str | os.PathLike,
    *,
    archive_dir: str | os.PathLike | None = None,
    pattern: str = "*.csv",
    recursive: bool = False,
    on_bad_rows: str = "reject",
) -> IngestReport:
    """Ingest new and changed AirData daily CSVs of ``raw_dir`` into the store ``store_dir``.

    Args:
        raw_dir: folder of AirData daily CSV files (``pattern`` matched).
        store_dir: the store folder (created if needed).
        archive_dir: if given, every raw file now in the store (new, replaced or unchanged;
            not the rejected ones) is moved there after the commit, keeping its relative path.
        pattern: glob of raw files within ``raw_dir`` (and its subfolders if ``recursive``).
        recursive: read subfolders too; keys are paths relative to ``raw_dir``.
        on_bad_rows: ``"reject"`` leaves out a file with any bad line; ``"skip"`` ingests
            its valid rows. Either way the report lists the bad lines.

    Returns:
        An :class:`~geoclim.data.ingest.report.IngestReport`; ``rebuilt`` is false when
        nothing changed (nothing written), ``partial`` when files or rows were left out.

    Raises:
        IngestError: for a missing raw folder, a damaged store or another ingest running.
        ConfigError: for an unknown ``on_bad_rows``.

    """
    check_on_bad_rows(on_bad_rows)
    raw_dir, store_dir = Path(raw_dir), Path(store_dir)
    if not raw_dir.is_dir():
        raise ingest_error(raw_dir, None, "raw folder does not exist")
    if store_dir.exists() and not store_dir.is_dir():
        raise ingest_error(store_dir, None, "is a file; expected a store folder")
    made = not store_dir.exists()
    store_dir.mkdir(parents=True, exist_ok=True)
    try:
        with generation.writer_lock(store_dir):
            archive = Path(archive_dir) if archive_dir is not None else None
            report = _ingest(raw_dir, store_dir, archive, pattern, recursive, on_bad_rows)
    finally:
        if made and store_dir.is_dir() and not any(store_dir.iterdir()):
            store_dir.rmdir()
    if report.partial:
        log.warning(
            "partial ingest into %s: %d file(s) rejected, %d file(s) with rows dropped",
            store_dir,
            len(report.rejected),
            len(report.dropped),
        )
    return report


def _ingest(
    raw_dir: Path,
    store_dir: Path,
    archive_dir: Path | None,
    pattern: str,
    recursive: bool,
    on_bad_rows: str,
) -> IngestReport:
    exclude = [store_dir] if archive_dir is None else [store_dir, archive_dir]
    manifest = Manifest.load(store_dir / MANIFEST_NAME)
    recovered = generation.recover(store_dir, manifest)
    found = epa_files(raw_dir, pattern, recursive=recursive, exclude=exclude)
    files, hashes, unreadable = _hash(raw_dir, found)
    known = manifest.files
    skipped = [k for k in files if k in known and known[k].md5 == hashes[k]]
    todo = {k: p for k, p in files.items() if k not in known or known[k].md5 != hashes[k]}
    parsed, rejected, dropped = _parse(todo, on_bad_rows)
    rejected = unreadable + rejected

    superseded: list[Superseded] = []
    repair = bool(known) and not generation.consistent(store_dir, manifest)
    if repair:
        recovered.append(f"rebuilt {STATIONS_NAME} from the tables: it did not match the manifest")
    rebuilt = bool(parsed) or repair
    if rebuilt:
        manifest, superseded = _rebuild(store_dir, manifest, parsed, files, hashes, raw_dir)
        log.info("ingested %d file(s) into %s", len(parsed), store_dir)
    archived = []
    if archive_dir is not None:
        kept = {k: files[k] for k in files if k in skipped or k in parsed}
        archived = _archive(kept, hashes, archive_dir)
    stations, times, names = _contents(store_dir, manifest)
    return IngestReport(
        store_dir,
        ingested=tuple(k for k in parsed if k not in known),
        replaced=tuple(k for k in parsed if k in known),
        skipped=tuple(skipped),
        archived=tuple(archived),
        rejected=tuple(rejected),
        dropped=tuple(dropped),
        superseded=tuple(superseded),
        recovered=tuple(recovered),
        rebuilt=rebuilt,
        stations=stations,
        times=times,
        variables=names,
        kept_previous=tuple(p.path for p in rejected if p.path in known),
    )
