"""Raw-file ingestion: monitoring-network CSVs -> canonical station Datasets.

* :mod:`~geoclim.data.ingest.epa` -- US EPA AirData daily CSVs, every row checked;
  :mod:`~geoclim.data.ingest.epa_merge` -- several pollutants, states and revisions -> one
  daily station Dataset.
* :mod:`~geoclim.data.ingest.naps` -- Canadian NAPS hourly wide CSVs (-> UTC hourly).
* :mod:`~geoclim.data.ingest.openair` -- the openair London Marylebone Road example data.
* :mod:`~geoclim.data.ingest.store`, :mod:`~geoclim.data.ingest.manifest` and
  :mod:`~geoclim.data.ingest.generation` -- incremental, crash-safe ingestion of a folder of
  AirData files into ``store_dir/stations.nc``; bad files are reported
  (:mod:`~geoclim.data.ingest.problems`, :mod:`~geoclim.data.ingest.report`), never blocking.

Every reader raises :class:`geoclim.errors.IngestError` naming file, line and expectation,
and returns a Dataset that passes :func:`geoclim.data.schema.validate`.
"""

from geoclim.data.ingest.epa import parse_epa_daily, read_epa_daily
from geoclim.data.ingest.epa_merge import combine_epa_daily, merge_epa_daily, open_epa_daily
from geoclim.data.ingest.generation import verify_stations
from geoclim.data.ingest.manifest import FileRecord, Manifest
from geoclim.data.ingest.naps import open_naps_hourly, utc_offsets
from geoclim.data.ingest.openair import open_openair
from geoclim.data.ingest.report import EXIT_OK, EXIT_PARTIAL, IngestReport
from geoclim.data.ingest.store import ingest_folder, open_store

__all__ = [
    "EXIT_OK",
    "EXIT_PARTIAL",
    "FileRecord",
    "IngestReport",
    "Manifest",
    "combine_epa_daily",
    "ingest_folder",
    "merge_epa_daily",
    "open_epa_daily",
    "open_naps_hourly",
    "open_openair",
    "open_store",
    "parse_epa_daily",
    "read_epa_daily",
    "utc_offsets",
    "verify_stations",
]
