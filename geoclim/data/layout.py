"""Find a file's time and space coordinates by their CF attributes and give them canonical names.

Coordinates are found with cf-xarray: by ``standard_name``, ``axis`` and ``units``
(``degrees_north`` ...) where the file has them, and by cf-xarray's name guesses (``lat``,
``nav_lat``, ``t``, ``date``, ...) where it has not. Three layouts are read:

* a regular grid: 1-D ``latitude(y)`` and ``longitude(x)`` on two dims -> dims
  ``(latitude, longitude)``, latitude ascending;
* a station network: 1-D latitude and longitude on one shared dim, whatever its name
  (``site``, ``id``, ``station_id``, ``stn``, ...) -> dim ``station``; station ids come from
  that dim's coordinate, else a ``cf_role: timeseries_id`` variable, else ``0..n-1``;
* a single series: scalar latitude and longitude and only a ``time`` dim -> a one-station
  network (its id from the global attributes ``station_id`` / ``site_id`` / ``station_name``,
  else ``default_station``).

2-D (curvilinear) latitude / longitude are refused: regrid to a regular grid first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cf_xarray  # noqa: F401 -- registers the .cf accessor
import numpy as np
import xarray as xr

from geoclim.errors import SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME, Layout

_STATION_ID_ATTRS = ("station_id", "site_id", "station", "site", "station_name", "platform_id")


@dataclass
class LayoutInfo:
    """How a file's coordinates were read.

    Attributes:
        layout: ``grid`` or ``station``.
        found: canonical name -> the file's name (``{"latitude": "nav_lat", ...}``).
        notes: one line per decision (a single series made a station, latitude flipped...).

    """

    layout: Layout
    found: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _guessed(ds: xr.Dataset) -> xr.Dataset:
    """A stand-in for ``ds``, every variable a coordinate, with cf-xarray's axis guesses.

    The guesses read names, dims, dtypes and attributes (and a 1-D variable's first value,
    to tell cftime dates), so the stand-in holds only those: cf-xarray caches its accessor
    on the dataset it is used on, a reference cycle. On ``ds`` the cycle would keep the
    file open until the garbage collector runs, in whichever thread it then runs; a netCDF
    file closed there races the netCDF calls of the thread that works (HDF5 is not
    thread-safe: ``NetCDF: HDF error`` or a crash).
    """
    stand_in = xr.Dataset(coords={n: _stand_in(v) for n, v in ds.variables.items()})
    return stand_in.cf.guess_coord_axis(verbose=False)


def _stand_in(var: xr.Variable) -> xr.Variable:
    """``var``'s dims, dtype and attributes over at most one element, no file behind it."""
    if var.ndim == 1 and var.dtype == object:  # cftime dates are told by their values
        values = np.asarray(var[:1].values)
    else:
        values = np.zeros([min(1, n) for n in var.shape], var.dtype)
    return xr.Variable(var.dims, values, var.attrs)


def _pick(ds: xr.Dataset, guess: xr.Dataset, key: str, what: str) -> str | None:
    names = [str(n) for n in guess.cf.coordinates.get(key, [])]
    if key == TIME:
        names += [str(n) for n in guess.cf.axes.get("T", []) if n not in names]
        names = [n for n in names if _is_time(ds[n])]
    if not names:
        return None
    if len(names) > 1:  # prefer a dim coordinate, then the canonical name
        dims = [n for n in names if n in ds.dims]
        canonical = [n for n in names if n == key]
        names = canonical or dims or names
    if len(names) > 1:
        raise SchemaError(
            f"several {what} coordinates {names}; keep one (data.source.drop) or rename the "
            f"one to use to {key!r} (data.source.rename)"
        )
    return names[0]


def _is_time(da: xr.DataArray) -> bool:
    if np.issubdtype(da.dtype, np.datetime64):
        return True
    return da.dtype == object and da.size > 0 and hasattr(da.values.flat[0], "calendar")


def find_time(ds: xr.Dataset) -> str:
    """Name of the time coordinate of ``ds`` (standard_name / axis T / datetime values)."""
    name = _pick(ds, _guessed(ds), TIME, "time")
    if name is None:
        candidates = [str(n) for n in ds.variables if _is_time(ds[n]) and ds[n].ndim == 1]
        if len(candidates) == 1:
            return candidates[0]
        raise SchemaError(
            f"no time coordinate found among {sorted(map(str, ds.variables))} (looked for "
            "standard_name 'time', axis 'T' and datetime values); map yours with "
            "data.source.rename={<name>: time}"
        )
    if ds[name].ndim != 1:
        raise SchemaError(f"time coordinate {name!r} has dims {ds[name].dims}; expected one dim")
    return name


