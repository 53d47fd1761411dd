"""Raw-file ingestion: monitoring-network CSVs -> canonical station Datasets.

* :mod:`~geoclim.data.ingest.epa` -- US EPA AirData daily CSVs (several pollutants and states
  -> one daily station Dataset).
* :mod:`~geoclim.data.ingest.naps` -- Canadian NAPS hourly wide CSVs (-> UTC hourly).
* :mod:`~geoclim.data.ingest.openair` -- the openair London Marylebone Road example data.
* :mod:`~geoclim.data.ingest.store` and :mod:`~geoclim.data.ingest.manifest` -- incremental,
  crash-safe ingestion of a folder of AirData files into ``store_dir/stations.nc``.

Every reader raises :class:`geoclim.errors.IngestError` naming file, line and expectation,
and returns a Dataset that passes :func:`geoclim.data.schema.validate`.
"""

from geoclim.data.ingest.epa import combine_epa_daily, open_epa_daily, read_epa_daily
from geoclim.data.ingest.manifest import FileRecord, Manifest
from geoclim.data.ingest.naps import open_naps_hourly, utc_offsets
from geoclim.data.ingest.openair import open_openair
from geoclim.data.ingest.store import IngestReport, ingest_folder, open_store

__all__ = [
    "FileRecord",
    "IngestReport",
    "Manifest",
    "combine_epa_daily",
    "ingest_folder",
    "open_epa_daily",
    "open_naps_hourly",
    "open_openair",
    "open_store",
    "read_epa_daily",
    "utc_offsets",
]
