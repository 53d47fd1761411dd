"""Station <-> grid: gridding station networks and colocating grids at stations.

``stations_to_grid`` turns a station Dataset ``(time, station)`` into a grid Dataset
``(time, latitude, longitude)`` by inverse-distance weighting (great-circle distances, the
``k`` nearest stations within ``max_distance_km``) or by binning stations into the cell that
contains them. Both build one sparse ``(cells, stations)`` weight matrix and apply it to all
time steps at once as masked matrix products, so a station missing at one step simply drops
out of that step and the remaining weights renormalise.

``grid_to_stations`` is the reverse (verifying gridded forecasts at stations): nearest-cell
or bilinear colocation through xarray's vectorised indexing, on any Dataset with
``latitude``/``longitude`` dims (``time`` or ``(init_time, lead_time)`` alike).
"""

from __future__ import annotations

from typing import Literal, get_args

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse
from scipy.spatial import cKDTree

from geoclim.data import schema, variables
from geoclim.errors import GeoclimError, SchemaError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME

EARTH_RADIUS_KM = 6371.0088
"""Mean Earth radius (IUGG), the sphere all distances here are measured on."""

GridMethod = Literal["idw", "nearest"]
ColocateMethod = Literal["nearest", "bilinear"]

_BLOCK_ELEMENTS = 4_000_000
"""Time steps are gridded in blocks of about this many (cells x steps) values."""

_COINCIDENT_KM = 1e-6
"""Stations closer than this (1 mm) to a cell centre count as lying exactly on it."""