def canonical_layout(
    ds: xr.Dataset, *, default_station: str = "station"
) -> tuple[xr.Dataset, LayoutInfo]:
    """Rename ``ds``'s time and space coordinates and dims to the canonical ones.

    Args:
        ds: a dataset as opened from a file (names as the file has them).
        default_station: id of the station a single series becomes, when the file names none.

    Returns:
        The dataset with ``time`` and ``(latitude, longitude)`` or ``station`` dims, and how
        they were found.

    Raises:
        SchemaError: if no time or latitude/longitude is found, or the grid is curvilinear.

    """
    t_name = find_time(ds)
    guess = _guessed(ds)
    lat = _pick(ds, guess, LATITUDE, "latitude")
    lon = _pick(ds, guess, LONGITUDE, "longitude")
    if lat is None or lon is None:
        raise SchemaError(
            f"no {'latitude' if lat is None else 'longitude'} coordinate found among "
            f"{sorted(map(str, ds.variables))} (looked for standard_name, units "
            "degrees_north / degrees_east, axis Y / X and names such as lat, lon, nav_lat); "
            "map yours with data.source.rename={<name>: latitude}"
        )
    ds = ds.set_coords([n for n in (lat, lon) if n in ds.data_vars])
    ds = _rename_time(ds, t_name)
    found = {TIME: t_name, LATITUDE: lat, LONGITUDE: lon}
    nd = (ds[lat].ndim, ds[lon].ndim)
    if max(nd) >= 2:
        raise SchemaError(
            f"coordinates {lat!r} {ds[lat].dims} and {lon!r} {ds[lon].dims} are 2-D: a "
            "curvilinear grid, which geoclim does not read; regrid to a regular latitude / "
            "longitude grid first (e.g. with xESMF) or select stations"
        )
    if nd == (0, 0):
        return _single_series(ds, lat, lon, found, default_station)
    if nd != (1, 1):
        raise SchemaError(
            f"latitude {lat!r} has dims {ds[lat].dims} but longitude {lon!r} has "
            f"{ds[lon].dims}; expected both scalar, both on one station dim, or one dim each"
        )
    if ds[lat].dims == ds[lon].dims:
        return _stations(ds, lat, lon, found)
    return _grid(ds, lat, lon, found)


def _rename_time(ds: xr.Dataset, name: str) -> xr.Dataset:
    dim = ds[name].dims[0]
    if name != TIME:
        ds = ds.rename({name: TIME}) if TIME not in ds.variables else ds
    if dim != TIME and dim in ds.dims:
        ds = ds.swap_dims({dim: TIME}) if dim != name else ds
    return ds


def _coords_to(ds: xr.Dataset, lat: str, lon: str) -> xr.Dataset:
    return ds.rename({k: v for k, v in ((lat, LATITUDE), (lon, LONGITUDE)) if k != v})


def _single_series(ds, lat, lon, found, default_station) -> tuple[xr.Dataset, LayoutInfo]:
    extra = sorted(str(d) for d in ds.dims if d != TIME)
    if extra:
        raise SchemaError(
            f"latitude {lat!r} and longitude {lon!r} are scalars but the file has dims "
            f"{extra} besides time; expected a single series (dims ['time'] only)"
        )
    station_id = next((str(ds.attrs[a]) for a in _STATION_ID_ATTRS if a in ds.attrs), None)
    station_id = station_id or default_station
    ds = _coords_to(ds, lat, lon).expand_dims(STATION).assign_coords({STATION: [station_id]})
    ds = ds.assign_coords(
        {n: (STATION, np.atleast_1d(ds[n].values)) for n in (LATITUDE, LONGITUDE)}
    )
    ds = ds.transpose(TIME, STATION)
    info = LayoutInfo("station", found)
    info.notes.append(
        f"single series (dims ['time'], scalar {lat!r} / {lon!r}) -> one station {station_id!r}"
    )
    return ds, info


def _stations(ds, lat, lon, found) -> tuple[xr.Dataset, LayoutInfo]:
    dim = str(ds[lat].dims[0])
    info = LayoutInfo("station", {**found, STATION: dim})
    ids = None
    if dim in ds.coords and dim not in (lat, lon):
        ids = ds[dim].values
    else:
        roles = [
            str(n)
            for n, v in ds.variables.items()
            if v.attrs.get("cf_role") == "timeseries_id" and v.dims == (dim,)
        ]
        if roles:
            ids = ds[roles[0]].values
            ds = ds.drop_vars(roles[0])
            info.notes.append(f"station ids from {roles[0]!r} (cf_role timeseries_id)")
    if ids is None:
        ids = np.array([str(i) for i in range(ds.sizes[dim])])
        info.notes.append(f"station dim {dim!r} has no ids: numbered 0..{ds.sizes[dim] - 1}")
    if ids.dtype.kind in "SO":
        ids = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in ids])
    if dim in ds.coords and dim not in (lat, lon):
        ds = ds.drop_vars(dim)
    ds = _coords_to(ds, lat, lon).rename({dim: STATION}).assign_coords({STATION: ids})
    if dim != STATION:
        info.notes.append(f"station dim {dim!r} -> {STATION!r}")
    return ds, info


def _grid(ds, lat, lon, found) -> tuple[xr.Dataset, LayoutInfo]:
    info = LayoutInfo("grid", found)
    for name in (lat, lon):
        dim = str(ds[name].dims[0])
        if dim != name:  # e.g. lat(y): index the dim by the coordinate
            ds = ds.swap_dims({dim: name})
    ds = _coords_to(ds, lat, lon)
    if ds.sizes[LATITUDE] > 1 and ds[LATITUDE].values[0] > ds[LATITUDE].values[-1]:
        ds = ds.sortby(LATITUDE)
        info.notes.append("latitude flipped to ascending")
    return ds, info
