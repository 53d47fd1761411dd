"""Raw requests -> validated physical arrays (:class:`Inputs`) for the :class:`Forecaster`.

Two front doors share one result:

* :func:`from_dataset` -- an ``xr.Dataset`` history (station or grid), optionally a second
  Dataset with known-future inputs over the lead times;
* :func:`from_arrays` -- numpy arrays per variable for a batch of locations (the JSON path:
  no xarray on the hot path).

Both check the request against the embedded task: variable names (source aliases such as
``PM2.5`` accepted), units (converted when convertible, refused otherwise), time step,
history length, known-future coverage, coordinates and missing values, and raise a
:class:`~geoclim.errors.SchemaError` / :class:`~geoclim.errors.DataError` naming the bad value
and what was expected. Static inputs missing from the request are looked up on the training
domain embedded in the export (station id, else the nearest station within
``STATION_TOLERANCE_DEG``; for grids, the cell containing the point).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import categorical, schema, timeaxis, variables
from geoclim.data.sources import DIM_ALIASES, VARIABLE_ALIASES
from geoclim.errors import DataError, SchemaError
from geoclim.export.metadata import Domain, ExportMetadata
from geoclim.serving import times as stamps
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME, Layout

STATION_TOLERANCE_DEG = 1e-3
"""A request point this close (degrees) to a training station is that station."""
DOMAIN_MARGIN_DEG = 1.0
"""Station models serve points within the training stations' bounding box plus this margin."""
IGNORED_VARIABLES = ("coverage",)
"""Ancillary variables a canonical dataset may carry that no model reads (not refused)."""


@dataclass
class Inputs:
    """A validated request in physical units, channels-last, on a regular time axis.

    Attributes:
        layout: ``"station"`` (points; ``W = 1``) or ``"grid"``.
        times: ``(T,)`` datetime64[ns] (cftime objects for model calendars), regular in the
            model's step (fixed or calendar), long enough for the last init + horizon.
        dynamic: ``(T, H, W, C_dyn)`` float32, channels = ``task.dynamic_variables``; NaN
            where missing (and after the history for past-only variables); categorical
            variables hold their flag codes (one-hot encoded by the adapter).
        static: ``(H, W, C_static)`` float32, channels = ``task.static_inputs``.
        inits: ``(N,)`` init positions on ``times`` (the last input step of each forecast).
        latitude, longitude: ``(H,)`` / ``(W,)`` grid axes, or ``(S,)`` point coordinates.
        station: ``(S,)`` point ids (empty for grids).
        domain_rows, domain_cols: ``(H, W)`` positions on the training domain, when known
            (needed when the net reads ``lat_idx`` / ``lon_idx``).

    """

    layout: Layout
    times: np.ndarray
    dynamic: np.ndarray
    static: np.ndarray
    inits: np.ndarray
    latitude: np.ndarray
    longitude: np.ndarray
    station: tuple[str, ...] = ()
    domain_rows: np.ndarray | None = None
    domain_cols: np.ndarray | None = None

    @property
    def grid_shape(self) -> tuple[int, int]:
        """``(H, W)``; ``(S, 1)`` for points."""
        return self.dynamic.shape[1], self.dynamic.shape[2]


def _canonical_names(ds: xr.Dataset) -> xr.Dataset:
    rename = {
        k: v
        for k, v in DIM_ALIASES.items()
        if (k in ds.variables or k in ds.dims) and v not in ds.variables
    }
    ds = ds.rename(rename)
    names = {}
    for name in ds.data_vars:
        canon = VARIABLE_ALIASES.get(str(name).lower())
        if canon is not None and canon != name and canon not in ds.data_vars:
            names[name] = canon
    return ds.rename(names)


def to_units(values: np.ndarray, name: str, units: str | None) -> np.ndarray:
    """``values`` of ``name`` in canonical units (converted from ``units`` when given)."""
    if name not in variables.REGISTRY:
        return np.asarray(values, dtype=np.float32)
    if units is None or units == variables.get(name).units:
        return np.asarray(values, dtype=np.float32)
    try:
        return variables.convert(values, name, units).astype(np.float32)
    except SchemaError as err:
        raise SchemaError(f"{err} (send it in {variables.get(name).units!r})") from None


