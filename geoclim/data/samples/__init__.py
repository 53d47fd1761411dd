"""Bundled real data: small canonical netCDF files that ship with the package.

==============  ==========================  ==================================================
name            file                        content
==============  ==========================  ==================================================
naps_no2        naps_no2_2023.nc            NAPS (Canada) hourly NO2, 196 stations, 2023, UTC
naps_no2_grid   naps_no2_2023_grid.nc       the same gridded over 42-47 N, 84-71 W at 0.5 deg
                                            (IDW, 75 km), with a ``coverage`` mask
london          london_marylebone.nc        openair's London Marylebone Road, hourly
                                            1998-2005: nox, no2, o3, so2, co, pm10, pm25, ws, wd
==============  ==========================  ==================================================

All times are hour-beginning UTC. Files are opened with ``xarray.open_dataset`` and checked
with :func:`geoclim.data.schema.validate` (they are written canonical). ``catalog.json``
(written with the files by ``scripts/build_samples.py``) describes each sample: source,
licence, dims, variables.
Licences: NAPS data under the Open Government Licence - Canada; the openair data as
distributed in openair / bivapp (MIT for the package).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import xarray as xr

from geoclim.data import schema
from geoclim.errors import ConfigError

CATALOG_NAME = "catalog.json"

NAPS_GRID_BOX = dict(lat_min=42.0, lat_max=47.0, lon_min=-84.0, lon_max=-71.0, resolution=0.5)
"""The Windsor-Quebec corridor box of ``naps_no2_grid`` (arguments of ``grid.regular_grid``)."""
NAPS_GRID_OPTIONS: dict[str, Any] = dict(method="idw", power=2.0, max_distance_km=75.0, k=8)
"""How ``naps_no2_grid`` was gridded (keyword arguments of ``grid.stations_to_grid``)."""


@cache
def _catalog() -> dict[str, dict]:
    ref = resources.files(__name__) / CATALOG_NAME
    if not ref.is_file():
        raise ConfigError(
            f"the sample catalog {CATALOG_NAME} is missing from {__name__}; "
            "run scripts/build_samples.py"
        )
    return json.loads(ref.read_text(encoding="utf-8"))


def available() -> list[str]:
    """Names of the bundled samples, sorted."""
    return sorted(_catalog())


def _entry(name: str) -> dict:
    catalog = _catalog()
    if name not in catalog:
        raise ConfigError(f"unknown sample {name!r}; valid names are {sorted(catalog)}")
    return catalog[name]


def describe(name: str) -> str:
    """A few lines on sample ``name``: title, description, dims, variables, source, licence."""
    entry = _entry(name)
    dims = ", ".join(f"{k}: {v}" for k, v in entry["dims"].items())
    return "\n".join(
        [
            f"{name} ({entry['file']}): {entry['title']}",
            f"  {entry['description']}",
            f"  dims: {dims}; time {entry['time_range'][0]} .. {entry['time_range'][1]}",
            f"  variables: {', '.join(entry['variables'])}",
            f"  time: {entry['time_convention']}",
            f"  source: {entry['source']}",
            f"  license: {entry['license']}",
            f"  references: {entry['references']}",
        ]
    )


def load(name: str) -> xr.Dataset:
    """Load sample ``name`` into memory as a validated canonical Dataset.

    Args:
        name: one of :func:`available` (``naps_no2``, ``naps_no2_grid``, ``london``).

    Returns:
        The Dataset (station layout for ``naps_no2`` and ``london``, grid for
        ``naps_no2_grid``), fully loaded, its file closed.

    Raises:
        ConfigError: for an unknown name, listing the valid ones.

    """
    entry = _entry(name)
    ref = resources.files(__name__) / entry["file"]
    # the files are canonical already (written from validated Datasets): open them as they
    # are, so ancillary fields such as ``coverage`` travel along, and validate
    with resources.as_file(ref) as path, xr.open_dataset(path, engine="netcdf4") as ds:
        return schema.validate(ds.load(), source=f"sample {name!r} ({entry['file']})")