def regular_grid(
    lat_min: float, lat_max: float, lon_min: float, lon_max: float, resolution: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of a regular grid covering a latitude/longitude box.

    Cells are ``resolution`` degrees wide, start at the box's south-west corner and cover the
    box (the last row/column may stick out when the extent is not a multiple of the
    resolution).

    Args:
        lat_min: southern edge in degrees north.
        lat_max: northern edge in degrees north.
        lon_min: western edge in degrees east.
        lon_max: eastern edge in degrees east.
        resolution: cell size in degrees, > 0.

    Returns:
        ``(latitude, longitude)`` float64 cell-centre arrays, each strictly increasing.

    Raises:
        GeoclimError: on a non-positive resolution or an empty / inverted box.

    """
    if not resolution > 0:
        raise GeoclimError(f"resolution must be > 0 degrees, got {resolution}")
    out = []
    for name, lo, hi in (("latitude", lat_min, lat_max), ("longitude", lon_min, lon_max)):
        if not hi > lo:
            raise GeoclimError(f"{name} range [{lo}, {hi}] is empty; expected min < max")
        n = int(np.ceil((hi - lo) / resolution - 1e-9))
        out.append(lo + resolution * (np.arange(n) + 0.5))
    if out[0][0] - resolution / 2 < -90 or out[0][-1] + resolution / 2 > 90 + 1e-9:
        raise GeoclimError(f"latitude range [{lat_min}, {lat_max}] leaves [-90, 90]")
    return out[0], out[1]


def stations_to_grid(
    ds: xr.Dataset,
    latitude: np.ndarray,
    longitude: np.ndarray,
    *,
    method: Literal["idw", "nearest"] = "idw",
    power: float = 2.0,
    max_distance_km: float = 75.0,
    k: int = 8,
) -> xr.Dataset:
    """Grid a station network onto cell centres.

    ``idw``: each cell takes the ``k`` nearest stations within ``max_distance_km``
    (great-circle distance ``d`` to the cell centre) with weights ``1 / d**power``; a station
    exactly on the centre takes the cell alone while it reports. ``coverage`` is 1 where a
    station lies within ``max_distance_km``. ``nearest``: each station falls in the cell that
    contains it (stations off the grid are dropped) and a cell is the mean of its stations;
    ``coverage`` is 1 for cells holding a station (``max_distance_km``, ``k`` and ``power``
    are unused). In both, a time step uses only the stations that report at that step (NaN
    elsewhere), the weights renormalise over them, and a cell with none is NaN.

    Time-varying variables are gridded; an imputation mask ``<var>_imputed`` becomes True in
    a cell where any station that contributes to it was imputed. Static station variables
    are dropped (grid them from their own sources).

    Args:
        ds: canonical station Dataset, dims ``(time, station)``, ``latitude``/``longitude``
            coords on ``station``.
        latitude: cell-centre latitudes, ``(latitude,)``, strictly increasing.
        longitude: cell-centre longitudes, ``(longitude,)``, strictly increasing.
        method: ``"idw"`` or ``"nearest"``.
        power: IDW distance exponent.
        max_distance_km: IDW search radius in km, > 0.
        k: at most this many stations per cell (IDW).

    Returns:
        Canonical grid Dataset, dims ``(time, latitude, longitude)``, with the time-varying
        variables (float32, NaN where no station reports) and the static float32
        ``coverage`` ``(latitude, longitude)``.

    Raises:
        SchemaError: if ``ds`` is not a canonical station Dataset or the grid is invalid.
        GeoclimError: on an unknown method or a bad parameter.

    """
    if method not in get_args(GridMethod):
        raise GeoclimError(
            f"unknown gridding method {method!r}; valid methods are {list(get_args(GridMethod))}"
        )
    if not max_distance_km > 0:
        raise GeoclimError(f"max_distance_km must be > 0, got {max_distance_km}")
    if k < 1:
        raise GeoclimError(f"k must be >= 1, got {k}")
    schema.validate(ds)
    if schema.layout_of(ds) != "station":
        raise SchemaError(f"expected a station Dataset (dim {STATION!r}); got dims {list(ds.dims)}")
    if ds.sizes[STATION] == 0:
        raise SchemaError("dataset has no stations")
    lat = _check_axis(LATITUDE, latitude, -90.0, 90.0)
    lon = _check_axis(LONGITUDE, longitude, -180.0, 360.0)
    st_lat = ds[LATITUDE].values.astype(np.float64)
    st_lon = ds[LONGITUDE].values.astype(np.float64)

    if method == "idw":
        weights, exact, coverage = _idw_weights(lat, lon, st_lat, st_lon, power, max_distance_km, k)
    else:
        weights, coverage = _bin_weights(lat, lon, st_lat, st_lon)
        exact = None

    out = xr.Dataset(
        coords={TIME: ds[TIME].values, LATITUDE: lat, LONGITUDE: lon}, attrs=dict(ds.attrs)
    )
    shape = (lat.size, lon.size)
    for name, da in ds.data_vars.items():
        name = str(name)
        if TIME not in da.dims or variables.is_mask(name):
            continue
        values = da.transpose(TIME, STATION).values.astype(np.float64)  # (T, S)
        mask_var = variables.mask_name(name)
        imputed = ds[mask_var].transpose(TIME, STATION).values if mask_var in ds else None
        grid, grid_mask = _apply(weights, exact, values, imputed)
        out[name] = ((TIME, LATITUDE, LONGITUDE), grid.reshape(-1, *shape), dict(da.attrs))
        if grid_mask is not None:
            out[mask_var] = ((TIME, LATITUDE, LONGITUDE), grid_mask.reshape(-1, *shape))
    cov = variables.get("coverage")
    out["coverage"] = (
        (LATITUDE, LONGITUDE),
        coverage.reshape(shape).astype(np.float32),
        {"units": cov.units, "long_name": cov.long_name},
    )
    out.attrs["gridding"] = (
        f"{method}: power={power}, max_distance_km={max_distance_km}, k={k}"
        if method == "idw"
        else "nearest: mean of stations in the cell"
    )
    return schema.validate(out)


def grid_to_stations(
    grid_ds: xr.Dataset,
    stations: xr.Dataset | pd.DataFrame,
    *,
    method: Literal["nearest", "bilinear"] = "bilinear",
) -> xr.Dataset:
    """Colocate a gridded Dataset at station locations.

    ``bilinear`` interpolates between the four surrounding cell centres (NaN outside the
    span of the centres, and where a neighbouring cell is NaN); ``nearest`` takes the cell
    that contains the station (NaN outside the grid's cell edges). Nothing is extrapolated.
    Boolean masks are always taken from the nearest cell.

    Args:
        grid_ds: Dataset with ``latitude``/``longitude`` dims, e.g. ``(time, latitude,
            longitude)`` or a forecast ``(init_time, lead_time, latitude, longitude)``.
        stations: station Dataset (its ``station`` coord and ``latitude``/``longitude`` coords
            are used) or a DataFrame indexed by station id with ``latitude``/``longitude``
            columns.
        method: ``"bilinear"`` or ``"nearest"``.

    Returns:
        The same variables with ``(latitude, longitude)`` replaced by ``station``, carrying
        the target's station ids and coordinates. Validated when it has a ``time`` dim.

    Raises:
        SchemaError: if the grid or the station coordinates are invalid.
        GeoclimError: on an unknown method.

    """
    if method not in get_args(ColocateMethod):
        raise GeoclimError(
            f"unknown colocation method {method!r}; valid methods are "
            f"{list(get_args(ColocateMethod))}"
        )
    if LATITUDE not in grid_ds.dims or LONGITUDE not in grid_ds.dims:
        raise SchemaError(
            f"grid dataset has dims {list(grid_ds.dims)}; expected {LATITUDE!r} and {LONGITUDE!r}"
        )
    lat = _check_axis(LATITUDE, grid_ds[LATITUDE].values, -90.0, 90.0)
    lon = _check_axis(LONGITUDE, grid_ds[LONGITUDE].values, -180.0, 360.0)
    if method == "bilinear" and min(lat.size, lon.size) < 2:
        raise SchemaError(
            "bilinear colocation needs at least 2 cells along latitude and "
            "longitude; use method='nearest'"
        )
    ids, st_lat, st_lon = _station_coords(stations)

    lat_edges, lon_edges = _edges(lat), _edges(lon)
    # Bring station longitudes into the grid's convention (-180..180 vs 0..360).
    st_lon_g = np.where(st_lon < lon_edges[0], st_lon + 360.0, st_lon)
    st_lon_g = np.where(st_lon_g > lon_edges[-1], st_lon_g - 360.0, st_lon_g)
    idx_lat = xr.DataArray(st_lat, dims=STATION)
    idx_lon = xr.DataArray(st_lon_g, dims=STATION)
    inside = xr.DataArray(
        (st_lat >= lat_edges[0])
        & (st_lat <= lat_edges[-1])
        & (st_lon_g >= lon_edges[0])
        & (st_lon_g <= lon_edges[-1]),
        dims=STATION,
    )

    spatial = [str(n) for n, v in grid_ds.data_vars.items() if {LATITUDE, LONGITUDE} <= set(v.dims)]
    floats = [n for n in spatial if np.issubdtype(grid_ds[n].dtype, np.floating)]
    out = grid_ds.sel({LATITUDE: idx_lat, LONGITUDE: idx_lon}, method="nearest")
    out = out.drop_vars([LATITUDE, LONGITUDE])
    if method == "bilinear" and floats:
        linear = grid_ds[floats].interp({LATITUDE: idx_lat, LONGITUDE: idx_lon}, method="linear")
        out = out.assign({n: linear[n].drop_vars([LATITUDE, LONGITUDE]) for n in floats})
    for name in spatial:
        da = out[name]
        if name in floats:
            da = da.where(inside).astype(grid_ds[name].dtype)
        elif da.dtype == bool:
            da = da & inside
        da.attrs = dict(grid_ds[name].attrs)
        out[name] = da
    out = out.assign_coords(
        {STATION: ids, LATITUDE: (STATION, st_lat), LONGITUDE: (STATION, st_lon)}
    )
    out.attrs = dict(grid_ds.attrs)
    return schema.validate(out) if TIME in out.dims else out


def _check_axis(name: str, values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise SchemaError(f"grid {name} must be a non-empty 1-D array, got shape {arr.shape}")
    if not np.isfinite(arr).all() or (arr < lo).any() or (arr > hi).any():
        raise SchemaError(f"grid {name} must be finite and within [{lo}, {hi}]")
    if arr.size > 1 and not (np.diff(arr) > 0).all():
        raise SchemaError(f"grid {name} must be strictly increasing")
    return arr


def _station_coords(stations: xr.Dataset | pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Station ids, latitudes and longitudes of a station Dataset or DataFrame."""
    if isinstance(stations, pd.DataFrame):
        missing = [c for c in (LATITUDE, LONGITUDE) if c not in stations.columns]
        if missing:
            raise SchemaError(
                f"station table lacks column(s) {missing}; it has {list(stations.columns)}"
            )
        ids = stations.index.to_numpy()
        lat, lon = stations[LATITUDE].to_numpy(), stations[LONGITUDE].to_numpy()
    elif isinstance(stations, xr.Dataset | xr.DataArray):
        if STATION not in stations.dims:
            raise SchemaError(
                f"station dataset has dims {list(stations.dims)}; expected {STATION!r}"
            )
        for name in (LATITUDE, LONGITUDE):
            if name not in stations.coords or stations[name].dims != (STATION,):
                raise SchemaError(f"station dataset needs a {name!r} coordinate on {STATION!r}")
        ids = stations[STATION].values
        lat, lon = stations[LATITUDE].values, stations[LONGITUDE].values
    else:
        raise SchemaError(
            "stations must be an xarray Dataset with a 'station' dim or a "
            f"pandas DataFrame, got {type(stations).__name__}"
        )
    lat, lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
    if ids.size == 0:
        raise SchemaError("no stations to colocate at")
    if not (np.isfinite(lat).all() and np.isfinite(lon).all()):
        raise SchemaError("station latitude/longitude must be finite")
    return ids, lat, lon


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges: midpoints between centres, half a spacing beyond the ends."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])  # a lone cell is 1 degree wide
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def _unit_vectors(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    phi, lam = np.deg2rad(lat), np.deg2rad(lon)
    return np.stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)], -1)


