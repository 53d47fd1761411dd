"""How a store switches from one generation to the next, and how readers check it.

A store generation is ``manifest.json`` plus the ``stations.nc`` whose MD5 the manifest
records (``stations_md5``) plus the ``tables/`` it lists. A commit:

1. writes the new tables (content-addressed, each atomically; never overwriting),
2. writes the new ``stations.nc`` as ``.stations.nc.staged`` (atomically),
3. replaces ``manifest.json`` (atomically) -- **the commit point**,
4. renames ``.stations.nc.staged`` over ``stations.nc``.

An exception rolls back (new tables and the staged file removed, the old manifest put back).
A ``kill -9`` leaves at most: temp files of an atomic write (``.*.tmp``), a staged file, or
tables no manifest lists. :func:`recover` (run first by every ingest) removes them and, if
the kill came between steps 3 and 4, finishes step 4. Until then a reader sees a
``stations.nc`` whose MD5 differs from the manifest's: :func:`verify_stations` refuses it
with an error naming the file and the command that repairs it. One writer at a time: an
ingest holds an advisory lock on the store folder (released by the kernel on a kill).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import xarray as xr

from geoclim import fileio
from geoclim.data.ingest._common import md5_file
from geoclim.data.ingest.manifest import MANIFEST_NAME, Manifest
from geoclim.errors import IngestError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; one writer is then up to you
    fcntl = None  # type: ignore[assignment]

STATIONS_NAME = "stations.nc"
TABLES_DIR = "tables"
STAGED_NAME = f".{STATIONS_NAME}.staged"
LEGACY_BACKUP_NAME = f".{STATIONS_NAME}.bak"  # left by stores of geoclim <= 0.x; swept


@contextlib.contextmanager
def writer_lock(store_dir: Path) -> Iterator[None]:
    """Hold the store's writer lock (an exclusive ``flock`` on the folder itself).

    Raises:
        IngestError: if another ingest holds it.

    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(store_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IngestError(
                f"{store_dir}: another geoclim ingest is writing to this store; "
                "run again when it has finished"
            ) from None
        yield
    finally:
        os.close(fd)  # releases the lock


def ingest_running(store_dir: Path) -> bool:
    """Whether an ingest holds ``store_dir``'s writer lock right now."""
    if fcntl is None or not store_dir.is_dir():  # pragma: no cover
        return False
    fd = os.open(store_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def repair_command(store_dir: Path, manifest: Manifest) -> str:
    """The ``geoclim ingest`` command that repairs ``store_dir`` (last raw folder used)."""
    raw = manifest.raw_dir or "RAW_DIR"
    return f"geoclim ingest {shlex.quote(raw)} {shlex.quote(os.fspath(store_dir))}"


def _is_ingest_manifest(path: Path) -> bool:
    """Whether ``path`` is an ingest manifest (or unreadable: then it is taken as one)."""
    if not path.is_file():
        return False
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, OSError):
        return True  # Manifest.load names the problem
    return isinstance(raw, dict) and {"files", "stations_md5"} <= raw.keys()


def verify_stations(path: str | os.PathLike) -> None:
    """Refuse a store's ``stations.nc`` that its manifest does not describe.

    A no-op for any file that is not ``stations.nc`` beside an ingest ``manifest.json`` (a
    ``manifest.json`` without ``files`` and ``stations_md5`` belongs to something else).

    Raises:
        IngestError: naming the file, the checksums and the command that repairs the store.

    """
    path = Path(path)
    manifest_path = path.parent / MANIFEST_NAME
    if path.name != STATIONS_NAME or not _is_ingest_manifest(manifest_path):
        return
    manifest = Manifest.load(manifest_path)
    actual = md5_file(path) if path.is_file() else None
    if actual is not None and actual == manifest.stations_md5:
        return
    store = path.parent
    if ingest_running(store):
        raise IngestError(f"{path}: an ingest into {store} is running; open it when it is done")
    state = "is missing" if actual is None else f"has MD5 {actual}"
    raise IngestError(
        f"{path} {state}, but {manifest_path} records {manifest.stations_md5}: an ingest was "
        f"interrupted or the file was changed by hand. Repair the store with "
        f"`{repair_command(store, manifest)}` (it finishes the interrupted commit or rebuilds "
        f"{STATIONS_NAME} from {store / TABLES_DIR}; files no longer in the raw folder keep "
        "their rows)"
    )


def consistent(store_dir: Path, manifest: Manifest) -> bool:
    """Whether ``stations.nc`` is the file the manifest describes."""
    stations = store_dir / STATIONS_NAME
    return stations.is_file() and md5_file(stations) == manifest.stations_md5


def collect_garbage(store_dir: Path, manifest: Manifest) -> list[Path]:
    """Remove tables the manifest does not list; return them."""
    keep = {rec.table for rec in manifest.files.values()}
    stale = [
        p
        for p in sorted((store_dir / TABLES_DIR).glob("*.csv.gz"))
        if f"{TABLES_DIR}/{p.name}" not in keep
    ]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def recover(store_dir: Path, manifest: Manifest) -> list[str]:
    """Clean up after an interrupted commit; finish it if it passed its commit point.

    Returns:
        One line per action taken, for the report (empty if the store was clean).

    """
    done = []
    for folder in (store_dir, store_dir / TABLES_DIR):
        done += [f"removed temp file {p}" for p in fileio.sweep_temp_files(folder)]
    legacy = store_dir / LEGACY_BACKUP_NAME
    if legacy.exists():
        legacy.unlink()
        done.append(f"removed backup {legacy}")
    staged = store_dir / STAGED_NAME
    if staged.exists():
        if manifest.stations_md5 == md5_file(staged) and not consistent(store_dir, manifest):
            os.replace(staged, store_dir / STATIONS_NAME)
            done.append(f"finished the interrupted commit: {STATIONS_NAME} matches the manifest")
        else:
            staged.unlink()
            done.append(f"removed {staged} of a commit that did not finish")
    done += [f"removed unlisted table {p}" for p in collect_garbage(store_dir, manifest)]
    return done


def commit(
    store_dir: Path,
    tables: Mapping[str, bytes],
    ds: xr.Dataset,
    manifest: Manifest,
    previous: str | None,
    write_netcdf: Callable[[xr.Dataset, Path], object],
) -> None:
    """Switch the store to a new generation (see the module docstring); roll back on error.

    Args:
        store_dir: the store folder (exists).
        tables: table path relative to the store -> gzip'd CSV bytes.
        ds: the new ``stations.nc`` content.
        manifest: the new manifest (its ``stations_md5`` is set here).
        previous: the text of the manifest being replaced (``None`` for a new store).
        write_netcdf: writes ``ds`` to a path atomically
            (:func:`geoclim.data.sources.write_netcdf`; passed in because sources calls
            :func:`verify_stations`).

    """
    manifest_path = store_dir / MANIFEST_NAME
    staged = store_dir / STAGED_NAME
    tables_dir = store_dir / TABLES_DIR
    made_tables = not tables_dir.exists()
    created: list[Path] = []
    saved = False
    try:
        tables_dir.mkdir(exist_ok=True)
        for name, payload in tables.items():
            if not (store_dir / name).exists():  # content-addressed: same name, same bytes
                created.append(fileio.write_bytes(store_dir / name, payload))
        write_netcdf(ds, staged)
        manifest.stations_md5 = md5_file(staged)
        manifest.save(manifest_path)  # the commit point: a later run finishes from here
        saved = True
        os.replace(staged, store_dir / STATIONS_NAME)
    except BaseException:
        if saved:
            if previous is None:
                manifest_path.unlink(missing_ok=True)
            else:
                fileio.write_text(manifest_path, previous)
        staged.unlink(missing_ok=True)
        for path in created:
            path.unlink(missing_ok=True)
        if made_tables and tables_dir.exists() and not any(tables_dir.iterdir()):
            tables_dir.rmdir()
        raise
