"""Paired comparisons of two forecasts verified on the same points: "does A beat B?".

Both forecasts are scored on the same inits and points, so their difference is judged by
how it varies over init times, not by two separate intervals:

- :func:`rmse_difference`, ``RMSE_A - RMSE_B`` per lead (negative: A better). Given the
  ``init_counts`` of a bootstrap replicate both RMSEs use the same draws, so its
  percentile interval is a **paired** bootstrap interval.
- the Diebold-Mariano test (Diebold & Mariano 1995) of equal mean squared error, with the
  small-sample correction of Harvey, Leybourne & Newbold (1997). With the per-init loss
  differential ``d_i = mean_w,s((f_A - o)^2) - mean_w,s((f_B - o)^2)`` over the ``N`` inits
  that have one, its mean ``dbar`` and autocovariances ``g_k = (1 / N) sum_i (d_i - dbar)
  (d_{i+k} - dbar)``, and ``h`` the lead time in init spacings (forecasts ``h`` inits apart
  share no verifying time)::

      V    = (g_0 + 2 sum_{k=1}^{h-1} g_k) / N         (g_0 / N if that is not positive)
      DM   = dbar / sqrt(V)
      HLN  = DM * sqrt((N + 1 - 2 h + h (h - 1) / N) / N)
      p    = 2 * (1 - T_{N-1}(|HLN|))                     (Student t, scipy.stats.t)

  ``HLN < 0`` means A has the smaller squared error; :func:`dm_statistic` returns ``HLN``,
  :func:`dm_pvalue` ``p``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats

from geoclim.errors import DataError
from geoclim.evaluation import metrics as m
from geoclim.types import INIT_TIME, LEAD_TIME


def rmse_difference(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: m.Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """``RMSE(forecast) - RMSE(reference)`` on the same points (and bootstrap draws)."""

    def score(f: xr.Dataset) -> xr.Dataset:
        return m.rmse(
            f, truth, reduce_dims=reduce_dims, weights=weights, pooled=pooled,
            init_counts=init_counts,
        )  # fmt: skip

    return score(forecast) - score(reference)


@m.shared
def loss_differential(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: m.Dims,
    weights: xr.DataArray | None = None,
) -> xr.Dataset:
    """Per-init ``d_i``: spatial mean squared error of ``forecast`` minus ``reference``."""
    dims = [d for d in reduce_dims if d != INIT_TIME]
    f, o = m.prepare(forecast, truth)
    r, _ = m.prepare(reference, truth)
    se = (f - o) ** 2
    se_ref = ((r - o) ** 2).where(se.notnull())
    if not dims:
        return se - se_ref
    return m.weighted_mean(se, dims, weights) - m.weighted_mean(se_ref, dims, weights)


def horizon_steps(init_time: np.ndarray, lead_time: np.ndarray) -> np.ndarray:
    """``h`` per lead: ``ceil(lead / init spacing)``, at least 1 (1 for a single init)."""
    lead = pd.to_timedelta(np.asarray(lead_time))
    if len(init_time) < 2:
        return np.ones(len(lead), dtype=int)
    spacing = pd.Timedelta(np.median(np.diff(np.asarray(init_time).astype("datetime64[ns]"))))
    return np.maximum(1, np.ceil(lead / spacing).astype(int)).to_numpy()


def diebold_mariano(d: np.ndarray, h: int) -> tuple[float, float]:
    """HLN-corrected DM statistic and two-sided p-value of one loss differential series.

    Args:
        d: ``(n_init,)`` loss differentials in init order, NaN where not defined.
        h: forecast horizon in init spacings (autocovariance lags ``1 .. h - 1``).

    Returns:
        ``(HLN statistic, p-value)``; NaN for fewer than 3 defined values or zero variance.

    """
    d = np.asarray(d, dtype=np.float64)
    ok = np.isfinite(d)
    n = int(ok.sum())
    if n < 3:
        return np.nan, np.nan
    z = np.where(ok, d - d[ok].mean(), 0.0)
    gamma = [float(np.sum(z[k:] * z[: len(z) - k])) / n for k in range(min(h, n))]
    var = (gamma[0] + 2.0 * sum(gamma[1:])) / n
    if var <= 0:
        var = gamma[0] / n
    if var <= 0:
        return np.nan, np.nan
    dm = d[ok].mean() / np.sqrt(var)
    correction = (n + 1 - 2 * h + h * (h - 1) / n) / n
    hln = dm * np.sqrt(max(correction, 0.0))
    return float(hln), float(2.0 * stats.t.sf(abs(hln), df=n - 1))


@m.shared
def _dm(forecast, truth, reference, reduce_dims, weights) -> tuple[xr.Dataset, xr.Dataset]:
    """``(HLN statistic, p-value)`` per lead: one pass over the loss differentials."""
    if INIT_TIME not in reduce_dims:
        raise DataError(
            f"the Diebold-Mariano test runs over {INIT_TIME!r}; got {list(reduce_dims)}"
        )
    d = loss_differential(forecast, truth, reference, reduce_dims=reduce_dims, weights=weights)
    h = horizon_steps(d[INIT_TIME].values, d[LEAD_TIME].values)
    steps = xr.DataArray(h, dims=LEAD_TIME)

    def test(x: np.ndarray, hk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # x: (..., n_init), hk: (...) horizon of each series; both outputs (...)
        stat, pvalue = np.empty(x.shape[:-1]), np.empty(x.shape[:-1])
        hk = np.broadcast_to(hk, x.shape[:-1])
        for i in np.ndindex(x.shape[:-1]):
            stat[i], pvalue[i] = diebold_mariano(x[i], int(hk[i]))
        return stat, pvalue

    stat, pvalue = xr.apply_ufunc(
        test, d, steps, input_core_dims=[[INIT_TIME], []], output_core_dims=[[], []]
    )
    return stat, pvalue


def dm_statistic(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: m.Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """HLN-corrected Diebold-Mariano statistic per lead (negative: forecast better)."""
    return _dm(forecast, truth, reference, reduce_dims, weights)[0]


def dm_pvalue(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    reference: xr.Dataset,
    *,
    reduce_dims: m.Dims,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    init_counts: xr.DataArray | None = None,
) -> xr.Dataset:
    """Two-sided p-value of the HLN-corrected Diebold-Mariano test per lead."""
    return _dm(forecast, truth, reference, reduce_dims, weights)[1]