def _physical(meta: ExportMetadata, values: np.ndarray, name: str, units: str | None) -> np.ndarray:
    """Values in canonical units, or the checked flag codes of a categorical variable."""
    cats = meta.task.categories.get(name)
    if cats is None:
        return to_units(values, name, units)
    categorical.check_codes(values, name, cats)
    return np.asarray(values, dtype=np.float32)


def from_dataset(
    meta: ExportMetadata,
    history: xr.Dataset,
    future: xr.Dataset | None = None,
    init_times: np.ndarray | list | None = None,
) -> Inputs:
    """Validate an xarray request.

    Args:
        meta: the export's metadata.
        history: past inputs (targets first) over at least ``input_steps`` steps, with
            ``time`` and a station or ``(latitude, longitude)`` layout; may also hold static
            fields and known-future variables.
        future: known-future variables (forecast forcing) on the lead times, if the task
            has any and ``history`` does not extend over them.
        init_times: forecast init times (each the last input step); default: the last time
            of ``history``.

    Returns:
        The validated inputs.

    """
    for label, ds in (("history", history), ("future", future)):
        if ds is not None and not isinstance(ds, xr.Dataset):
            raise SchemaError(f"{label} must be an xarray.Dataset, got {type(ds).__name__}")
    task = meta.task
    history = _canonical_names(history)
    if TIME not in history.dims:
        raise SchemaError(f"history has no {TIME!r} dim (dims are {list(history.dims)})")
    h_times = stamps.check_axis(meta, history[TIME].values, "history")
    if future is not None:
        future = _canonical_names(future)
        if TIME not in future.dims:
            raise SchemaError(f"future has no {TIME!r} dim (dims are {list(future.dims)})")
        stamps.check_axis(meta, future[TIME].values, "future")
        history = xr.merge([history, future], join="outer", compat="no_conflicts")
    inits_t = h_times[-1:] if init_times is None else stamps.as_stamps(meta, init_times)
    if stamps.is_fixed(meta):
        step = meta.time_step
        last = max(np.asarray(history[TIME].values, "datetime64[ns]").max(), inits_t.max())
        axis = np.arange(
            history[TIME].values.min(),
            last + step * task.horizon + step,
            step,
            dtype="datetime64[ns]",
        )
        stamps.check_times(history[TIME].values.astype("datetime64[ns]"), step, "history + future")
        inits = np.searchsorted(axis, inits_t)
    else:
        merged = stamps.check_axis(meta, history[TIME].values, "history + future")
        axis, inits = stamps.extended_axis(meta, merged, inits_t)
    ds = history.reindex({TIME: axis})
    required = (*task.past_variables, *task.future_variables)
    missing = [n for n in required if n not in ds.data_vars]
    if missing:
        raise SchemaError(
            f"request lacks variable(s) {missing}; the model reads past inputs "
            f"{list(task.past_variables)}, known-future inputs {list(task.future_variables)} "
            f"and static inputs {list(task.static_inputs)} "
            f"(request has {sorted(map(str, ds.data_vars))})"
        )
    layout = schema.layout_of(ds)
    space = schema.space_dims(ds)
    if layout == "station" and meta.window.patch != 1:
        raise SchemaError(
            f"the model forecasts whole grids or patches (window.patch = {meta.window.patch}) "
            f"and needs a ({LATITUDE!r}, {LONGITUDE!r}) grid history; the request is a station "
            f"dataset (dims {list(ds.dims)})"
        )
    known = {*task.dynamic_variables, *task.static_inputs, *IGNORED_VARIABLES}
    extra = sorted(
        str(v)
        for v in ds.data_vars
        if v not in known and not variables.is_mask(str(v)) and TIME in ds[v].dims
    )
    if extra:
        raise SchemaError(
            f"request has variable(s) {extra} the model does not read; it reads past inputs "
            f"{list(task.past_variables)}, known-future inputs {list(task.future_variables)} "
            f"and static inputs {list(task.static_inputs)}: drop the others"
        )
    for name in (LATITUDE, LONGITUDE):
        if name not in ds.coords:
            raise SchemaError(f"request lacks coordinate {name!r}")
    lat = np.asarray(ds[LATITUDE].values, np.float64)
    lon = np.asarray(ds[LONGITUDE].values, np.float64)
    _check_coordinates(lat, lon)
    n_time = axis.size
    h = ds.sizes[space[0]]
    w = ds.sizes[space[1]] if layout == "grid" else 1
    dynamic = np.empty((n_time, h, w, len(task.dynamic_variables)), np.float32)
    for c, name in enumerate(task.dynamic_variables):
        da = ds[name]
        if set(da.dims) != {TIME, *space}:
            raise SchemaError(f"variable {name!r} has dims {da.dims}; expected {(TIME, *space)}")
        values = _physical(meta, da.transpose(TIME, *space).values, name, da.attrs.get("units"))
        dynamic[..., c] = values.reshape(n_time, h, w)
    stations = tuple(str(s) for s in ds[STATION].values) if layout == "station" else ()
    given = {}
    for name in task.static_inputs:
        if name in ds.data_vars:
            da = ds[name]
            if TIME in da.dims:
                raise SchemaError(f"static variable {name!r} must not have a {TIME!r} dim")
            given[name] = _physical(
                meta, da.transpose(*space).values, name, da.attrs.get("units")
            ).reshape(h, w)
    return _finish(meta, layout, axis, dynamic, given, inits, inits_t, lat, lon, stations)


