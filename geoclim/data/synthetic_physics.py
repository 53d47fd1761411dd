"""Physics kernels of the synthetic generator: static fields, meteorology, emissions, transport.

Everything here is numpy, vectorised over the grid ``(nlat, nlon)`` (latitude ascending, so
row ``i + 1`` lies north of row ``i``). Meteorology and emissions do not depend on the tracers,
so they are computed for a block of model steps at once (a leading ``time`` axis); the only
loop over time, the transport and chemistry of :class:`Chemistry`, lives in
:mod:`geoclim.data.synthetic`. Units are the canonical ones of the variable registry; tracer
concentrations are ppb (NOx, O3, SO2), ppm (CO) and ug m-3 (particles), and emissions are
fluxes in ``<concentration unit> * m / h`` so that one model step adds ``E * dt / blh``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import map_coordinates
from scipy.signal import lfilter

M_PER_DEG = 111_320.0
SOLAR_CONSTANT = 1361.0
LAPSE_RATE = 0.0065  # K m-1
EDDY_DIFFUSIVITY = 1500.0  # m2 s-1, horizontal, unresolved mesoscale mixing
MAX_DIFFUSION_NUMBER = 0.2  # explicit stencil is stable below 0.25
SOURCE_SIZE_M = 25_000.0  # cities and stacks are this size or smaller

TRACERS = ("nox", "o3", "pm_primary", "pm_secondary", "pm_coarse", "so2", "co")
"""Transported species, in the order of the tracer axis."""
NOX, O3, PMP, PMS, PMC, SO2, CO = range(len(TRACERS))

# Free-troposphere / regional background (O3 is replaced by a seasonal value each step).
BACKGROUND = np.array([1.0, 35.0, 3.0, 2.0, 4.0, 0.5, 0.12])
# Dry deposition velocities in m s-1 (O3 is scaled up by day, see `chemistry`).
DEPOSITION = np.array([0.003, 0.002, 0.001, 0.001, 0.01, 0.005, 0.0])


@dataclass(frozen=True)
class Grid:
    """A regular latitude/longitude grid; cell sizes in metres."""

    lat: np.ndarray  # (nlat,) ascending
    lon: np.ndarray  # (nlon,)
    deg: float

    @property
    def shape(self) -> tuple[int, int]:
        """``(nlat, nlon)``."""
        return self.lat.size, self.lon.size

    @property
    def dy_m(self) -> float:
        """Meridional cell size."""
        return self.deg * M_PER_DEG

    @property
    def dx_m(self) -> np.ndarray:
        """Zonal cell size per row, shape ``(nlat, 1)``."""
        return (self.dy_m * np.maximum(np.cos(np.deg2rad(self.lat)), 1e-3))[:, None]


@dataclass(frozen=True)
class Static:
    """Time-invariant surface fields, each ``(nlat, nlon)``."""

    elevation: np.ndarray  # m
    land_sea_mask: np.ndarray  # land fraction, 0..1
    urban: np.ndarray  # city blobs (residential heating), max 1
    traffic: np.ndarray  # cities + highway (traffic emissions), max ~1
    point: np.ndarray  # industrial stacks (SO2, NOx, PM), max 1
    emissions: np.ndarray  # relative total NOx emission strength, max 1
    t_anomaly: np.ndarray  # static temperature pattern, ~N(0, 1)


def spatial_modes(
    rng: np.random.Generator, shape: tuple[int, int], n: int, max_wavenumber: float
) -> np.ndarray:
    """Smooth random cosine modes over the domain, shape ``(n, nlat, nlon)``, RMS ~ 1."""
    ny, nx = shape
    y = ((np.arange(ny) + 0.5) / ny)[None, :, None]
    x = ((np.arange(nx) + 0.5) / nx)[None, None, :]
    k = rng.uniform(0.3, max_wavenumber, size=(n, 2)) * rng.choice([-1.0, 1.0], size=(n, 2))
    phase = rng.uniform(0.0, 2 * np.pi, size=n)[:, None, None]
    arg = 2 * np.pi * (k[:, 0, None, None] * x + k[:, 1, None, None] * y) + phase
    return np.sqrt(2.0) * np.cos(arg)


def random_field(
    rng: np.random.Generator, shape: tuple[int, int], n: int = 6, max_wavenumber: float = 2.5
) -> np.ndarray:
    """Draw a smooth static field ``(nlat, nlon)`` with roughly zero mean and unit variance."""
    modes = spatial_modes(rng, shape, n, max_wavenumber)
    return np.tensordot(rng.standard_normal(n), modes, axes=1) / np.sqrt(n)


def ar1_series(
    rng: np.random.Generator, n_steps: int, n: int, tau_h: float, dt_h: float
) -> np.ndarray:
    """Stationary unit-variance AR(1) coefficients, shape ``(n_steps, n)``, e-folding ``tau_h``."""
    phi = float(np.exp(-dt_h / tau_h))
    noise = rng.standard_normal((n_steps, n))
    start = rng.standard_normal(n)
    zi = (phi * start)[None, :]
    return lfilter([np.sqrt(1.0 - phi**2)], [1.0, -phi], noise, axis=0, zi=zi)[0]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _segment_distance(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((yy - a[0]) * ab[0] + (xx - a[1]) * ab[1]) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.hypot(yy - (a[0] + t * ab[0]), xx - (a[1] + t * ab[1]))


def make_static(rng: np.random.Generator, grid: Grid) -> Static:
    """Draw land, relief and the emission sources: Gaussian cities, a highway, point stacks."""
    ny, nx = grid.shape
    land = _sigmoid(3.0 * (random_field(rng, grid.shape) + 1.0))  # mostly land, some coast
    relief = random_field(rng, grid.shape)
    elevation = land * np.clip(300.0 + 450.0 * relief, 0.0, None)
    t_anomaly = random_field(rng, grid.shape)

    yy, xx = np.mgrid[0:ny, 0:nx].astype(float)
    weights = land.ravel() ** 2 / np.sum(land**2)
    n_cities = min(12, 2 + ny * nx // 400)
    cells = rng.choice(ny * nx, size=n_cities, replace=n_cities > ny * nx, p=weights)
    cy = cells // nx + rng.uniform(-0.5, 0.5, n_cities)
    cx = cells % nx + rng.uniform(-0.5, 0.5, n_cities)
    cell_km = float(np.mean(grid.dx_m)) / 1e3
    sigma = rng.uniform(0.7, 1.3, n_cities) * max(0.6, 15.0 / cell_km)
    strength = rng.lognormal(0.0, 0.5, n_cities)
    strength /= strength.max()
    d2 = (yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2
    urban = np.tensordot(strength, np.exp(-0.5 * d2 / sigma[:, None, None] ** 2), axes=1)
    urban /= urban.max()

    # Highway: a straight line source across the domain between two opposite edges.
    ends = rng.uniform(0.0, 1.0, 2)
    if rng.random() < 0.5:
        a, b = np.array([ends[0] * (ny - 1), 0.0]), np.array([ends[1] * (ny - 1), nx - 1.0])
    else:
        a, b = np.array([0.0, ends[0] * (nx - 1)]), np.array([ny - 1.0, ends[1] * (nx - 1)])
    highway = 0.35 * np.exp(-0.5 * (_segment_distance(yy, xx, a, b) / 0.6) ** 2) * land

    n_points = min(6, 1 + ny * nx // 800)
    point = np.zeros(grid.shape)
    stacks = rng.choice(ny * nx, size=n_points, replace=n_points > ny * nx, p=weights)
    np.add.at(point.ravel(), stacks, rng.lognormal(0.0, 0.4, n_points))
    point /= point.max()

    # Sources are sub-grid on coarse grids: spread their emissions over the whole cell.
    ratio = min(1.0, SOURCE_SIZE_M / float(np.mean(grid.dx_m)))
    urban, highway, point = urban * ratio**2, highway * ratio, point * ratio**2
    traffic = urban + highway
    total = traffic + 0.6 * point
    return Static(elevation, land, urban, traffic, point, total / total.max(), t_anomaly)


@dataclass
class Met:
    """Meteorology of one model step or of a block of ``n`` steps.

    Of one step: fields ``(nlat, nlon)``, calendar terms ``(1, nlon)``, ``doy`` a float. Of a
    block (:meth:`Meteorology.block`): a leading ``time`` axis on each, ``(n, nlat, nlon)``,
    ``(n, 1, nlon)`` and ``doy`` ``(n,)``; :meth:`step` picks one step out of it.
    """

    t2m: np.ndarray  # K
    rh: np.ndarray  # %
    u10: np.ndarray  # m s-1
    v10: np.ndarray  # m s-1
    blh: np.ndarray  # m
    ssrd: np.ndarray  # W m-2
    sp: np.ndarray  # Pa
    tp: np.ndarray  # mm over the model step
    cloud: np.ndarray  # cloud fraction 0..1
    local_hour: np.ndarray  # local solar hour, 0..24
    weekday: np.ndarray  # local day of week, Monday = 0
    doy: float | np.ndarray  # day of year (0-based, fractional)

    def step(self, j: int) -> Met:
        """Step ``j`` of a block, as the Met of one step (views, no copies)."""
        fields = {name: value[j] for name, value in vars(self).items() if name != "doy"}
        return Met(**fields, doy=float(np.asarray(self.doy)[j]))


def solar_cos_zenith(t_s: float | np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Cosine of the solar zenith angle at ``t_s`` seconds since 1970 (UTC).

    A float ``t_s`` gives ``(nlat, nlon)``; an array of ``n`` times gives ``(n, nlat, nlon)``.
    """
    t_s = np.asarray(t_s, dtype=float)[..., None, None]  # (..., 1, 1)
    doy = (t_s / 86400.0) % 365.2425
    decl = np.deg2rad(23.44) * np.sin(2 * np.pi * (doy - 80.0) / 365.2425)
    local_hour = ((t_s % 86400.0) / 3600.0 + lon / 15.0) % 24.0  # (..., 1, nlon)
    hour_angle = np.deg2rad(15.0 * (local_hour - 12.0))
    phi = np.deg2rad(lat)[:, None]
    return np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(hour_angle)


