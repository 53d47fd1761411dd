"""Deterministic verification metrics, WeatherBench 2 conventions by default.

Every metric takes a ``forecast`` and a ``truth`` Dataset on the same coordinates (the
predictions layout ``(init_time, lead_time, <space>)``), reduces over ``reduce_dims`` and
keeps every other dim. Data variables are scored one by one (those in both Datasets), in
float64. NaN in forecast or truth drops the point and its weight, so masking the truth is
all a caller does to exclude values.

Two stages, as WeatherBench 2 (Rasp et al. 2024) computes its headline scores. With
``init_time`` among ``reduce_dims``, a point statistic ``z`` (``(f - o)^2``, ``|f - o|``,
``f - o``) is first averaged over the other reduced (spatial) dims of each init ``i``,
``Z_i = sum_s w_s z_is / sum_s w_s`` over the defined points, then over the inits that have
one, ``Z = (1 / N) sum_i Z_i``, and finished (``RMSE = sqrt(Z)`` of ``z = (f - o)^2``). With
``pooled=True`` both stages are one weighted mean over every reduced dim (inits with more
verified points weigh more); both agree when nothing is missing.

``init_counts`` (dims ``(sample, init_time)``) replaces ``(1 / N) sum_i`` by
``sum_i c_i Z_i / sum_i c_i``: a bootstrap replicate is the same function called with the
replicate's draw counts, so point estimates and intervals share one code path.

Weights are cell areas (:func:`cell_area_weights`) and may only vary along reduced dims.

Scoring asks for the same terms many times (the forecast's MSE feeds ``rmse``, ``mse``,
every ``skill_<ref>`` and ``rmse_diff_<ref>``). Inside :func:`shared_terms` the functions
marked :func:`shared` compute each distinct call once: calls are the same when they get the
same objects (by identity) and equal plain arguments, so values are exactly those of the
separate calls. Their results are shared: callers must not modify them in place.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import cf_xarray  # noqa: F401 -- registers the .cf accessor (bounds from cell centres)
import numpy as np
import xarray as xr

from geoclim.data.quantiles import median_weights
from geoclim.errors import DataError
from geoclim.types import INIT_TIME, LATITUDE, QUANTILE

Dims = Sequence[str]
BOUNDS_NAMES = ("lat_bnds", "latitude_bnds", "lat_bounds", "latitude_bounds")
F = TypeVar("F", bound=Callable[..., Any])
_SHARED: ContextVar[dict | None] = ContextVar("geoclim_shared_terms", default=None)


@contextlib.contextmanager
def shared_terms() -> Iterator[None]:
    """Within the block, repeated calls of :func:`shared` functions are computed once.

    Nested blocks share the outermost one's results; they are dropped when it ends.
    """
    token = _SHARED.set({}) if _SHARED.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _SHARED.reset(token)


def _key_part(value: Any) -> Any:
    """Arrays and other objects by identity, plain values (dims lists, flags) by value."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return ("id", id(value))


def shared(fn: F) -> F:
    """Mark ``fn`` as a term computed once per distinct call inside :func:`shared_terms`."""
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        memo = _SHARED.get()
        if memo is None:
            return fn(*args, **kwargs)
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # a default passed or left out is the same call
        key = (fn.__qualname__, *((k, _key_part(v)) for k, v in bound.arguments.items()))
        if key not in memo:  # the arguments are kept too: their ids stay theirs
            memo[key] = (fn(*args, **kwargs), bound.arguments)
        return memo[key][0]

    return wrapper  # type: ignore[return-value]


def cell_area_weights(latitude: xr.DataArray, bounds: xr.DataArray | None = None) -> xr.DataArray:
    """Area of each latitude band, normalised to mean 1 over the grid latitudes.

    ``a_j = sin(phi_{j+1/2}) - sin(phi_{j-1/2})`` between the band's edges, ``w_j = a_j /
    mean_k a_k``. Without ``bounds`` the edges lie midway between neighbouring centres and
    half a spacing beyond the outer ones, clipped to +-90 (cf_xarray's ``add_bounds``). On a
    regular grid ``a_j = 2 sin(d / 2) cos(phi_j)``, so ``w`` equals ``cos(phi_j) / mean
    cos``; on an uneven grid it is the true share of the area.

    Args:
        latitude: the ``latitude`` coordinate, degrees north, dim ``(latitude,)``.
        bounds: optional ``(latitude, 2)`` cell edges in degrees (a ``lat_bnds`` variable).

    Returns:
        ``(latitude,)`` float64 weights with mean 1.

    Raises:
        DataError: bounds of the wrong shape, or a band of zero or negative area.

    """
    lat = latitude.astype(np.float64)
    if bounds is None:
        ds = xr.Dataset(coords={LATITUDE: lat.values})
        edges = ds.cf.add_bounds(LATITUDE)[f"{LATITUDE}_bounds"].values
    else:
        edges = np.asarray(bounds, dtype=np.float64)
        if edges.shape != (lat.size, 2):
            raise DataError(
                f"latitude bounds have shape {edges.shape}; expected ({lat.size}, 2) "
                "(one [south, north] pair per grid latitude)"
            )
    edges = np.clip(np.sort(edges, axis=1), -90.0, 90.0)
    area = np.sin(np.deg2rad(edges[:, 1])) - np.sin(np.deg2rad(edges[:, 0]))
    if np.any(area <= 0):
        bad = lat.values[area <= 0].tolist()
        raise DataError(f"latitude cells at {bad} have no area; check the latitude bounds")
    w = xr.DataArray(area / area.mean(), dims=(LATITUDE,), coords={LATITUDE: lat.values})
    return w.rename("area_weights").assign_attrs(
        long_name="cell-area weights from latitude bounds, mean 1 over the grid latitudes"
    )


