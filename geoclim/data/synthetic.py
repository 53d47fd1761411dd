"""Seeded synthetic air-quality datasets whose physics is known: ``make_dataset``.

The generator runs a small chemistry-transport model on a regular latitude/longitude grid, one
model step at a time (vectorised over space, kernels in
:mod:`geoclim.data.synthetic_physics`), after a spin-up so that fields do not start from zero.
The same seed always gives the same data, whatever subset of variables is requested;
different seeds give different sources, coastlines and weather. Outputs are canonical
Datasets (float32, CF attributes, latitude ascending) that pass
:func:`geoclim.data.schema.validate`. A process keeps its few latest small results and hands
out copies when the same arguments come again (a multirun's jobs, a notebook re-run).

True drivers (what an explanation method should find):

* meteorology -- ``t2m``: seasonal + diurnal cycle (peak 15 h local, damped by cloud and
  over sea), smooth static pattern, synoptic AR(1) anomaly, 6.5 K/km lapse rate with
  ``elevation``. ``ssrd``: solar geometry (latitude, day of year, hour; zero at night) times
  cloud attenuation. ``blh``: low at night (mechanical mixing by wind), high in the
  afternoon, higher in summer, over land and under clear skies. ``u10``/``v10``: mean wind +
  AR(1) in time (36 h) on a few smooth spatial modes. ``rh``: dewpoint follows the daily-mean
  temperature, so ``rh`` is anti-correlated with the ``t2m`` diurnal cycle. ``sp``: elevation
  plus a synoptic term tied to cloud (low pressure, clouds); ``tp``: rain under thick cloud.
* emissions -- Gaussian "cities" + a line "highway" (traffic: rush hours at 8 h and 17:30
  local on weekdays, lower at weekends), residential heating in cities (grows as ``t2m``
  falls below 288 K, evening peak) and a few industrial point stacks (SO2, NOx, PM). The
  static ``emissions`` field is the relative total NOx emission strength.
* transport -- every step: entrainment of background air when the boundary layer grows,
  emissions diluted in the boundary layer (``dC = E dt / blh``), semi-Lagrangian advection by
  ``u10``/``v10``, explicit diffusion, first-order dry deposition (``v_d / blh``), washout by
  ``tp``, slow exchange with the free troposphere; background air flows in at the edges.
* chemistry -- O3 is produced ~ ``ssrd`` x f(``t2m``) x NOx/(NOx + 4 ppb), titrated by NO
  (O3 + NO -> NO2: low O3 near NOx sources, mostly at night) and deposited; NO2 is NOx times a
  photostationary fraction that falls in sunlight; NOx and SO2 oxidise (faster in sunlight)
  into secondary PM2.5 (nitrate, sulphate); ``pm25`` = primary + secondary + background;
  ``pm10`` = ``pm25`` + coarse (road dust, wind-blown dust from dry land), so pm10 >= pm25.

Memory: the outputs are preallocated float32 arrays of ``n_times * nlat * nlon * 4`` bytes
per variable (one year of hourly 128 x 128 is ~0.57 GB per variable, ~4.6 GB for the eight
defaults); the internal state is a few grids. Time is linear in steps x cells: 30 days of
64 x 64 hourly take ~1.5 s, a year of 128 x 128 hourly under a minute.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import schema
from geoclim.data import synthetic_physics as phys
from geoclim.errors import ConfigError
from geoclim.types import LATITUDE, LONGITUDE, STATION, TIME

logger = logging.getLogger(__name__)

DEFAULT_VARIABLES = ("pm25", "o3", "no2", "t2m", "u10", "v10", "blh", "ssrd")
STATIC_VARIABLES = ("elevation", "land_sea_mask", "emissions")
DEFAULT_GRID_DEG = 0.25
MODEL_STEP = pd.Timedelta("1h")
"""Longest model step; coarser output steps are averaged (``tp`` summed) over sub-steps."""

_PM_DRIVERS = ("emissions", "hour", "weekday", "t2m", "blh", "u10", "v10", "ssrd", "tp")
DRIVERS: dict[str, tuple[str, ...]] = {
    "no2": ("emissions", "hour", "weekday", "blh", "u10", "v10", "ssrd"),
    "nox": ("emissions", "hour", "weekday", "blh", "u10", "v10", "ssrd"),
    "o3": ("ssrd", "t2m", "no2", "emissions", "blh", "u10", "v10", "land_sea_mask", "season"),
    "pm25": _PM_DRIVERS,
    "pm10": (*_PM_DRIVERS, "rh", "land_sea_mask"),
    "so2": ("emissions", "weekday", "t2m", "blh", "u10", "v10", "ssrd", "tp"),
    "co": ("emissions", "hour", "weekday", "t2m", "blh", "u10", "v10"),
}
"""True drivers of each pollutant: registry variables plus calendar terms (hour, weekday,
season). ``emissions`` stands for the static source pattern."""

_DIAGNOSTICS: dict[str, Callable[[phys.Met, np.ndarray], np.ndarray]] = {
    "pm25": lambda m, c: c[phys.PMP] + c[phys.PMS],
    "pm10": lambda m, c: c[phys.PMP] + c[phys.PMS] + c[phys.PMC],
    "o3": lambda m, c: c[phys.O3],
    "no2": lambda m, c: c[phys.NOX] * phys.no2_fraction(m),
    "nox": lambda m, c: c[phys.NOX],
    "so2": lambda m, c: c[phys.SO2],
    "co": lambda m, c: c[phys.CO],
    "t2m": lambda m, c: m.t2m,
    "rh": lambda m, c: m.rh,
    "u10": lambda m, c: m.u10,
    "v10": lambda m, c: m.v10,
    "ws": lambda m, c: np.hypot(m.u10, m.v10),
    "wd": lambda m, c: (270.0 - np.rad2deg(np.arctan2(m.v10, m.u10))) % 360.0,
    "sp": lambda m, c: m.sp,
    "blh": lambda m, c: m.blh,
    "tp": lambda m, c: m.tp,
    "ssrd": lambda m, c: m.ssrd,
}
VARIABLES: tuple[str, ...] = tuple(_DIAGNOSTICS)
"""Time-varying variables the generator can produce."""
_SUMMED = {"tp"}  # accumulated over an output step; everything else is averaged

BLOCK_CELL_STEPS = 2**16
"""Grid cells x model steps of meteorology computed at once (0.5 MiB a float64 field)."""

MEMO_ENTRIES = 8
"""Results of the most recent distinct calls kept in the process (see :func:`_memoised`)."""
MEMO_BYTES = 64e6
"""The kept results' total size (older ones are dropped first); larger results are not kept."""