def _saturation_vapour_pressure(t_k: np.ndarray) -> np.ndarray:
    tc = t_k - 273.15
    return 6.112 * np.exp(17.62 * tc / (243.12 + tc))  # Magnus, hPa


class Meteorology:
    """Seeded meteorology: AR(1) processes in time on a few smooth spatial modes per field.

    Args:
        rng: the generator (draws happen in a fixed order, whatever is requested).
        grid: the grid.
        static: static fields (elevation, land fraction, temperature pattern).
        n_steps: number of model steps (spin-up included).
        dt_s: model step in seconds.
        t0_s: time of step 0 in seconds since 1970 (UTC).
        wind: a uniform constant ``(u10, v10)`` in m s-1 that replaces the random wind.

    """

    N_MODES = 4

    def __init__(
        self,
        rng: np.random.Generator,
        grid: Grid,
        static: Static,
        n_steps: int,
        dt_s: float,
        t0_s: float,
        wind: tuple[float, float] | None = None,
    ) -> None:
        self.grid, self.static, self.dt_s, self.t0_s = grid, static, dt_s, t0_s
        dt_h = dt_s / 3600.0
        names_tau = {"u": 36.0, "v": 36.0, "temp": 72.0, "cloud": 12.0, "moist": 48.0}
        self.basis = {k: spatial_modes(rng, grid.shape, self.N_MODES, 1.2) for k in names_tau}
        self.coef = {
            k: ar1_series(rng, n_steps, self.N_MODES, tau, dt_h) for k, tau in names_tau.items()
        }
        self.mean_wind = (rng.normal(2.0, 1.5), rng.normal(0.0, 1.5))
        self.wind = wind
        hemisphere = np.sign(grid.lat)[:, None] + (grid.lat == 0)[:, None]
        self._abs_lat = np.abs(grid.lat)[:, None]
        self._hemisphere = hemisphere
        self._lsm = static.land_sea_mask
        self._surface_p = 101325.0 * np.exp(-static.elevation / 8400.0)

    def _field(self, name: str, k0: int, k1: int) -> np.ndarray:
        """Field ``name`` at model steps ``k0 .. k1 - 1``, ``(n, nlat, nlon)``."""
        return np.tensordot(self.coef[name][k0:k1], self.basis[name], axes=1) / np.sqrt(
            self.N_MODES
        )

    def at(self, k: int) -> Met:
        """Meteorology at model step ``k``."""
        return self.block(k, k + 1).step(0)

    def block(self, k0: int, k1: int) -> Met:
        """Meteorology at model steps ``k0 .. k1 - 1``, each field with a leading time axis."""
        t_s = self.t0_s + np.arange(k0, k1) * self.dt_s  # (n,)
        doy = (t_s / 86400.0) % 365.2425
        t_s3, doy3 = t_s[:, None, None], doy[:, None, None]  # (n, 1, 1)
        lon = self.grid.lon[None, None, :]
        local_hour = ((t_s3 % 86400.0) / 3600.0 + lon / 15.0) % 24.0  # (n, 1, nlon)
        weekday = (np.floor((t_s3 + lon * 240.0) / 86400.0) + 3) % 7  # 1970-01-01: Thursday

        cloud_raw = self._field("cloud", k0, k1)
        cloud = _sigmoid(1.5 * cloud_raw - 0.3)
        cosz = solar_cos_zenith(t_s, self.grid.lat, self.grid.lon)
        clear_sky = SOLAR_CONSTANT * 0.75 * np.clip(cosz, 0.0, None) ** 1.15
        ssrd = clear_sky * (1.0 - 0.75 * cloud**3.4)  # Kasten-Czeplak cloud attenuation

        # +1 in local summer, -1 in local winter (coldest mid-January in the north).
        season = -np.cos(2 * np.pi * (doy3 - 15.0) / 365.2425) * self._hemisphere
        t_clim = 302.0 - 0.4 * self._abs_lat + 0.25 * self._abs_lat * season
        diurnal = (
            6.0
            * (0.3 + 0.7 * self._lsm)
            * (1.0 - 0.5 * cloud)
            * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)
        )
        t_daily = (
            t_clim
            + 2.5 * self._field("temp", k0, k1)
            + 1.0 * self.static.t_anomaly
            - LAPSE_RATE * self.static.elevation
        )
        t2m = t_daily + diurnal
        depression = np.clip(
            3.0 + 5.0 * self._lsm * (1.0 - cloud) + 1.5 * self._field("moist", k0, k1), 0.3, None
        )
        e_dew = _saturation_vapour_pressure(t_daily - depression)
        rh = np.clip(100.0 * e_dew / _saturation_vapour_pressure(t2m), 5.0, 100.0)

        shape = (k1 - k0, *self.grid.shape)
        if self.wind is None:
            u10 = self.mean_wind[0] + 3.0 * self._field("u", k0, k1)
            v10 = self.mean_wind[1] + 3.0 * self._field("v", k0, k1)
        else:
            u10 = np.full(shape, float(self.wind[0]))
            v10 = np.full(shape, float(self.wind[1]))

        day_shape = np.clip(np.sin(np.pi * (local_hour - 7.0) / 14.0), 0.0, None)
        h_night = 80.0 + 25.0 * np.hypot(u10, v10)  # mechanical mixing
        h_day = (1100.0 + 500.0 * season) * (0.4 + 0.6 * self._lsm) * (1.0 - 0.4 * cloud)
        blh = h_night + np.clip(h_day - h_night, 0.0, None) * day_shape

        sp = self._surface_p - 800.0 * cloud_raw
        tp = (self.dt_s / 3600.0) * 1.5 * np.clip(cloud_raw - 1.0, 0.0, None) ** 1.5
        return Met(t2m, rh, u10, v10, blh, ssrd, sp, tp, cloud, local_hour, weekday, doy)


