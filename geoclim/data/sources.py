"""Open gridded / station files as canonical Datasets, and write them safely.

``open_dataset`` reads netCDF (netCDF4 engine) or zarr lazily, renames whatever names the
file uses to the canonical ones (``lat`` -> ``latitude``, ``PM2.5`` -> ``pm25``, ...), converts
known units to the canonical ones, sorts latitude ascending and validates the result.
``write_netcdf`` writes CF-compliant, compressed netCDF through a temp file and a rename, so
a crash never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import xarray as xr

from geoclim import fileio
from geoclim.data import categorical, schema, timeaxis, variables
from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME

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

VARIABLE_ALIASES = {
    "pm2.5": "pm25",
    "pm2_5": "pm25",
    "pm25": "pm25",
    "pm10": "pm10",
    "o3": "o3",
    "ozone": "o3",
    "no2": "no2",
    "nox": "nox",
    "so2": "so2",
    "co": "co",
    "2t": "t2m",
    "t2m": "t2m",
    "temperature": "t2m",
    "r2": "rh",
    "rh": "rh",
    "10u": "u10",
    "u10": "u10",
    "10v": "v10",
    "v10": "v10",
    "ws": "ws",
    "wd": "wd",
    "sp": "sp",
    "blh": "blh",
    "tp": "tp",
    "ssrd": "ssrd",
    "z": "elevation",
    "orography": "elevation",
    "elevation": "elevation",
    "lsm": "land_sea_mask",
    "land_sea_mask": "land_sea_mask",
}


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


def to_canonical(ds: xr.Dataset, *, reference_temperature_c: float = 25.0) -> xr.Dataset:
    """Rename dims/variables to canonical names, convert units, sort latitude, cast float32.

    Variables that are not in the registry under any alias are dropped.
    """
    rename = {k: v for k, v in DIM_ALIASES.items() if k in ds.variables or k in ds.dims}
    ds = ds.rename(rename)
    keep = {}
    for name in ds.data_vars:
        if categorical.is_categorical(ds[name]):  # CF flags: kept as codes, never converted
            keep[str(name)] = ds[name]
            continue
        canon = (
            str(name) if variables.is_mask(str(name)) else VARIABLE_ALIASES.get(str(name).lower())
        )
        if canon is None:
            continue
        da = ds[name]
        if not variables.is_mask(canon):
            units = da.attrs.get("units", variables.get(canon).units)
            if variables.normalise_units(units) != variables.get(canon).units:
                da = xr.apply_ufunc(
                    variables.convert,
                    da,
                    kwargs=dict(
                        name=canon,
                        from_units=units,
                        reference_temperature_c=reference_temperature_c,
                    ),
                    dask="parallelized",
                    output_dtypes=[np.float64],
                ).assign_attrs(da.attrs)
        keep[canon] = da
    out = xr.Dataset(keep, coords=ds.coords, attrs=ds.attrs)
    if LATITUDE in out.dims and out.sizes[LATITUDE] > 1 and out[LATITUDE][0] > out[LATITUDE][-1]:
        out = out.sortby(LATITUDE)
    return schema.annotate(out)


def open_dataset(
    path: str | os.PathLike,
    *,
    chunks: dict | str | None = None,
    required: tuple[str, ...] = (),
    resample: str | None = None,
) -> xr.Dataset:
    """Open a netCDF file or zarr store as a validated canonical Dataset (lazily).

    Args:
        path: ``.nc`` file or ``.zarr`` store.
        chunks: dask chunks for data larger than memory (``None`` loads lazily with no dask).
        required: variables that must be present.
        resample: put an irregular time axis on a regular one first (bin means; ``"1h"``,
            ``"1D"``, ``"MS"``, ... see :func:`geoclim.data.timeaxis.resample`).

    """
    path = Path(path)
    if not path.exists():
        raise SchemaError(f"{path}: no such file or store")
    engine = _engine_for(path)
    kwargs = {}
    if engine == "zarr":  # consolidated metadata only where the store has it (no fallback noise)
        kwargs["consolidated"] = (path / ".zmetadata").exists() or None
        if kwargs["consolidated"] is None and (path / ".zgroup").exists():
            kwargs["consolidated"] = False
    try:
        raw = xr.open_dataset(path, engine=engine, chunks=chunks, **kwargs)
    except (OSError, ValueError) as err:
        raise SchemaError(f"{path}: cannot be read as {engine}: {err}") from None
    ds = to_canonical(raw)
    if resample:
        ds = timeaxis.resample(ds, resample)
    return schema.validate(ds, required, source=str(path))


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
    with fileio.atomic_path(path) as tmp:
        out.to_netcdf(tmp, engine="netcdf4", encoding=enc)
    return path