def spatial_weights(ds: xr.Dataset) -> xr.DataArray | None:
    """Cell-area weights for a grid (``latitude`` is a dim), ``None`` for stations.

    Uses the bounds variable named by the latitude's CF ``bounds`` attribute, or one of
    :data:`BOUNDS_NAMES`, when ``ds`` holds it; else edges midway between centres.
    """
    if LATITUDE not in ds.dims:
        return None
    names = [ds[LATITUDE].attrs.get("bounds"), *BOUNDS_NAMES]
    found = next((n for n in names if n and n in ds.variables), None)
    return cell_area_weights(ds[LATITUDE], ds[found] if found else None)


@shared
def prepare(forecast: xr.Dataset, truth: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """The variables in both, aligned, float64 (no copy of what already is)."""
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    if not names:
        raise DataError(
            f"forecast variables {list(forecast.data_vars)} and truth variables "
            f"{list(truth.data_vars)} have none in common"
        )
    f, o = xr.align(forecast[names], truth[names], join="inner", copy=False)
    return f.astype(np.float64, copy=False), o.astype(np.float64, copy=False)


def _dims(ds: xr.Dataset, reduce_dims: Dims) -> list[str]:
    dims = [d for d in reduce_dims if d in ds.dims]
    if not dims:
        raise DataError(f"reduce_dims {list(reduce_dims)} name none of the dims {list(ds.dims)}")
    return dims


def _point_weights(values: xr.Dataset, dims: list[str], weights: xr.DataArray | None):
    """Weight of every point (0 where undefined), broadcast like ``values``."""
    w = xr.ones_like(values, dtype=np.float64)
    if weights is not None:
        own = set(map(str, weights.dims))
        if own - set(dims) and own & set(dims):
            raise DataError(f"weights dims {sorted(own)} mix reduced {dims} and kept dims")
        if own <= set(dims):
            w = w * weights.astype(np.float64)
    return w.where(values.notnull(), 0.0)


def weighted_mean(
    values: xr.Dataset,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    *,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """The two-stage (or pooled) weighted mean of the module docstring.

    Args:
        values: point values, NaN where undefined.
        reduce_dims: dims averaged over.
        weights: spatial weights or ``None``.
        pooled: one weighted mean over all ``reduce_dims`` instead of per-init means.
        init_counts: ``(sample, init_time)`` draw counts of bootstrap replicates.

    Returns:
        ``values`` reduced over ``reduce_dims`` (plus ``sample`` with ``init_counts``).

    """
    dims = _dims(values, reduce_dims)
    space = [d for d in dims if d != INIT_TIME]
    w = _point_weights(values, dims, weights)
    num = (values.fillna(0.0) * w).sum(space) if space else values.fillna(0.0) * w
    den = w.sum(space) if space else w
    if INIT_TIME in dims and not pooled:  # per-init means, each init weighs 1
        with np.errstate(invalid="ignore", divide="ignore"):
            num = (num / den).fillna(0.0)
        den = (den > 0).astype(np.float64)
    if INIT_TIME in dims:
        if init_counts is not None:
            num = num.map(lambda da: xr.dot(init_counts, da, dim=INIT_TIME))
            den = den.map(lambda da: xr.dot(init_counts, da, dim=INIT_TIME))
        else:
            num, den = num.sum(INIT_TIME), den.sum(INIT_TIME)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den.where(den > 0)


def _reduce(z: xr.Dataset, reduce_dims: Dims, weights, pooled, init_counts) -> xr.Dataset:
    return weighted_mean(z, reduce_dims, weights, pooled=pooled, init_counts=init_counts)


@shared
def mse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean squared error: ``MSE = (1 / N) sum_i mean_w,s((f - o)^2)``."""
    f, o = prepare(forecast, truth)
    return _reduce((f - o) ** 2, reduce_dims, weights, pooled, init_counts)


def rmse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """``RMSE = sqrt(MSE)``: square root of the time mean of the spatial MSE (WB2)."""
    out = mse(
        forecast, truth, reduce_dims=reduce_dims, weights=weights, pooled=pooled,
        init_counts=init_counts,
    )  # fmt: skip
    return out**0.5


def mae(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean absolute error ``(1 / N) sum_i mean_w,s(|f - o|)``."""
    f, o = prepare(forecast, truth)
    return _reduce(abs(f - o), reduce_dims, weights, pooled, init_counts)


def bias(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean error ``(1 / N) sum_i mean_w,s(f - o)``: positive when too high."""
    f, o = prepare(forecast, truth)
    return _reduce(f - o, reduce_dims, weights, pooled, init_counts)


def correlation(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = True,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Pearson correlation of all verified pairs (pooled over every reduced dim).

    ``r = cov_w(f, o) / sqrt(var_w(f) var_w(o))`` with weighted moments ``mean_w`` over the
    pairs where both are defined. Always pooled (``pooled`` is accepted for a uniform
    signature): it measures the joint time and space agreement, the anomaly correlation
    :func:`anomaly_correlation` is the per-init spatial pattern score.
    """
    f, o = prepare(forecast, truth)
    valid = f.notnull() & o.notnull()
    f, o = f.where(valid), o.where(valid)

    def mean(z: xr.Dataset) -> xr.Dataset:
        return _reduce(z, reduce_dims, weights, True, init_counts)

    mf, mo = mean(f), mean(o)
    cov = mean(f * o) - mf * mo
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt((mean(f * f) - mf**2) * (mean(o * o) - mo**2))


def anomaly_correlation(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Anomaly correlation against a climatology, the mean over inits of the spatial ACC.

    ``ACC_i = sum_s w f'o' / sqrt(sum_s w f'^2 sum_s w o'^2)`` per init ``i`` (uncentred,
    WeatherBench 2) with anomalies ``f' = f - c``, ``o' = o - c`` from the climatology ``c``
    at the same valid time and place; ``ACC = (1 / N) sum_i ACC_i``. ``pooled=True`` sums
    over inits and space at once, which is also what one location (a single station, or
    scores by location) gets: there ``ACC_i`` would only be the sign of ``f'o'``. Points
    missing any of ``f``, ``o``, ``c`` are dropped.
    """
    f, o = prepare(forecast, truth)
    c = climatology[list(f.data_vars)].astype(np.float64)
    fa, oa = f - c, o - c
    valid = fa.notnull() & oa.notnull()
    fa, oa = fa.where(valid), oa.where(valid)
    dims = _dims(o, reduce_dims)
    stage = [d for d in dims if d != INIT_TIME]
    if pooled or int(np.prod([o.sizes[d] for d in stage])) <= 1:
        stage = dims  # one location (or by location): correlate over init times as well

    def mean(z: xr.Dataset) -> xr.Dataset:
        return weighted_mean(z, stage, weights, pooled=True, init_counts=init_counts)

    with np.errstate(invalid="ignore", divide="ignore"):
        acc = mean(fa * oa) / np.sqrt(mean(fa**2) * mean(oa**2))
    if INIT_TIME in stage or INIT_TIME not in dims:
        return acc
    return weighted_mean(acc, [INIT_TIME], init_counts=init_counts)


def skill_score(score: xr.Dataset, reference: xr.Dataset) -> xr.Dataset:
    """``1 - score / reference`` for a negatively oriented score (MSE skill score).

    1 for a perfect forecast, 0 for the reference itself, negative when worse.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        return 1.0 - score / reference


def mse_skill(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """MSE skill score against a reference forecast, ``1 - MSE / MSE_ref`` (same points)."""

    def score(f: xr.Dataset) -> xr.Dataset:
        return mse(
            f, truth, reduce_dims=reduce_dims, weights=weights, pooled=pooled,
            init_counts=init_counts,
        )  # fmt: skip

    return skill_score(score(forecast), score(reference))


def reference_rmse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """RMSE of the reference forecast on the forecast's verified points."""
    return rmse(
        reference, truth, reduce_dims=reduce_dims, weights=weights, pooled=pooled,
        init_counts=init_counts,
    )  # fmt: skip


def count(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    init_counts: xr.DataArray | None = None,
    **_: object,
) -> xr.Dataset:
    """Number of verified (non-NaN) truth values."""
    f, o = prepare(forecast, truth)
    n = o.notnull().astype(np.float64)
    dims = _dims(o, reduce_dims)
    if init_counts is not None and INIT_TIME in dims:
        n = n.sum([d for d in dims if d != INIT_TIME])
        return n.map(lambda da: xr.dot(init_counts, da, dim=INIT_TIME))
    return n.sum(dims)


def point_forecast(forecast: xr.Dataset) -> xr.Dataset:
    """The point forecast of a quantile forecast (:mod:`geoclim.data.quantiles` rule).

    Forecasts without a ``quantile`` dim are returned unchanged.
    """
    if QUANTILE not in forecast.dims:
        return forecast
    pairs = median_weights(forecast[QUANTILE].values)
    parts = [forecast.isel({QUANTILE: i}, drop=True) * a for i, a in pairs]
    out = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    for name in out.data_vars:
        out[name].attrs = forecast[name].attrs
    return out