def _hour_bump(hour: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (hour - centre + 12.0) % 24.0 - 12.0
    return np.exp(-0.5 * (d / width) ** 2)


def emissions(static: Static, met: Met) -> np.ndarray:
    """Emission fluxes ``(tracer, nlat, nlon)`` in ``<tracer unit> m h-1`` at one step.

    Of a block of ``n`` steps (:meth:`Meteorology.block`): ``(n, tracer, nlat, nlon)``.

    Traffic (cities + highway) has morning/evening rush hours on weekdays only and is lower at
    weekends; residential heating (cities) grows as t2m falls below 288 K and peaks in the
    evening; industrial stacks are nearly constant. Coarse dust rises with wind over dry land.
    """
    h = met.local_hour
    workday = met.weekday < 5
    plateau = np.clip(np.sin(np.pi * (h - 6.0) / 16.0), 0.0, None)
    rush = _hour_bump(h, 8.0, 1.2) + 0.8 * _hour_bump(h, 17.5, 1.6)
    weekly = np.where(workday, 1.0, np.where(met.weekday == 5, 0.75, 0.6))
    traffic = static.traffic * ((0.35 + 0.45 * plateau + workday * rush) * weekly)
    heat_profile = 0.4 + _hour_bump(h, 19.0, 2.5) + 0.5 * _hour_bump(h, 7.5, 1.5)
    heating = static.urban * np.clip((288.0 - met.t2m) / 10.0, 0.0, 3.0) * heat_profile
    stacks = static.point * np.where(workday, 1.0, 0.85)
    ws = np.hypot(met.u10, met.v10)
    dust = 40.0 * static.land_sea_mask * np.clip(ws - 3.0, 0.0, None) ** 2 * (1.0 - met.rh / 100.0)

    lead = met.t2m.shape[:-2]  # () for one step, (n,) for a block
    out = np.empty((*lead, len(TRACERS), *static.traffic.shape))
    out[..., NOX, :, :] = 4500.0 * traffic + 5000.0 * stacks
    out[..., O3, :, :] = 0.0
    out[..., PMP, :, :] = 400.0 * traffic + 900.0 * heating + 500.0 * stacks
    out[..., PMS, :, :] = 0.0
    out[..., PMC, :, :] = 150.0 * traffic + dust
    out[..., SO2, :, :] = 4000.0 * stacks + 80.0 * heating
    out[..., CO, :, :] = 30.0 * traffic + 25.0 * heating + 5.0 * stacks
    return out


def _pad(c: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Pad ``(n, ny, nx)`` with one ring of per-tracer boundary values."""
    n, ny, nx = c.shape
    out = np.empty((n, ny + 2, nx + 2))
    out[:] = boundary[:, None, None]
    out[:, 1:-1, 1:-1] = c
    return out


def advect(c: np.ndarray, di: np.ndarray, dj: np.ndarray, boundary: np.ndarray) -> np.ndarray:
    """Semi-Lagrangian advection: bilinear interpolation at the departure points.

    Args:
        c: concentrations ``(tracer, nlat, nlon)``.
        di: northward displacement over the step, in cells ``(nlat, nlon)``.
        dj: eastward displacement over the step, in cells ``(nlat, nlon)``.
        boundary: inflow values per tracer ``(tracer,)`` used outside the domain.

    Returns:
        The advected concentrations ``(tracer, nlat, nlon)``.

    """
    n, ny, nx = c.shape
    padded = _pad(c, boundary)  # cell (i, j) sits at (i + 1, j + 1)
    ii = np.clip(np.arange(ny)[:, None] - di + 1.0, 0.0, ny + 1.0)
    jj = np.clip(np.arange(nx)[None, :] - dj + 1.0, 0.0, nx + 1.0)
    where = np.stack(np.broadcast_arrays(ii, jj))  # (2, nlat, nlon) departure points
    out = np.empty_like(c)
    for k in range(n):
        map_coordinates(padded[k], where, output=out[k], order=1, mode="nearest", prefilter=False)
    return out


def diffuse(
    c: np.ndarray, alpha_i: np.ndarray | float, alpha_j: np.ndarray | float, boundary: np.ndarray
) -> np.ndarray:
    """One explicit five-point diffusion step; ``alpha = K dt / dx**2`` per direction."""
    p = _pad(c, boundary)
    return (
        c
        + alpha_i * (p[:, 2:, 1:-1] + p[:, :-2, 1:-1] - 2 * c)
        + alpha_j * (p[:, 1:-1, 2:] + p[:, 1:-1, :-2] - 2 * c)
    )


def o3_background(doy: float) -> float:
    """Seasonal free-troposphere ozone in ppb (spring maximum)."""
    return 33.0 + 8.0 * np.sin(2 * np.pi * (doy - 19.0) / 365.2425)


def no2_fraction(met: Met) -> np.ndarray:
    """NO2/NOx ratio: photolysis shifts NOx towards NO in sunlight (photostationary state)."""
    return 0.9 - 0.35 * np.clip(met.ssrd / 600.0, 0.0, 1.0)


class Chemistry:
    """Box-model chemistry, deposition, boundary-layer dilution and transport on the grid.

    ``step`` advances the tracer state ``c`` ``(tracer, nlat, nlon)`` by one model step:
    entrainment of background air when the boundary layer grows, emissions diluted in the
    boundary layer (``E dt / blh``), advection + diffusion, then chemistry and deposition.
    """

    def __init__(self, grid: Grid, static: Static, dt_s: float) -> None:
        self.grid, self.static, self.dt_s = grid, static, dt_s
        self.dt_h = dt_s / 3600.0
        self.alpha_i = min(EDDY_DIFFUSIVITY * dt_s / grid.dy_m**2, MAX_DIFFUSION_NUMBER)
        self.alpha_j = np.minimum(EDDY_DIFFUSIVITY * dt_s / grid.dx_m**2, MAX_DIFFUSION_NUMBER)
        self.c = np.broadcast_to(BACKGROUND[:, None, None], (len(TRACERS), *grid.shape)).copy()
        self.blh_prev: np.ndarray | None = None

    def step(self, met: Met, emitted: np.ndarray | None = None) -> None:
        """Advance the state by one model step under ``met`` (of one step).

        ``emitted`` is ``emissions(static, met)`` when the caller has it already (computed for
        a block of steps at once).
        """
        c, dt_h = self.c, self.dt_h
        bg = BACKGROUND.copy()
        bg[O3] = o3_background(float(met.doy))
        bgc = bg[:, None, None]
        if self.blh_prev is not None:  # a growing mixed layer entrains background air
            keep = np.minimum(self.blh_prev / met.blh, 1.0)
            c = c * keep + bgc * (1.0 - keep)
        exchange = 1.0 - np.exp(-dt_h / 48.0)  # slow exchange with the free troposphere
        c = c * (1.0 - exchange) + bgc * exchange
        emitted = emissions(self.static, met) if emitted is None else emitted
        c += emitted * (dt_h / met.blh)
        c = advect(
            c, met.v10 * self.dt_s / self.grid.dy_m, met.u10 * self.dt_s / self.grid.dx_m, bg
        )
        c = diffuse(c, self.alpha_i, self.alpha_j, bg)
        self.c = self._chemistry(np.clip(c, 0.0, None), met)
        self.blh_prev = met.blh

    def _chemistry(self, c: np.ndarray, met: Met) -> np.ndarray:
        dt_h = self.dt_h
        light = np.clip(met.ssrd / 1000.0, 0.0, 1.2)  # photolysis proxy
        # NOx -> HNO3 -> nitrate (secondary PM); SO2 -> sulphate.
        lost_nox = c[NOX] * (1.0 - np.exp(-(0.02 + 0.12 * light) * dt_h))
        lost_so2 = c[SO2] * (1.0 - np.exp(-(0.01 + 0.03 * light) * dt_h))
        c[NOX] -= lost_nox
        c[SO2] -= lost_so2
        c[PMS] += 1.2 * lost_nox + 2.5 * lost_so2
        # O3: photochemical production ~ light * f(T) * NOx (saturating), titration by NO.
        f_t = _sigmoid((met.t2m - 285.0) / 8.0)
        c[O3] += 12.0 * light * f_t * (0.3 + c[NOX] / (c[NOX] + 4.0)) * dt_h
        titration = 0.03 * c[NOX] * (1.0 - 0.8 * np.clip(light / 0.3, 0.0, 1.0))
        c[O3] *= np.exp(-titration * dt_h)
        # Dry deposition through the mixed layer (O3 faster over vegetated land by day).
        v_dep = DEPOSITION[:, None, None] * np.ones_like(met.blh)
        v_dep[O3] *= 1.0 + 1.5 * light * self.static.land_sea_mask
        c *= np.exp(-v_dep * 3600.0 * dt_h / met.blh)
        # Wet scavenging of particles and SO2 by rain (tp in mm over the step).
        washout = np.exp(-0.1 * met.tp)
        c[[PMP, PMS, PMC, SO2]] *= washout
        return c
