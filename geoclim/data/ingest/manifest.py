"""The ingest manifest: which raw files a store holds, by content hash, as one JSON file.

``store_dir/manifest.json`` looks like::

    {"version": 1, "stations_md5": "<md5 of stations.nc>", "updated_at": "...Z",
     "files": {"pm25_nc_2024.csv": {"md5": "...", "size": 1234, "rows": 366,
                                    "pollutant": "pm25", "sites": ["370630015", ...],
                                    "time_start": "2024-01-01", "time_end": "2024-12-31",
                                    "ingested_at": "2024-05-01T12:00:00Z",
                                    "table": "tables/<md5>.csv.gz",
                                    "mtime_ns": 1714564800000000000, "dropped_rows": 0}},
     "raw_dir": "/data/airdata"}

Files are keyed by their path relative to the raw folder (POSIX separators); a key whose MD5
changed is re-ingested and replaces its rows. ``mtime_ns`` (the file's modification time when
it was ingested) ranks files for the overlap rule of :mod:`~geoclim.data.ingest.epa_merge`,
so the store depends only on its manifest and tables. ``stations_md5`` is the checksum of the
``stations.nc`` this manifest describes: readers refuse any other (see
:func:`geoclim.data.ingest.store.verify_stations`), and the next ingest repairs it.
``raw_dir`` is the folder of the last ingest, quoted in recovery hints.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from geoclim import fileio
from geoclim.errors import IngestError

MANIFEST_NAME = "manifest.json"
VERSION = 1


def utc_now() -> str:
    """The current UTC time as ISO 8601 with a ``Z`` suffix, to the second."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FileRecord:
    """What the store knows of one ingested raw file.

    Attributes:
        md5: hex MD5 of the file's bytes.
        size: bytes.
        rows: data rows kept (rows with a value).
        pollutant: canonical variable name.
        sites: sorted station ids in the file.
        time_start: first day (ISO date).
        time_end: last day (ISO date).
        ingested_at: UTC time of ingestion (ISO 8601).
        table: the parsed tidy table, relative to the store folder.
        mtime_ns: the raw file's modification time (ns since the epoch) when ingested.
        dropped_rows: bad rows left out (``--on-bad-rows=skip``).

    """

    md5: str
    size: int
    rows: int
    pollutant: str
    sites: tuple[str, ...]
    time_start: str
    time_end: str
    ingested_at: str
    table: str
    mtime_ns: int = 0
    dropped_rows: int = 0


@dataclass
class Manifest:
    """All :class:`FileRecord` of a store, keyed by path relative to the raw folder."""

    files: dict[str, FileRecord] = field(default_factory=dict)
    stations_md5: str | None = None
    updated_at: str | None = None
    raw_dir: str | None = None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Manifest:
        """Read a manifest; a missing file is an empty manifest.

        Raises:
            IngestError: if the file is not a manifest this version can read.

        """
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if raw.get("version") != VERSION:
                raise ValueError(f"version {raw.get('version')!r}, expected {VERSION}")
            files = {
                key: FileRecord(**{**rec, "sites": tuple(rec["sites"])})
                for key, rec in raw["files"].items()
            }
        except (ValueError, KeyError, TypeError) as err:
            raise IngestError(f"{path}: not a readable ingest manifest ({err})") from None
        return cls(files, raw.get("stations_md5"), raw.get("updated_at"), raw.get("raw_dir"))

    def to_json(self) -> str:
        """The manifest as sorted, indented JSON text."""
        payload = {
            "version": VERSION,
            "stations_md5": self.stations_md5,
            "updated_at": self.updated_at,
            "raw_dir": self.raw_dir,
            "files": {key: asdict(rec) for key, rec in sorted(self.files.items())},
        }
        return json.dumps(payload, indent=2, sort_keys=True) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file in the same folder, then ``os.replace``)."""
        return fileio.write_text(path, self.to_json())