def from_arrays(
    meta: ExportMetadata,
    init_time: np.datetime64 | str,
    past: dict[str, np.ndarray],
    *,
    latitude: np.ndarray,
    longitude: np.ndarray,
    station: tuple[str, ...] | list[str] | None = None,
    future: dict[str, np.ndarray] | None = None,
    static: dict[str, np.ndarray] | None = None,
    units: dict[str, str] | None = None,
) -> Inputs:
    """Validate a batch of point histories given as arrays (one shared init time).

    Args:
        meta: the export's metadata.
        init_time: time of the last history value (UTC).
        past: ``{name: (S, T)}`` past inputs, the last column at ``init_time``; NaN missing.
        latitude: ``(S,)`` point latitudes.
        longitude: ``(S,)`` point longitudes.
        station: ``(S,)`` point ids (default ``point-0``, ...).
        future: ``{name: (S, L')}`` known-future variables at leads ``1..L'`` (``L' >= L``).
        static: ``{name: (S,)}`` static inputs; looked up on the training domain if absent.
        units: units of the given variables when not canonical.

    Returns:
        The validated inputs (station layout, ``W = 1``).

    """
    task, units = meta.task, dict(units or {})
    future, static = dict(future or {}), dict(static or {})
    lat = np.atleast_1d(np.asarray(latitude, np.float64))
    lon = np.atleast_1d(np.asarray(longitude, np.float64))
    n = lat.size
    if lon.size != n:
        raise SchemaError(f"got {n} latitudes but {lon.size} longitudes")
    _check_coordinates(lat, lon)
    stations = tuple(station) if station is not None else tuple(f"point-{i}" for i in range(n))
    if len(stations) != n:
        raise SchemaError(f"got {len(stations)} station ids for {n} locations")
    _refuse_unknown(meta, past, future, units)
    missing = [v for v in task.past_variables if v not in past]
    missing += [v for v in task.future_variables if v not in future and v not in past]
    if missing:
        raise SchemaError(
            f"request lacks variable(s) {missing}; the model reads past inputs "
            f"{list(task.past_variables)} and known-future inputs {list(task.future_variables)}"
        )
    lengths = {(v.shape if isinstance(v, np.ndarray) else np.shape(v))[-1] for v in past.values()}
    if len(lengths) != 1:
        raise SchemaError(
            f"past series have different lengths {sorted(lengths)}; send one common history length"
        )
    t_hist = lengths.pop()
    n_time = t_hist + task.horizon
    if isinstance(init_time, np.datetime64) and meta.time_calendar == "standard":
        init = init_time.astype(_NS)  # what as_stamps makes of it
    else:
        init = stamps.as_stamps(meta, [init_time])[0]
    if stamps.is_fixed(meta):
        times = _fixed_axis(init, meta.time_step, t_hist, n_time)
    else:  # calendar steps and model calendars: whole steps from the init
        offsets = range(-(t_hist - 1), n_time - (t_hist - 1))
        times = np.asarray([timeaxis.shift(init, meta.step, k) for k in offsets])
    dynamic = np.empty((n_time, n, 1, len(task.dynamic_variables)), np.float32)
    dynamic.fill(np.nan)
    cats = task.categories
    for c, name in enumerate(task.dynamic_variables):
        # canonical units, no flag codes: the float64 values are cast to float32 as they
        # are written (the same rounding as converting them first)
        plain = units.get(name) is None and name not in cats
        if name in past:
            values = _as_2d(past[name], n, name, "past")
            dynamic[:t_hist, :, 0, c] = (
                values.T if plain else _physical(meta, values, name, units.get(name)).T
            )
        if name in future:
            values = _as_2d(future[name], n, name, "future")
            if values.shape[1] < task.horizon:
                raise DataError(
                    f"known-future variable {name!r} covers {values.shape[1]} lead(s); the "
                    f"model needs {task.horizon}"
                )
            lead = values[:, : task.horizon]
            dynamic[t_hist:, :, 0, c] = (
                lead.T if plain else _physical(meta, lead, name, units.get(name)).T
            )
    given = {
        k: _physical(meta, np.asarray(v, np.float32).reshape(n, 1), k, units.get(k))
        for k, v in static.items()
        if k in task.static_inputs
    }
    unknown = sorted(set(static) - set(task.static_inputs))
    if unknown:
        raise SchemaError(
            f"unknown static input(s) {unknown}; the model reads {list(task.static_inputs)}"
        )
    return _finish(
        meta,
        "station",
        times,
        dynamic,
        given,
        np.array([t_hist - 1]),
        None  # the init's stamp is the axis' own (see _finish)
        if t_hist >= 1 and times.dtype == _NS and not np.isnat(times[t_hist - 1])
        else times[t_hist - 1 : t_hist],
        lat,
        lon,
        stations,
    )


