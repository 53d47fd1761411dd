"""Scores of quantile forecasts: CRPS, quantile score and central-interval coverage.

A quantile forecast holds values ``x_k`` at levels ``0 < tau_1 < ... < tau_Q < 1`` along the
``quantile`` dim. The quantile (pinball) score of one level is
``rho_tau(y - x) = max(tau (y - x), (tau - 1) (y - x))`` and the CRPS is its integral over
the level (Laio & Tamea 2007; Gneiting & Ranjan 2011)::

    CRPS(F, y) = 2 * integral_0^1 rho_tau(y - F^-1(tau)) d tau

:func:`crps` integrates it with the trapezoidal rule over the nodes ``0, tau_1, ..., tau_Q,
1``, where the integrand vanishes at both ends (``tau (y - F^-1(tau)) -> 0`` for a forecast
with a finite mean), which gives each level the weight ``w_k = (tau_{k+1} - tau_{k-1}) / 2``
(``tau_0 = 0``, ``tau_{Q+1} = 1``)::

    CRPS ~= 2 * sum_k w_k rho_{tau_k}(y - x_k)

For a calibrated Gaussian forecast the mean score is 0.996 of the closed-form CRPS with the
19 levels 0.05, ..., 0.95 (-0.4 %), 0.985 with the 9 deciles and 0.877 with (0.1, 0.5, 0.9)
(-12 %: three levels leave the tails unresolved); it always errs low and converges as
levels are added. :func:`quantile_score` is the equally weighted version, ``(2 / Q) sum_k
rho_{tau_k}`` (what ``scoringrules.crps_quantile`` computes), 1.048 of the Gaussian CRPS at
19 levels and 0.886 at (0.1, 0.5, 0.9): it depends on the level set, so compare it only
between forecasts with the same levels.

Every score here is NaN at a point where the observation or any level it needs is missing,
then averaged like :mod:`geoclim.evaluation.metrics` (two stages, or ``pooled``).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoclim.data.quantiles import Levels
from geoclim.errors import DataError
from geoclim.evaluation.metrics import Dims, prepare, weighted_mean
from geoclim.types import QUANTILE


def _levels(forecast: xr.Dataset) -> np.ndarray:
    if QUANTILE not in forecast.dims:
        raise DataError(
            f"a quantile score needs a {QUANTILE!r} dim; the forecast has dims "
            f"{list(forecast.dims)}"
        )
    return forecast[QUANTILE].values.astype(np.float64)


def pinball(forecast: xr.Dataset, truth: xr.Dataset) -> xr.Dataset:
    """``rho_tau(y - x_tau)`` at every point and level (keeps ``quantile``)."""
    f, o = prepare(forecast, truth)
    u = o - f
    tau = f[QUANTILE]
    return xr.where(u >= 0, tau * u, (tau - 1.0) * u)  # NaN stays NaN


def trapezoid_weights(levels: Levels) -> np.ndarray:
    """``w_k = (tau_{k+1} - tau_{k-1}) / 2`` with ``tau_0 = 0`` and ``tau_{Q+1} = 1``."""
    nodes = np.concatenate([[0.0], np.asarray(levels, dtype=np.float64), [1.0]])
    return (nodes[2:] - nodes[:-2]) / 2.0


def _level_sum(loss: xr.Dataset, weights: np.ndarray) -> xr.Dataset:
    """``sum_k w_k loss_k``, NaN where any level is missing."""
    w = xr.DataArray(weights, dims=QUANTILE, coords={QUANTILE: loss[QUANTILE].values})
    total = (loss * w).sum(QUANTILE, skipna=False)
    return total.drop_vars(QUANTILE, errors="ignore")


def crps(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """CRPS of a quantile forecast by trapezoidal integration over the level (see module)."""
    weights_q = trapezoid_weights(_levels(forecast))
    point = 2.0 * _level_sum(pinball(forecast, truth), weights_q)
    dims = [d for d in reduce_dims if d != QUANTILE]
    return weighted_mean(point, dims, weights, pooled=pooled, init_counts=init_counts)


def quantile_score(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Twice the mean pinball loss over the levels, ``(2 / Q) sum_k rho_{tau_k}(y - x_k)``."""
    levels = _levels(forecast)
    loss = _level_sum(pinball(forecast, truth), np.full(levels.size, 1.0 / levels.size))
    dims = [d for d in reduce_dims if d != QUANTILE]
    return weighted_mean(2.0 * loss, dims, weights, pooled=pooled, init_counts=init_counts)


def _level(forecast: xr.Dataset, level: float) -> xr.Dataset:
    levels = _levels(forecast)
    hit = np.flatnonzero(np.isclose(levels, level, rtol=0.0, atol=1e-9))
    if hit.size == 0:
        raise DataError(
            f"quantile level {level:g} is not forecast; the forecast has levels "
            f"{[float(f'{q:g}') for q in levels]}"
        )
    return forecast.isel({QUANTILE: int(hit[0])}, drop=True)


def interval_coverage(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    lower: float,
    upper: float,
    *,
    reduce_dims: Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Fraction of observations inside ``[x_lower, x_upper]``; nominal ``upper - lower``.

    Raises:
        DataError: ``lower`` or ``upper`` is not one of the forecast's levels (the message
            lists those available).

    """
    if not lower < upper:
        raise DataError(f"interval levels must satisfy lower < upper; got {lower}, {upper}")
    lo, o = prepare(_level(forecast, lower), truth)
    hi, _ = prepare(_level(forecast, upper), truth)
    inside = ((o >= lo) & (o <= hi)).astype(np.float64)
    inside = inside.where(o.notnull() & lo.notnull() & hi.notnull())
    return weighted_mean(inside, reduce_dims, weights, pooled=pooled, init_counts=init_counts)


def central_intervals(levels: Levels) -> list[tuple[float, float]]:
    """Symmetric pairs ``(q, 1 - q)`` among the quantile levels, widest first."""
    qs = [float(q) for q in levels]
    pairs = [(q, p) for q in qs for p in qs if q < 0.5 and np.isclose(q + p, 1.0)]
    return sorted(pairs, key=lambda qp: qp[0])