def _idw_weights(
    lat: np.ndarray,
    lon: np.ndarray,
    st_lat: np.ndarray,
    st_lon: np.ndarray,
    power: float,
    max_distance_km: float,
    k: int,
) -> tuple[sparse.csr_array, sparse.csr_array, np.ndarray]:
    """IDW weights ``(cells, stations)``, the coincident-station matrix and the coverage."""
    cell_lat, cell_lon = (a.ravel() for a in np.meshgrid(lat, lon, indexing="ij"))
    n_cells, n_st = cell_lat.size, st_lat.size
    # Nearest neighbours by chord length on the unit sphere; chord c <-> arc 2 asin(c / 2).
    max_chord = 2 * np.sin(min(max_distance_km / EARTH_RADIUS_KM, np.pi) / 2)
    tree = cKDTree(_unit_vectors(st_lat, st_lon))
    chord, idx = tree.query(
        _unit_vectors(cell_lat, cell_lon),
        k=min(k, n_st),
        distance_upper_bound=max_chord * (1 + 1e-12),
    )
    chord, idx = chord.reshape(n_cells, -1), idx.reshape(n_cells, -1)
    found = idx < n_st
    rows = np.broadcast_to(np.arange(n_cells)[:, None], idx.shape)[found]
    cols = idx[found]
    dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord[found] / 2, 0, 1))
    keep = dist <= max_distance_km
    rows, cols, dist = rows[keep], cols[keep], dist[keep]
    on_centre = dist < _COINCIDENT_KM
    shape = (n_cells, n_st)
    weights = sparse.csr_array(
        (1.0 / dist[~on_centre] ** power, (rows[~on_centre], cols[~on_centre])), shape=shape
    )
    exact = sparse.csr_array(
        (np.ones(on_centre.sum()), (rows[on_centre], cols[on_centre])), shape=shape
    )
    coverage = np.zeros(n_cells)
    coverage[rows] = 1.0
    return weights, exact, coverage