def _fixed_axis(init: np.datetime64, step: np.timedelta64, t_hist: int, n: int) -> np.ndarray:
    """``init + (arange(n) - (t_hist - 1)) * step`` as datetime64[ns], in int64 arithmetic.

    The same integers numpy's datetime arithmetic forms (both ``[ns]``), for a third of
    its cost; a NaT init or step keeps numpy's (all NaT).
    """
    if init.dtype == _NS and step.dtype == _TD_NS:
        start: Any = init.item()  # int nanoseconds ([ns]), None for NaT
        every: Any = step.item()
        if start is not None and every is not None:
            offsets = np.arange(-(t_hist - 1), n - (t_hist - 1), dtype=np.int64)
            offsets *= every
            offsets += start
            return offsets.view(_NS)
    return init + (np.arange(n) - (t_hist - 1)) * step


_NS, _TD_NS = np.dtype("datetime64[ns]"), np.dtype("timedelta64[ns]")


def _as_2d(values: np.ndarray, n: int, name: str, where: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    a = a.reshape(1, -1) if a.ndim == 1 and n == 1 else a
    if a.ndim != 2 or a.shape[0] != n:
        raise SchemaError(
            f"{where} series {name!r} has shape {np.shape(values)}; expected ({n}, steps)"
        )
    return a


def _within(values: np.ndarray, lo: float, hi: float) -> bool:
    """Every value finite and within ``[lo, hi]`` (NaN and inf fail both comparisons)."""
    if values.size <= 16:  # a few points: Python floats beat numpy's per-call cost
        return all(lo <= v <= hi for v in values.ravel().tolist())
    return bool(np.isfinite(values).all() and (values >= lo).all() and (values <= hi).all())


def _check_coordinates(lat: np.ndarray, lon: np.ndarray) -> None:
    if not _within(lat, -90.0, 90.0):
        raise SchemaError(f"latitude must be finite and within [-90, 90], got {lat.tolist()[:5]}")
    if not _within(lon, -180.0, 360.0):
        raise SchemaError(
            f"longitude must be finite and within [-180, 360], got {lon.tolist()[:5]}"
        )


def _finish(
    meta: ExportMetadata,
    layout: Layout,
    times: np.ndarray,
    dynamic: np.ndarray,
    given: dict[str, np.ndarray],
    inits: np.ndarray,
    inits_t: np.ndarray | None,
    lat: np.ndarray,
    lon: np.ndarray,
    stations: tuple[str, ...],
) -> Inputs:
    """The validated request; ``inits_t`` ``None``: the init stamps are ``times[inits]``."""
    task = meta.task
    if inits_t is None:  # the inits' stamps are the axis' own (none NaT): only the length
        at = inits.tolist()
        bad = [stamps.label(times[p]) for p in at if p >= times.size or p < task.input_steps - 1]
    else:
        bad = [
            stamps.label(t)
            for t, p in zip(inits_t, inits.tolist(), strict=True)
            if p >= times.size or times[p] != t or p < task.input_steps - 1
        ]
    if bad:
        raise DataError(
            f"init time(s) {bad[:3]} have fewer than input_steps = {task.input_steps} steps "
            f"of history in the request (history starts {stamps.label(times[0])})"
        )
    h, w = dynamic.shape[1:3]
    rows = cols = None
    lon_d = _wrap_longitude(lon, meta.domain.longitude)
    grid = meta.domain.layout == "grid"  # its cells are found once for both uses
    cells = grid_cells(meta.domain, layout, lat, lon_d) if grid else None
    check_domain(meta.domain, layout, lat, lon_d, cells=cells)
    need_lookup = [n for n in task.static_inputs if n not in given]
    if need_lookup or {"lat_idx", "lon_idx"} & set(meta.io.inputs):
        if cells is not None:  # grid domain, every location inside (check_domain): its cells
            rows, cols = cells[0], cells[2]
        else:
            rows, cols = locate(meta.domain, layout, lat, lon_d, stations, cells=cells)
    table = None if given else _static_table(meta.domain, task.static_inputs)
    if table is not None:  # every static input from the domain: one lookup of them all
        return Inputs(
            layout,
            times,
            dynamic,
            table[rows, cols] if table.ndim == 3 else table[rows],
            inits,
            lat,
            lon,
            stations,
            rows,
            cols,
        )
    static = np.empty((h, w, len(task.static_inputs)), np.float32)
    for c, name in enumerate(task.static_inputs):
        if name in given:
            static[..., c] = given[name]
        elif name in meta.domain.static:
            field = meta.domain.static[name]
            static[..., c] = field[rows, cols] if field.ndim == 2 else field[rows]
        else:
            raise SchemaError(
                f"static input {name!r} is missing from the request and from the export's domain"
            )
    return Inputs(layout, times, dynamic, static, inits, lat, lon, stations, rows, cols)


_STATIC_TABLES: dict[tuple[int, tuple[str, ...]], tuple[Domain, np.ndarray | None]] = {}
"""``(id(domain), names) -> (domain, table)`` of the served models (see _static_table)."""


def _static_table(domain: Domain, names: tuple[str, ...]) -> np.ndarray | None:
    """The domain's static fields ``names`` stacked on a last axis, float32, found once.

    ``(H, W, C)`` for grid fields, ``(S, C)`` for station fields: indexing it by the
    request's cells gives the values the field-by-field lookup writes into its float32
    array. ``None`` when there are no such fields, one is missing (the lookup names it)
    or their layouts differ.
    """
    key = (id(domain), names)
    entry = _STATIC_TABLES.get(key)
    if entry is None or entry[0] is not domain:
        table = None
        if names and all(n in domain.static for n in names):
            fields = [np.asarray(domain.static[n]) for n in names]
            if fields[0].ndim in (1, 2) and len({f.shape for f in fields}) == 1:
                table = np.stack([f.astype(np.float32) for f in fields], axis=-1)
                table.flags.writeable = False
        if len(_STATIC_TABLES) >= 64:
            _STATIC_TABLES.clear()
        entry = _STATIC_TABLES[key] = (domain, table)
    return entry[1]


def _refuse_unknown(meta: ExportMetadata, past: dict, future: dict, units: dict) -> None:
    """Variables and units the model does not read are mistakes, not silently dropped."""
    task = meta.task
    for where, given, allowed in (
        ("past", past, task.dynamic_variables),
        ("future", future, task.future_variables),
        ("units", units, (*task.dynamic_variables, *task.static_inputs)),
    ):
        unknown = sorted(set(given) - set(allowed))
        if unknown:
            raise SchemaError(
                f"{where}: unknown variable(s) {unknown}; the model reads "
                f"{where if where != 'units' else 'variables'} {list(allowed)}"
            )


def _wrap_longitude(lon: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``lon`` shifted by multiples of 360 to lie within 180 degrees of ``reference``'s centre."""
    if reference.size == 0:
        return lon
    centre = _axis_facts(reference)[0]
    if lon.size <= 16 and lon.dtype == np.float64:  # Python floats: the same float64 ops
        wrapped = [(v - centre + 180.0) % 360.0 - 180.0 + centre for v in lon.ravel().tolist()]
        return np.array(wrapped, np.float64).reshape(lon.shape)
    return (lon - centre + 180.0) % 360.0 - 180.0 + centre


def _points(layout: Layout, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude of every location: ``(H, W)`` for a grid, ``(N, 1)`` points."""
    if layout == "grid":
        lat2, lon2 = np.meshgrid(lat, lon, indexing="ij")
        return lat2, lon2
    return lat[:, None], lon[:, None]


def grid_cells(domain: Domain, layout: Layout, lat: np.ndarray, lon: np.ndarray) -> tuple:
    """``(rows, inside_rows, cols, inside_cols)`` of the locations on a grid domain's cells."""
    if layout == "grid":  # each axis once, then broadcast: no (H, W, n) distances
        shape = (lat.size, lon.size)
        rows = _cell(domain.latitude, lat[:, None])
        cols = _cell(domain.longitude, lon[None, :])
        return tuple(np.broadcast_to(a, shape).copy() for a in (*rows, *cols))
    lat2, lon2 = _points(layout, lat, lon)
    return (*_cell(domain.latitude, lat2), *_cell(domain.longitude, lon2))


def check_domain(
    domain: Domain,
    layout: Layout,
    lat: np.ndarray,
    lon: np.ndarray,
    *,
    cells: tuple[np.ndarray, ...] | None = None,
) -> None:
    """Refuse locations outside the model's domain.

    Grid models serve the cells of their training grid; station models serve points within
    the training stations' bounding box widened by :data:`DOMAIN_MARGIN_DEG`. ``cells``: for
    grid domains, :func:`grid_cells` of the same locations when already known.

    Raises:
        DataError: naming the first location outside and the domain's extent.

    """
    m = DOMAIN_MARGIN_DEG
    if domain.layout == "grid":
        cells = cells if cells is not None else grid_cells(domain, layout, lat, lon)
        ok = cells[1] & cells[3]
    else:
        lat2, lon2 = _points(layout, lat, lon)
        ok = (lat2 >= domain.latitude.min() - m) & (lat2 <= domain.latitude.max() + m)
        ok &= (lon2 >= domain.longitude.min() - m) & (lon2 <= domain.longitude.max() + m)
    if not ok.all():  # the message only now: formatting it costs as much as the check
        extent = (
            f"latitude {domain.latitude.min():g}...{domain.latitude.max():g}, longitude "
            f"{domain.longitude.min():g}...{domain.longitude.max():g}"
        )
        why = (
            f"outside the training grid ({extent})"
            if domain.layout == "grid"
            else f"more than {m:g} degree(s) outside the training stations' extent ({extent})"
        )
        lat2, lon2 = _points(layout, lat, lon)
        i = tuple(np.argwhere(~ok)[0])
        index = f"locations[{i[0]}] " if layout == "station" else ""
        raise DataError(
            f"{index}(latitude {lat2[i]:.4f}, longitude {lon2[i]:.4f}) is outside the "
            f"model's domain: {why}"
        )


def locate(
    domain: Domain,
    layout: Layout,
    lat: np.ndarray,
    lon: np.ndarray,
    stations: tuple[str, ...] = (),
    *,
    cells: tuple[np.ndarray, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the request's locations on the training domain.

    Args:
        domain: the training domain.
        layout: the request's layout; for ``"grid"`` ``lat``/``lon`` are axes.
        lat: request latitudes (grid axis or points).
        lon: request longitudes (grid axis or points).
        stations: request point ids (matched by id first on station domains).
        cells: grid domains: :func:`grid_cells` of the same locations, when already known.

    Returns:
        ``(rows, cols)`` of shape ``(H, W)`` (``W = 1`` for points); for station domains
        ``rows`` are station positions and ``cols`` zero.

    Raises:
        DataError: naming the first location outside the training domain.

    """
    lat2, lon2 = _points(layout, lat, lon)
    ids: list[str] = [] if layout == "grid" else list(stations)
    if domain.layout == "station":
        known = {s: i for i, s in enumerate(domain.station)}
        d = np.abs(lat2[..., None] - domain.latitude) + np.abs(lon2[..., None] - domain.longitude)
        rows = np.argmin(d, axis=-1)
        ok = np.take_along_axis(d, rows[..., None], -1)[..., 0] <= STATION_TOLERANCE_DEG
        for i, s in enumerate(ids):
            if s in known:
                rows[i, 0], ok[i, 0] = known[s], True
        if not ok.all():  # messages are formatted only for an answer that needs them
            _raise_outside(
                ok,
                lat2,
                lon2,
                "no training station within "
                f"{STATION_TOLERANCE_DEG} degrees (known ids: {list(domain.station)[:10]})",
            )
        return rows, np.zeros_like(rows)
    rows, ok_r = cells[:2] if cells is not None else _cell(domain.latitude, lat2)
    cols, ok_c = cells[2:] if cells is not None else _cell(domain.longitude, lon2)
    if not (ok_r.all() and ok_c.all()):
        _raise_outside(
            ok_r & ok_c,
            lat2,
            lon2,
            f"outside the training grid (latitude {domain.latitude.min()}..."
            f"{domain.latitude.max()}, longitude {domain.longitude.min()}..."
            f"{domain.longitude.max()})",
        )
    return rows, cols


def _cell(axis: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index of the cell of ``axis`` (centres) containing ``x``, and whether it is inside."""
    facts = _facts(axis)
    if x.size <= 16 and x.dtype == np.float64 and facts.values is not None:  # see _nearest
        points = x.ravel().tolist()
        found = [_nearest(facts.values, v) for v in points]
        if None not in found:
            at = [int(i) for i in found if i is not None]
            # |axis[idx] - x| <= half + 1e-9 with numpy's float64 differences and bound
            inside = [
                abs(facts.values[i] - v) <= facts.inside for i, v in zip(at, points, strict=True)
            ]
            return (
                np.array(at, np.intp).reshape(x.shape),
                np.array(inside, bool).reshape(x.shape),
            )
    idx = np.argmin(np.abs(x[..., None] - axis), axis=-1)
    return idx, np.abs(axis[idx] - x) <= facts.half + 1e-9


def _nearest(values: list[float], v: float) -> int | None:
    """``argmin(|v - values|)`` (the first of equal distances) on a strictly increasing axis.

    The same float64 differences as numpy's, found by bisection: distances fall towards
    ``v`` from the left and rise from the right, so the minimum is at the neighbours of
    ``v``'s insertion point (walking left over rounding ties). ``None`` for a value that is
    not finite (the caller then takes numpy's path).
    """
    if not math.isfinite(v):
        return None
    j = bisect.bisect_left(values, v)
    if j == len(values) or (j > 0 and abs(v - values[j - 1]) <= abs(v - values[j])):
        best = abs(v - values[j - 1])
        j -= 1
        while j > 0 and abs(v - values[j - 1]) == best:
            j -= 1
    return j


@dataclass(frozen=True)
class _AxisFacts:
    axis: np.ndarray
    centre: float
    half: Any  # half the smallest spacing, in the axis dtype (as numpy computes it)
    inside: float  # half + 1e-9, as numpy computes it, for Python comparisons
    values: list[float] | None  # the axis as floats when strictly increasing, else None


_AXIS_FACTS: dict[int, _AxisFacts] = {}
"""``id(axis) -> facts`` of the domain axes seen (each a model's)."""


def _facts(axis: np.ndarray) -> _AxisFacts:
    """What :func:`_cell` and :func:`_wrap_longitude` need of a domain axis, found once.

    The entry holds the axis itself, so its ``id`` stays its own while cached; the domain
    axes of the served models are the only callers, and the cache is bounded all the same.
    """
    facts = _AXIS_FACTS.get(id(axis))
    if facts is None or facts.axis is not axis:
        centre = (float(np.min(axis)) + float(np.max(axis))) / 2
        half = np.abs(np.diff(axis)).min() / 2 if axis.size > 1 else 0.5  # axis dtype kept
        values = np.asarray(axis, np.float64).ravel().tolist()
        increasing = (
            axis.ndim == 1 and axis.size > 0 and all(a < b for a, b in itertools.pairwise(values))
        )
        if len(_AXIS_FACTS) >= 64:
            _AXIS_FACTS.clear()
        facts = _AXIS_FACTS[id(axis)] = _AxisFacts(
            axis, centre, half, float(half + 1e-9), values if increasing else None
        )
    return facts


def _axis_facts(axis: np.ndarray) -> tuple[float, Any]:
    """``(centre, half the smallest spacing)`` of a domain axis, found once per axis."""
    facts = _facts(axis)
    return facts.centre, facts.half


def _raise_outside(ok: np.ndarray, lat: np.ndarray, lon: np.ndarray, why: str) -> None:
    if not ok.all():
        i = np.argwhere(~ok)[0]
        raise DataError(
            f"location (latitude {lat[tuple(i)]:.4f}, longitude {lon[tuple(i)]:.4f}) needs "
            f"static inputs from the training domain but is {why}; send the static inputs "
            "with the request"
        )
