"""Open gridded / station files as canonical Datasets, and write them safely.

``open_dataset`` reads netCDF (netCDF4 engine) or zarr lazily, finds its coordinates by CF
attributes (:mod:`geoclim.data.layout`), renames the registry's aliases (``PM2.5`` ->
``pm25``) and the user's ``rename``, converts registered variables to their canonical units,
keeps every other numeric variable in its own (declared or attributed) units, logs one table
of what it did (:mod:`geoclim.data.canonical`) and validates the result.
``write_netcdf`` writes CF-compliant, compressed netCDF through a temp file and a rename, so
a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoclim import fileio
from geoclim.data import canonical, schema, timeaxis, units, variables
from geoclim.errors import ConfigError, SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME

log = logging.getLogger(__name__)

DIM_ALIASES = {
    "lat": LATITUDE,
    "nav_lat": LATITUDE,
    "y_lat": LATITUDE,
    "lon": LONGITUDE,
    "long": LONGITUDE,
    "nav_lon": LONGITUDE,
    "valid_time": TIME,
    "date": TIME,
    "datetime": TIME,
    "times": TIME,
    "site": STATION,
    "stations": STATION,
    "site_id": STATION,
}

VARIABLE_ALIASES = variables.ALIASES
"""File names (lower case) -> registered names (the registry's aliases)."""


def _engine_for(path: Path) -> str:
    if (
        path.suffix == ".zarr"
        or (path.is_dir() and (path / ".zgroup").exists())
        or (path.is_dir() and (path / "zarr.json").exists())
    ):
        return "zarr"
    if path.suffix in (".nc", ".nc4", ".netcdf", ".cdf"):
        return "netcdf4"
    raise SchemaError(f"{path}: unknown file type {path.suffix!r}; expected .nc or .zarr")


def to_canonical(
    ds: xr.Dataset, *, source: str = "dataset", log_table: bool = True, **kwargs: Any
) -> xr.Dataset:
    """The canonical form of ``ds`` (see :func:`geoclim.data.canonical.canonicalise`).

    Logs the load table once and raises one error listing every problem (no units, ...).
    """
    out, report = canonical.canonicalise(ds, source=source, **kwargs)
    if log_table:
        log.info("%s", report.table())
    report.raise_problems()
    return out


def read(
    path: str | os.PathLike,
    *,
    rename: dict[str, str] | None = None,
    variables: dict[str, Any] | None = None,
    drop: list[str] | tuple[str, ...] = (),
    chunks: dict | str | None = None,
    reference_temperature_c: float | None = None,
    reference_pressure_hpa: float | None = None,
) -> tuple[xr.Dataset, canonical.LoadReport]:
    """Open ``path`` and canonicalise it without raising its problems: ``(ds, report)``.

    ``ds.close()`` closes the file. A file opened here closes when the last reference to
    its data goes (no reference cycle holds it, :mod:`geoclim.data.layout`): a file left
    to the garbage collector is closed in whichever thread collects, and netCDF is not
    thread-safe.
    """
    path = Path(path)
    raw = _open_raw(path, chunks)
    try:
        reference = _reference(reference_temperature_c, reference_pressure_hpa)
        ds, report = canonical.canonicalise(
            raw,
            source=str(path),
            rename=rename,
            declared=variables,
            drop=tuple(drop or ()),
            reference=reference,
            default_station=path.stem,
        )
    except BaseException:
        raw.close()  # not left open to the collector by the error's traceback
        raise
    ds.set_close(_file_close(raw))
    return ds, report


def _file_close(ds: xr.Dataset) -> Callable[[], None] | None:
    """What closes the file of ``ds``: its store's ``close`` (the ``set_close`` slot).

    Not ``ds.close``: that would keep ``ds`` and its arrays (unconverted, perhaps loaded)
    alive as long as the dataset made from it.
    """
    return getattr(ds, "_close", None)


def open_dataset(
    path: str | os.PathLike,
    *,
    rename: dict[str, str] | None = None,
    variables: dict[str, Any] | None = None,
    drop: list[str] | tuple[str, ...] = (),
    chunks: dict | str | None = None,
    resample: str | None = None,
    reference_temperature_c: float | None = None,
    reference_pressure_hpa: float | None = None,
    required: tuple[str, ...] = (),
) -> xr.Dataset:
    """Open a netCDF file or zarr store as a validated canonical Dataset (lazily).

    ``ds.close()`` (or ``with open_dataset(...) as ds``) closes the file; dropping the last
    reference to the data does too. A lazy read after ``close`` opens the file again (xarray
    reopens on demand); it then closes when the data is dropped.

    Args:
        path: ``.nc`` file or ``.zarr`` store.
        rename: the file's names -> wanted names (variables, coordinates or dims).
        variables: ``{name: {units, long_name}}`` declarations for what the file lacks.
        drop: file variables to leave out.
        chunks: dask chunks for data larger than memory (``None`` loads lazily with no dask).
        resample: a pandas offset rule (``1h``, ``1D``, ``MS``, ...) that puts an irregular
            time axis on a regular one (bin means; see :func:`geoclim.data.timeaxis.resample`).
        reference_temperature_c: stated reference temperature for gas mass concentration
            <-> mixing ratio conversions (with ``reference_pressure_hpa``).
        reference_pressure_hpa: stated reference pressure for those conversions.
        required: variables that must be present.

    Raises:
        SchemaError: naming the file and every problem (no units, unknown names, layout).

    """
    ds, report = read(
        path,
        rename=rename,
        variables=variables,
        drop=drop,
        chunks=chunks,
        reference_temperature_c=reference_temperature_c,
        reference_pressure_hpa=reference_pressure_hpa,
    )
    log.info("%s", report.table())
    try:
        report.raise_problems()
        out = timeaxis.resample(ds, resample) if resample else ds
        out = schema.validate(out, required, source=str(path))
    except BaseException:
        ds.close()  # the error's traceback holds ``ds``: the file must not wait for a collection
        raise
    out.set_close(_file_close(ds))
    return out


def _reference(temperature_c: float | None, pressure_hpa: float | None) -> units.Reference | None:
    if temperature_c is None and pressure_hpa is None:
        return None
    if temperature_c is None or pressure_hpa is None:
        raise ConfigError(
            "state both data.source.reference_temperature_c and "
            "data.source.reference_pressure_hpa (or neither)"
        )
    return units.Reference(float(temperature_c), float(pressure_hpa))


def _open_raw(path: Path, chunks: dict | str | None) -> xr.Dataset:
    from geoclim.data.ingest.generation import verify_stations  # ingest imports this module

    verify_stations(path)  # an ingest store's stations.nc must match its manifest
    if not path.exists():
        raise SchemaError(f"{path}: no such file or store")
    engine = _engine_for(path)
    kwargs: dict[str, Any] = {}
    if engine == "zarr":  # consolidated metadata only where the store has it (no fallback noise)
        kwargs["consolidated"] = (path / ".zmetadata").exists() or None
        if kwargs["consolidated"] is None and (path / ".zgroup").exists():
            kwargs["consolidated"] = False
    try:
        return xr.open_dataset(path, engine=engine, chunks=chunks, **kwargs)
    except (OSError, ValueError) as err:
        raise SchemaError(f"{path}: cannot be read as {engine}: {err}") from None


def _encoding(ds: xr.Dataset) -> dict:
    enc = {}
    for name, da in ds.data_vars.items():
        if da.dtype == np.float32:
            enc[name] = {"zlib": True, "complevel": 4, "_FillValue": np.float32(np.nan)}
        elif da.dtype == bool:
            enc[name] = {"zlib": True, "complevel": 4}
    return enc


def write_netcdf(ds: xr.Dataset, path: str | os.PathLike, *, encoding: dict | None = None) -> Path:
    """Write ``ds`` as compressed CF netCDF-4 atomically (temp file in the same dir + rename).

    Args:
        ds: the dataset.
        path: destination; an existing file is replaced only once the new one is complete.
        encoding: per-variable netCDF encoding, merged over the default (zlib level 4).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = ds.copy()
    out.attrs.setdefault("Conventions", "CF-1.8")
    for name in (LATITUDE, LONGITUDE):
        if name in out.coords:
            out[name].attrs.update(
                units="degrees_north" if name == LATITUDE else "degrees_east",
                standard_name=name,
            )
    enc = _encoding(out)
    for name, extra in (encoding or {}).items():
        enc[name] = {**enc.get(name, {}), **extra}
    with fileio.atomic_path(path) as tmp, fileio.NETCDF_LOCK:  # safe beside other threads
        out.to_netcdf(tmp, engine="netcdf4", encoding=enc)
    return path