def _bin_weights(
    lat: np.ndarray, lon: np.ndarray, st_lat: np.ndarray, st_lon: np.ndarray
) -> tuple[sparse.csr_array, np.ndarray]:
    """Binning weights ``(cells, stations)`` (1 for the containing cell) and the coverage."""
    lat_e, lon_e = _edges(lat), _edges(lon)
    st_lon = (st_lon - lon_e[0]) % 360.0 + lon_e[0]  # bring into the grid's longitude range
    i = np.searchsorted(lat_e, st_lat, side="right") - 1
    j = np.searchsorted(lon_e, st_lon, side="right") - 1
    i = np.where(st_lat == lat_e[-1], lat.size - 1, i)  # the top edge belongs to the last row
    j = np.where(st_lon == lon_e[-1], lon.size - 1, j)
    ok = (i >= 0) & (i < lat.size) & (j >= 0) & (j < lon.size)
    cells = i[ok] * lon.size + j[ok]
    weights = sparse.csr_array(
        (np.ones(cells.size), (cells, np.flatnonzero(ok))), shape=(lat.size * lon.size, st_lat.size)
    )
    coverage = np.zeros(lat.size * lon.size)
    coverage[cells] = 1.0
    return weights, coverage


def _apply(
    weights: sparse.csr_array,
    exact: sparse.csr_array | None,
    values: np.ndarray,
    imputed: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Weighted means over reporting stations: ``values (T, S)`` -> ``(T, cells)`` float32.

    Time is processed in blocks of whole matrix products so the float64 temporaries stay
    near ``_BLOCK_ELEMENTS`` values however long the series.
    """
    n_time, n_cells = values.shape[0], weights.shape[0]
    out = np.empty((n_time, n_cells), np.float32)
    grid_mask = None if imputed is None else np.empty((n_time, n_cells), bool)
    step = max(1, _BLOCK_ELEMENTS // max(n_cells, values.shape[1]))
    for start in range(0, n_time, step):
        block = slice(start, start + step)
        ok = ~np.isnan(values[block]).T  # (S, t)
        filled = np.where(ok, values[block].T, 0.0)
        avail = ok.astype(np.float64)
        hit = None if imputed is None else (imputed[block].T & ok).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (weights @ filled) / (weights @ avail)  # (cells, t); 0/0 -> NaN
            flag = None if hit is None else (weights @ hit) > 0
            if exact is not None and exact.nnz:  # a reporting station on the centre wins
                den = exact @ avail
                on = den > 0
                mean = np.where(on, (exact @ filled) / np.where(on, den, 1.0), mean)
                if hit is not None:
                    flag = np.where(on, (exact @ hit) > 0, flag)
        out[block] = mean.T
        if grid_mask is not None:
            assert flag is not None  # both exist exactly when ``imputed`` is given
            grid_mask[block] = flag.T
    return out, grid_mask
