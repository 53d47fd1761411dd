"""Verification metrics: each one a function of Datasets, returning a Dataset.

Every metric takes a ``forecast`` and a ``truth`` Dataset on the same coordinates (the
predictions layout ``(init_time, lead_time, <space>[, quantile])``), reduces over
``reduce_dims`` and keeps every other dim: reduce ``(init_time, latitude, longitude)`` for
scores per lead time, ``(init_time,)`` for maps per cell, and so on. Data variables are
scored one by one (only those in both Datasets). Values are computed in float64.

Weights ``w`` (e.g. :func:`latitude_weights`) enter every mean as
``mean_w(z) = sum_i w_i z_i / sum_i w_i`` over the points where ``z`` is defined: missing
truth or forecast (NaN) drops the point and its weight, so masking the truth (NaN where it
is missing or imputed) is all a caller does to exclude values. Weights may only vary along
reduced dims (weights along kept dims cannot change a mean and are ignored).

Deterministic scores use xskillscore (``xs.mse``, ``xs.rmse``, ``xs.mae``, ``xs.me``,
``xs.pearson_r`` with ``skipna=True``, which drops missing pairs and their weights); the
quantile CRPS uses scoringrules.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scoringrules as sr
import xarray as xr
import xskillscore as xs

from geoclim.types import LATITUDE, QUANTILE

Dims = Sequence[str]


def latitude_weights(latitude: xr.DataArray) -> xr.DataArray:
    """Area weights of a regular latitude/longitude grid, normalised to mean 1.

    ``w_j = cos(phi_j) / ((1 / n) sum_k cos(phi_k))`` over the ``n`` grid latitudes, so
    ``sum_j w_j = n`` and uniform weights are recovered on the equator.

    Args:
        latitude: the ``latitude`` coordinate, degrees north, dim ``(latitude,)``.

    Returns:
        ``(latitude,)`` float64 weights.

    """
    w = np.cos(np.deg2rad(latitude.astype(np.float64)))
    w = w / w.mean()
    return w.rename("latitude_weights").assign_attrs(
        long_name="cos(latitude) area weights, mean 1 over the grid latitudes"
    )


def spatial_weights(ds: xr.Dataset) -> xr.DataArray | None:
    """Latitude weights for a grid (``latitude`` is a dim), ``None`` for stations."""
    return latitude_weights(ds[LATITUDE]) if LATITUDE in ds.dims else None


def _prepare(forecast: xr.Dataset, truth: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    if not names:
        raise ValueError(
            f"forecast variables {list(forecast.data_vars)} and truth variables "
            f"{list(truth.data_vars)} have none in common"
        )
    f, o = xr.align(forecast[names], truth[names], join="inner")
    return f.astype(np.float64), o.astype(np.float64)


def _dims(ds: xr.Dataset, reduce_dims: Dims) -> list[str]:
    dims = [d for d in reduce_dims if d in ds.dims]
    if not dims:
        raise ValueError(f"reduce_dims {list(reduce_dims)} name none of the dims {list(ds.dims)}")
    return dims


def _weights(ds: xr.Dataset, dims: list[str], weights: xr.DataArray | None) -> xr.DataArray | None:
    """Weights broadcast over exactly ``dims`` (xskillscore's layout), or ``None``."""
    if weights is None:
        return None
    own = set(map(str, weights.dims))
    if not own & set(dims):
        return None
    if not own <= set(dims):
        raise ValueError(f"weights dims {sorted(own)} mix reduced {dims} and kept dims")
    template = xr.ones_like(
        ds[list(ds.data_vars)[0]].isel({d: 0 for d in ds.dims if d not in dims}, drop=True),
        dtype=np.float64,
    )
    return (weights.astype(np.float64) * template).transpose(*dims)


def weighted_mean(
    values: xr.Dataset, reduce_dims: Dims, weights: xr.DataArray | None = None
) -> xr.Dataset:
    """``sum_i w_i z_i / sum_i w_i`` over the defined (non-NaN) points along ``reduce_dims``."""
    dims = _dims(values, reduce_dims)
    w = _weights(values, dims, weights)
    if w is None:
        return values.mean(dims, skipna=True)
    return values.weighted(w).mean(dims, skipna=True)


def _xs(
    fn, forecast: xr.Dataset, truth: xr.Dataset, reduce_dims: Dims, weights: xr.DataArray | None
) -> xr.Dataset:
    f, o = _prepare(forecast, truth)
    dims = _dims(o, reduce_dims)
    return fn(f, o, dim=dims, weights=_weights(o, dims, weights), skipna=True)


def mse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean squared error ``mean_w((f - o)^2)``."""
    return _xs(xs.mse, forecast, truth, reduce_dims, weights)


def rmse(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Root mean squared error ``sqrt(mean_w((f - o)^2))``; ``f = o + c`` gives ``|c|``."""
    return _xs(xs.rmse, forecast, truth, reduce_dims, weights)


def mae(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean absolute error ``mean_w(|f - o|)``."""
    return _xs(xs.mae, forecast, truth, reduce_dims, weights)


def bias(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Mean error ``mean_w(f - o)``: positive when the forecast is too high."""
    return _xs(xs.me, forecast, truth, reduce_dims, weights)


def correlation(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Pearson correlation over ``reduce_dims`` (weighted).

    ``r = cov_w(f, o) / sqrt(var_w(f) var_w(o))`` with ``cov_w(f, o) = mean_w((f - mean_w f)
    (o - mean_w o))``.
    """
    return _xs(xs.pearson_r, forecast, truth, reduce_dims, weights)


def anomaly_correlation(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    climatology: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Anomaly correlation coefficient against a climatology (uncentred, as WeatherBench 2).

    ``ACC = mean_w(f' o') / sqrt(mean_w(f'^2) mean_w(o'^2))`` with anomalies ``f' = f - c``
    and ``o' = o - c`` from the climatology ``c`` at the same valid time and place (the train
    climatology). Points where any of ``f``, ``o``, ``c`` is missing are dropped.
    """
    f, o = _prepare(forecast, truth)
    c = climatology[list(f.data_vars)].astype(np.float64)
    fa, oa = f - c, o - c
    valid = fa.notnull() & oa.notnull()
    fa, oa = fa.where(valid), oa.where(valid)
    num = weighted_mean(fa * oa, reduce_dims, weights)
    den = np.sqrt(
        weighted_mean(fa**2, reduce_dims, weights) * weighted_mean(oa**2, reduce_dims, weights)
    )
    return num / den


def skill_score(score: xr.Dataset, reference: xr.Dataset) -> xr.Dataset:
    """Skill against a reference for a negatively oriented score: ``1 - score / reference``.

    With MSE this is the MSE skill score ``1 - MSE / MSE_ref``: 1 for a perfect forecast, 0
    for the reference itself, negative when worse than the reference.
    """
    return 1.0 - score / reference


def count(truth: xr.Dataset, *, reduce_dims: Dims) -> xr.Dataset:
    """Number of verified (non-NaN) truth values."""
    return truth.notnull().sum(_dims(truth, reduce_dims)).astype(np.float64)


def point_forecast(forecast: xr.Dataset) -> xr.Dataset:
    """The point forecast of a (quantile) forecast: the median, else the mean of quantiles.

    Forecasts without a ``quantile`` dim are returned unchanged.
    """
    if QUANTILE not in forecast.dims:
        return forecast
    q = forecast[QUANTILE].values
    if np.isclose(q, 0.5).any():
        return forecast.isel({QUANTILE: int(np.argmin(np.abs(q - 0.5)))}, drop=True)
    return forecast.mean(QUANTILE)


def pinball_loss(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Pinball (quantile) loss averaged over quantile levels and ``reduce_dims``.

    ``rho_q(o - f_q) = max(q (o - f_q), (q - 1) (o - f_q))``, then
    ``PL = mean_w( (1 / Q) sum_q rho_q )``. Keeps ``quantile`` if it is not reduced.
    """
    f, o = _prepare(forecast, truth)
    u = o - f
    q = f[QUANTILE]
    loss = np.maximum(q * u, (q - 1.0) * u)
    if QUANTILE in reduce_dims:
        loss = loss.mean(QUANTILE)
    return weighted_mean(loss, [d for d in reduce_dims if d != QUANTILE], weights)


def crps_quantile(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """CRPS of a quantile forecast, ``scoringrules.crps_quantile`` (Berrisch & Ziel 2023).

    ``CRPS ~= (2 / Q) sum_q rho_q(o - f_q)`` per point (twice the mean pinball loss over the
    ``Q`` levels), then ``mean_w`` over ``reduce_dims``.
    """
    f, o = _prepare(forecast, truth)
    levels = f[QUANTILE].values

    def _crps(obs: np.ndarray, fct: np.ndarray) -> np.ndarray:
        # numpy backend: the numba gufunc scores a NaN observation as 0, not NaN
        out = sr.crps_quantile(obs, fct, levels, m_axis=-1, backend="numpy")
        return np.where(np.isnan(obs) | np.isnan(fct).any(-1), np.nan, out)

    point = xr.apply_ufunc(_crps, o, f, input_core_dims=[[], [QUANTILE]])
    return weighted_mean(point, [d for d in reduce_dims if d != QUANTILE], weights)


def interval_coverage(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lower: float,
    upper: float,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Fraction of observations inside the central interval ``[f_lower, f_upper]``.

    ``coverage = mean_w( 1[f_lower <= o <= f_upper] )``; a calibrated interval between the
    ``lower`` and ``upper`` quantile levels covers ``upper - lower`` of the observations.
    """
    f, o = _prepare(forecast, truth)
    lo = f.sel({QUANTILE: lower}, method="nearest", drop=True)
    hi = f.sel({QUANTILE: upper}, method="nearest", drop=True)
    inside = ((o >= lo) & (o <= hi)).astype(np.float64)
    inside = inside.where(o.notnull() & lo.notnull() & hi.notnull())
    return weighted_mean(inside, reduce_dims, weights)


def central_intervals(levels: Sequence[float]) -> list[tuple[float, float]]:
    """Symmetric pairs ``(q, 1 - q)`` among the quantile levels, widest first."""
    levels = [float(q) for q in levels]
    pairs = [(q, p) for q in levels for p in levels if q < 0.5 and np.isclose(q + p, 1.0)]
    return sorted(pairs, key=lambda qp: qp[0])