_F = TypeVar("_F", bound=Callable[..., xr.Dataset])


def _hashable(value: Any) -> Any:
    """``value`` as a cache-key part: sequences (lists, Hydra ``ListConfig``) as tuples."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        return value
    return tuple(_hashable(v) for v in value)


def _memoised(fn: _F) -> _F:
    """Keep the Datasets of ``fn``'s last :data:`MEMO_ENTRIES` distinct calls; hand out copies.

    The generator is a pure function of its arguments, and one process often asks for the
    same data many times: every job of a Hydra multirun (the basic launcher runs them in
    one process), a notebook's re-runs, a test session. A repeated call returns a deep copy
    of the kept result (the caller may change it freely) instead of re-running the
    simulation. Results over :data:`MEMO_BYTES` and calls with unhashable arguments are not
    kept; errors are never kept.
    """
    signature = inspect.signature(fn)
    kept: OrderedDict[tuple, xr.Dataset] = OrderedDict()
    lock = threading.Lock()

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> xr.Dataset:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        key = tuple((name, _hashable(v)) for name, v in bound.arguments.items())
        try:
            hash(key)
        except TypeError:
            return fn(*args, **kwargs)
        with lock:
            hit = kept.get(key)
            if hit is not None:
                kept.move_to_end(key)
        if hit is not None:
            return hit.copy(deep=True)
        ds = fn(*args, **kwargs)
        if ds.nbytes <= MEMO_BYTES:
            with lock:
                kept[key] = ds.copy(deep=True)
                while len(kept) > MEMO_ENTRIES or sum(d.nbytes for d in kept.values()) > (
                    MEMO_BYTES
                ):
                    kept.popitem(last=False)
        return ds

    wrapper.cache_clear = kept.clear  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


@_memoised
def make_dataset(
    variables: Sequence[str] = DEFAULT_VARIABLES,
    *,
    nlat: int = 8,
    nlon: int = 8,
    days: float = 3,
    freq: str = "1h",
    start: str = "2023-01-01",
    seed: int = 0,
    grid_deg: float | None = None,
    lat0: float = 40.0,
    lon0: float = -100.0,
    static: Sequence[str] = STATIC_VARIABLES,
    wind: tuple[float, float] | None = None,
    spinup_days: float = 1.0,
) -> xr.Dataset:
    """Generate a seeded synthetic canonical grid Dataset with known physics.

    Args:
        variables: time-varying variables to return (see :data:`VARIABLES`); static names
            (:data:`STATIC_VARIABLES`) are accepted here too. Dependencies (e.g. the
            meteorology behind ``o3``) are always simulated, only the requested are stored.
        nlat: number of latitude cells.
        nlon: number of longitude cells.
        days: length of the returned period in days (may be fractional).
        freq: output time step, a fixed pandas offset such as ``"1h"``, ``"30min"``, ``"1D"``.
            Steps longer than one hour are means over hourly model steps (``tp``: sums).
        start: first time stamp (UTC).
        seed: seed of :func:`numpy.random.default_rng`; same seed, same data.
        grid_deg: cell size in degrees (default 0.25).
        lat0: latitude of the grid centre.
        lon0: longitude of the grid centre.
        static: static fields to add (no ``time`` dim), from :data:`STATIC_VARIABLES`.
        wind: a uniform constant ``(u10, v10)`` in m s-1 replacing the random wind, for
            controlled experiments; everything else is unchanged.
        spinup_days: simulated time discarded before ``start`` so that fields are spun up.

    Returns:
        Dataset with dims ``(time, latitude, longitude)`` (latitude ascending), float32 data
        variables with CF ``units``/``long_name``, and attrs ``title``, ``source``, ``seed``,
        ``grid_deg`` and ``drivers`` (the true drivers of each pollutant).

    Raises:
        ConfigError: on an unknown variable, a grid smaller than 1 x 1 or off the globe,
            ``days <= 0`` or an unparseable ``freq``/``start``.

    """
    plan = _plan(
        variables, static, nlat, nlon, days, freq, start, seed, grid_deg, lat0, lon0, spinup_days
    )
    fields, stat = _simulate(plan, wind)
    grid = plan.grid
    dims = (TIME, LATITUDE, LONGITUDE)
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        name: (dims, fields[name]) for name in plan.variables
    }
    data_vars.update({name: ((LATITUDE, LONGITUDE), getattr(stat, name)) for name in plan.static})
    ds = xr.Dataset(data_vars, coords={TIME: plan.times, LATITUDE: grid.lat, LONGITUDE: grid.lon})
    del fields, data_vars  # the Dataset holds the only reference, so _finish can swap arrays
    return _finish(ds, plan)


@_memoised
def make_station_dataset(
    n_stations: int = 10,
    variables: Sequence[str] = DEFAULT_VARIABLES,
    *,
    nlat: int = 16,
    nlon: int = 16,
    days: float = 3,
    freq: str = "1h",
    start: str = "2023-01-01",
    seed: int = 0,
    grid_deg: float | None = None,
    lat0: float = 40.0,
    lon0: float = -100.0,
    static: Sequence[str] = STATIC_VARIABLES,
    wind: tuple[float, float] | None = None,
    spinup_days: float = 1.0,
) -> xr.Dataset:
    """Sample the :func:`make_dataset` field at randomly placed stations.

    The grid is simulated exactly as :func:`make_dataset` does with the same arguments (only
    the station cells are stored), and each station sits at the centre of a distinct grid
    cell, so its values equal the grid values at its ``latitude``/``longitude``. Station
    placement uses its own random stream, so it does not change the field.

    Args:
        n_stations: number of stations, 1 to ``nlat * nlon``.
        variables: as for :func:`make_dataset`.
        nlat: latitude cells of the underlying grid.
        nlon: longitude cells of the underlying grid.
        days: as for :func:`make_dataset`.
        freq: as for :func:`make_dataset`.
        start: as for :func:`make_dataset`.
        seed: as for :func:`make_dataset`; also seeds station placement.
        grid_deg: as for :func:`make_dataset`.
        lat0: as for :func:`make_dataset`.
        lon0: as for :func:`make_dataset`.
        static: static fields to add (dim ``station``).
        wind: as for :func:`make_dataset`.
        spinup_days: as for :func:`make_dataset`.

    Returns:
        Dataset with dims ``(time, station)``, string station ids and ``latitude`` /
        ``longitude`` coordinates along ``station``; same attrs as :func:`make_dataset`.

    Raises:
        ConfigError: as :func:`make_dataset`, or if ``n_stations`` is outside
            ``[1, nlat * nlon]``.

    """
    plan = _plan(
        variables, static, nlat, nlon, days, freq, start, seed, grid_deg, lat0, lon0, spinup_days
    )
    n_cells = nlat * nlon
    if not isinstance(n_stations, int | np.integer) or not 1 <= n_stations <= n_cells:
        raise ConfigError(
            f"n_stations={n_stations!r} must be an integer in [1, nlat * nlon = {n_cells}]"
        )
    flat = np.sort(np.random.default_rng([seed, 1]).choice(n_cells, n_stations, replace=False))
    cells = (flat // nlon, flat % nlon)
    fields, stat = _simulate(plan, wind, cells)
    dims = (TIME, STATION)
    data_vars: dict[str, tuple[tuple[str, ...], np.ndarray]] = {
        name: (dims, fields[name]) for name in plan.variables
    }
    data_vars.update({name: ((STATION,), getattr(stat, name)[cells]) for name in plan.static})
    coords = {
        TIME: plan.times,
        STATION: [f"SYN{k:04d}" for k in range(n_stations)],
        LATITUDE: ((STATION,), plan.grid.lat[cells[0]]),
        LONGITUDE: ((STATION,), plan.grid.lon[cells[1]]),
    }
    ds = xr.Dataset(data_vars, coords=coords)
    del fields, data_vars
    return _finish(ds, plan)


@dataclass(frozen=True)
class _Plan:
    """Validated arguments: what to store, the grid, the time axis and the model steps."""

    variables: tuple[str, ...]
    static: tuple[str, ...]
    grid: phys.Grid
    times: pd.DatetimeIndex
    sub: int  # model steps per output step
    n_spinup: int  # model steps before times[0]
    seed: int

    @property
    def dt_s(self) -> float:
        """Model step in seconds."""
        return (self.times[1] - self.times[0]).total_seconds() / self.sub


def _plan(
    variables: Sequence[str],
    static: Sequence[str],
    nlat: int,
    nlon: int,
    days: float,
    freq: str,
    start: str,
    seed: int,
    grid_deg: float | None,
    lat0: float,
    lon0: float,
    spinup_days: float,
) -> _Plan:
    variables = (variables,) if isinstance(variables, str) else variables
    static_out = [static] if isinstance(static, str) else list(static)
    dynamic: list[str] = []
    for name in dict.fromkeys(variables):
        if name in STATIC_VARIABLES:
            static_out.append(name)
        elif name in _DIAGNOSTICS:
            dynamic.append(name)
        else:
            raise ConfigError(
                f"unknown variable {name!r}; the synthetic generator makes "
                f"{sorted(VARIABLES)} and static {list(STATIC_VARIABLES)}"
            )
    for name in static_out:
        if name not in STATIC_VARIABLES:
            raise ConfigError(
                f"unknown static field {name!r}; choose from {list(STATIC_VARIABLES)}"
            )
    for label, n in (("nlat", nlat), ("nlon", nlon)):
        if not isinstance(n, int | np.integer) or n < 1:
            raise ConfigError(f"{label}={n!r} must be an integer >= 1")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed={seed!r} must be a non-negative integer")
    grid = _make_grid(nlat, nlon, DEFAULT_GRID_DEG if grid_deg is None else grid_deg, lat0, lon0)
    if not isinstance(days, int | float | np.number) or not days > 0 or not math.isfinite(days):
        raise ConfigError(f"days={days!r} must be a positive number of days")
    if not spinup_days >= 0:
        raise ConfigError(f"spinup_days={spinup_days!r} must be >= 0")
    try:
        step = pd.to_timedelta(freq)
    except (ValueError, TypeError):
        step = None
    if step is None or pd.isna(step) or step <= pd.Timedelta(0):
        raise ConfigError(
            f"freq={freq!r} is not a positive fixed time step; use e.g. '1h', '30min', '3h' or '1D'"
        )
    n_out = int(round(days * pd.Timedelta("1D") / step))
    if n_out < 2:
        raise ConfigError(
            f"days={days!r} at freq={freq!r} gives {n_out} time step(s); a dataset needs at least 2"
        )
    try:
        first = pd.Timestamp(start)
    except (ValueError, TypeError):
        raise ConfigError(f"start={start!r} is not a date/time such as '2023-01-01'") from None
    if first.tz is not None:
        first = first.tz_convert("UTC").tz_localize(None)
    times = pd.date_range(first, periods=n_out, freq=step)
    sub = max(1, math.ceil(step / MODEL_STEP))
    n_spinup = math.ceil(spinup_days * pd.Timedelta("1D") / (step / sub))
    return _Plan(
        tuple(dynamic), tuple(dict.fromkeys(static_out)), grid, times, sub, n_spinup, int(seed)
    )


def _make_grid(nlat: int, nlon: int, deg: float, lat0: float, lon0: float) -> phys.Grid:
    if not deg > 0:
        raise ConfigError(f"grid_deg={deg!r} must be > 0")
    lat = lat0 + (np.arange(nlat) - (nlat - 1) / 2) * deg
    lon = lon0 + (np.arange(nlon) - (nlon - 1) / 2) * deg
    if lat[0] - deg / 2 < -90 - 1e-9 or lat[-1] + deg / 2 > 90 + 1e-9:
        raise ConfigError(
            f"a grid of nlat={nlat} x {deg} deg centred on lat0={lat0} spans "
            f"{lat[0] - deg / 2:g}..{lat[-1] + deg / 2:g} deg; it must stay within -90..90 "
            f"(at most {int(180 // deg)} rows of {deg} deg)"
        )
    if lon[0] < -180 or lon[-1] > 360 or nlon * deg > 360 + 1e-9:
        raise ConfigError(
            f"a grid of nlon={nlon} x {deg} deg centred on lon0={lon0} spans "
            f"{lon[0]:g}..{lon[-1]:g}; cell centres must lie within -180..360 and cover at "
            "most 360 deg"
        )
    return phys.Grid(lat, lon, float(deg))


def _simulate(
    plan: _Plan,
    wind: tuple[float, float] | None,
    cells: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], phys.Static]:
    """Run spin-up + the returned period; return requested fields ``(time, *space)`` float32.

    ``cells`` (row, column) index arrays restrict what is stored to those grid cells.
    """
    grid, sub = plan.grid, plan.sub
    rng = np.random.default_rng(plan.seed)
    stat = phys.make_static(rng, grid)
    n_out = len(plan.times)
    n_steps = plan.n_spinup + n_out * sub
    t0_s = plan.times[0].value / 1e9 - plan.n_spinup * plan.dt_s
    meteorology = phys.Meteorology(rng, grid, stat, n_steps, plan.dt_s, t0_s, wind)
    chemistry = phys.Chemistry(grid, stat, plan.dt_s)

    space = grid.shape if cells is None else (len(cells[0]),)
    n_bytes = 4 * n_out * math.prod(space) * len(plan.variables)
    if n_bytes > 4 * 2**30:
        logger.warning("synthetic dataset needs %.1f GiB of memory", n_bytes / 2**30)
    out = {name: np.empty((n_out, *space), dtype=np.float32) for name in plan.variables}
    acc = {name: np.zeros(space) for name in plan.variables}
    block = max(1, BLOCK_CELL_STEPS // math.prod(grid.shape))
    for k0 in range(0, n_steps, block):
        # Meteorology and emissions of a block of steps at once; the tracers step by step.
        mets = meteorology.block(k0, min(k0 + block, n_steps))
        emitted = phys.emissions(stat, mets)  # (n, tracer, nlat, nlon)
        for j in range(len(emitted)):
            k, met = k0 + j, mets.step(j)
            chemistry.step(met, emitted[j])
            if k < plan.n_spinup:
                continue
            i, r = divmod(k - plan.n_spinup, sub)
            for name in plan.variables:
                value = _DIAGNOSTICS[name](met, chemistry.c)
                value = value if cells is None else value[cells]
                if sub == 1:
                    out[name][i] = value
                    continue
                acc[name] += value
                if r == sub - 1:
                    out[name][i] = acc[name] if name in _SUMMED else acc[name] / sub
                    acc[name][:] = 0.0
    return out, stat


def _drivers_text(names: Sequence[str]) -> str:
    """One line per pollutant in ``names``: ``name: driver, driver, ...``."""
    lines = [f"{name}: {', '.join(DRIVERS[name])}" for name in names if name in DRIVERS]
    return "\n".join(lines) if lines else "no pollutants requested"


def _finish(ds: xr.Dataset, plan: _Plan) -> xr.Dataset:
    # annotate() copies what it casts; one variable at a time keeps the peak at data + one.
    for name in list(ds.data_vars):
        ds[name] = schema.annotate(ds[[name]])[name]
    for name in plan.variables:
        if name in DRIVERS:
            ds[name].attrs["drivers"] = ", ".join(DRIVERS[name])
    ds.attrs.update(
        title="geoclim synthetic air-quality dataset",
        source="geoclim synthetic generator",
        seed=plan.seed,
        grid_deg=plan.grid.deg,
        drivers=_drivers_text(plan.variables),
    )
    return schema.validate(ds, plan.variables + plan.static, source="synthetic")
