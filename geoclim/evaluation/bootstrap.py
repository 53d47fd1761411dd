"""Bootstrap confidence intervals of scores, resampling init times (stationary bootstrap).

Forecasts from nearby init times share verifying observations and weather regimes, so their
errors are correlated over init time. Init times are resampled with the **stationary
bootstrap** (Politis & Romano 1994): blocks of consecutive inits (wrapping around) with
geometric lengths of mean ``L``. ``L`` comes from the errors' autocorrelation: the
automatic rule of Politis & White (2004, corrected by Patton, Politis & White 2009;
``arch.bootstrap.optimal_block_length``) applied to the per-init MSE of the point forecast
(mean over leads) of each target gives ``L_PW`` (the largest over targets), and

    L = 1 + BLOCK_FACTOR * (L_PW - 1)          (capped at N / 2)

``L_PW`` minimises the error of the variance estimate; intervals need less of its
downward bias, so the dependent part of the block is stretched (independent errors keep
``L ~ 1``).

A replicate is the same metric function called with the replicate's draw counts ``c_i``
(``init_counts``, see :mod:`geoclim.evaluation.metrics`), so the time mean ``(1 / N)
sum_i Z_i`` becomes ``sum_i c_i Z_i / sum_i c_i``. The 95 % interval is the percentile
interval of the replicates, widened about the estimate by three factors:

- ``sqrt(N / (N - 1))``: the bootstrap variance of a mean of ``N`` values is ``(N - 1) / N``
  of the unbiased one;
- ``1 / sqrt(1 - G / (L s2))``: the stationary bootstrap's variance is low by about
  ``G / L`` (Politis & White 2004), with ``s2 = sum_k R(k)`` and ``G = sum_k |k| R(k)``
  from flat-top lag-window autocovariances ``R`` of the loss series (correction capped);
- ``t_{nu, 0.975} / z_0.975`` with ``nu = max(N / L - 1, 4)``: the variance is estimated
  from about ``N / L`` independent blocks (the floor keeps a handful of blocks from
  giving unbounded intervals).

``scripts/check_bootstrap.py`` measures the coverage this gives (recorded in
``experiments/bootstrap/``).
"""

from __future__ import annotations

import logging

import numpy as np
import xarray as xr
from scipy import stats

from geoclim.evaluation import metrics as m
from geoclim.evaluation import table
from geoclim.types import INIT_TIME, QUANTILE

log = logging.getLogger(__name__)

SAMPLE = "sample"
BOUND = "bound"
BLOCK_FACTOR = 4.0
MAX_BIAS = 0.75  # cap of the variance-bias correction G / (L s2)
MIN_DOF = 4.0  # floor of nu: t_4 / z = 1.42 at most, however few blocks there are


def init_loss_series(inputs: table.Inputs) -> xr.Dataset:
    """Per-init MSE of the point forecast, averaged over space and leads: ``(init_time,)``."""
    space = [d for d in inputs.reduce_dims if d != INIT_TIME]
    f, o = m.prepare(inputs.point, inputs.truth)
    se = (f - o) ** 2
    per_init = m.weighted_mean(se, space, inputs.weights) if space else se
    rest = [d for d in per_init.dims if d != INIT_TIME]
    return per_init.mean(rest, skipna=True) if rest else per_init


def block_length(series: np.ndarray) -> float:
    """Mean block length ``L`` for one loss series (see the module docstring), >= 1."""
    x = np.asarray(series, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size < 8 or np.allclose(x, x[0]):
        return 1.0
    from arch.bootstrap import optimal_block_length  # here: arch takes 0.3 s to import

    pw = float(optimal_block_length(x)["stationary"].iloc[0])
    pw = max(pw, 1.0) if np.isfinite(pw) else 1.0
    return float(np.clip(1.0 + BLOCK_FACTOR * (pw - 1.0), 1.0, x.size / 2))


def flat_top_moments(series: np.ndarray) -> tuple[float, float]:
    """``(s2, G)``: long-run variance and ``sum_k |k| R(k)`` with a flat-top lag window.

    The window's bandwidth follows Politis & White (2004): ``M = 2 m`` with ``m`` the first
    lag after which ``K = max(5, sqrt(log10 N))`` autocorrelations are all within
    ``2 sqrt(log10 N / N)``; weights 1 up to ``M / 2``, falling linearly to 0 at ``M``.
    """
    x = np.asarray(series, dtype=np.float64)
    x = x[np.isfinite(x)] - np.nanmean(x)
    n = x.size
    if n < 8:
        return float(np.dot(x, x) / max(n, 1)), 0.0
    r = np.array([np.dot(x[k:], x[: n - k]) / n for k in range(n)])
    if r[0] <= 0:
        return 0.0, 0.0
    rho, k_n = r / r[0], max(5, int(np.ceil(np.sqrt(np.log10(n)))))
    limit = 2.0 * np.sqrt(np.log10(n) / n)
    quiet = [m for m in range(n - k_n) if np.all(np.abs(rho[m + 1 : m + 1 + k_n]) < limit)]
    m = quiet[0] if quiet else n // 4
    big_m = int(min(2 * max(m, 1), n - 1))
    lags = np.arange(1, big_m + 1)
    window = np.where(lags / big_m <= 0.5, 1.0, 2.0 * (1.0 - lags / big_m))
    s2 = r[0] + 2.0 * float(np.sum(window * r[1 : big_m + 1]))
    g = 2.0 * float(np.sum(window * lags * r[1 : big_m + 1]))
    return s2, g


def widening(series: np.ndarray, mean_block: float) -> float:
    """The factor the percentile half-widths are stretched by (module docstring)."""
    x = np.asarray(series, dtype=np.float64)
    n = int(np.isfinite(x).sum())
    if n < 2:
        return 1.0
    s2, g = flat_top_moments(x)
    bias = float(np.clip(g / (mean_block * s2), 0.0, MAX_BIAS)) if s2 > 0 else 0.0
    nu = max(n / mean_block - 1.0, MIN_DOF)
    t_ratio = float(stats.t.ppf(0.975, nu) / stats.norm.ppf(0.975))
    return float(np.sqrt(n / (n - 1.0)) / np.sqrt(1.0 - bias) * t_ratio)


def choose_block_length(inputs: table.Inputs) -> tuple[float, float]:
    """``(L, widening)`` from the targets' per-init loss series (the largest of each)."""
    series = init_loss_series(inputs)
    blocks = [block_length(series[name].values) for name in series.data_vars] or [1.0]
    block = max(blocks)
    widen = max([widening(series[name].values, block) for name in series.data_vars] or [1.0])
    return block, widen


def stationary_counts(
    n_init: int, n_boot: int, mean_block: float, rng: np.random.Generator
) -> np.ndarray:
    """``(n_boot, n_init)`` draw counts of a stationary bootstrap (circular, geometric blocks).

    Each replicate draws ``n_init`` positions: the first at random, each next one the
    successor of the previous (wrapping) with probability ``1 - 1 / mean_block``, else a
    new random start. ``mean_block = 1`` is the iid bootstrap.
    """
    p_new = 1.0 / max(float(mean_block), 1.0)
    starts = rng.integers(0, n_init, size=(n_boot, n_init))
    new = rng.random((n_boot, n_init)) < p_new
    new[:, 0] = True
    pos = np.empty((n_boot, n_init), dtype=np.int64)
    pos[:, 0] = starts[:, 0]
    for t in range(1, n_init):
        pos[:, t] = np.where(new[:, t], starts[:, t], (pos[:, t - 1] + 1) % n_init)
    counts = np.zeros((n_boot, n_init), np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], pos), 1.0)
    return counts


def bootstrap_scores(
    inputs: table.Inputs,
    *,
    n_boot: int = 1000,
    mean_block: float | None = None,
    seed: int = 0,
    rows: list[table.Metric] | None = None,
) -> xr.Dataset:
    """Bootstrap replicates of the table's CI metrics.

    Args:
        inputs: the scoring inputs (``init_time`` must be among ``reduce_dims``).
        n_boot: number of replicates.
        mean_block: mean block length in inits; default :func:`choose_block_length`.
        seed: seed of the resampling.
        rows: metric rows to resample; default :func:`geoclim.evaluation.table.ci_rows`.

    Returns:
        Dataset ``(sample, metric, lead_time[, ...])``, one data variable per target, with
        attrs ``n_boot``, ``block_length`` (mean, in inits), ``widening`` (the factor
        :func:`confidence_interval` applies) and ``seed``.

    """
    with m.shared_terms():
        return _bootstrap_scores(inputs, n_boot, mean_block, seed, rows)


def _bootstrap_scores(
    inputs: table.Inputs,
    n_boot: int,
    mean_block: float | None,
    seed: int,
    rows: list[table.Metric] | None,
) -> xr.Dataset:
    auto_block, widen = choose_block_length(inputs)
    mean_block = auto_block if mean_block is None else mean_block
    n_init = inputs.truth.sizes[INIT_TIME]
    counts = xr.DataArray(
        stationary_counts(n_init, n_boot, mean_block, np.random.default_rng(seed)),
        dims=(SAMPLE, INIT_TIME),
        coords={INIT_TIME: inputs.truth[INIT_TIME].values},
    )
    scores: dict[str, xr.Dataset] = {}
    for row in rows if rows is not None else table.ci_rows():
        scores.update(table.evaluate(row, inputs, counts))
    index = xr.DataArray(np.array(list(scores), dtype=str), dims="metric", name="metric")
    parts = [v.drop_vars(QUANTILE, errors="ignore") for v in scores.values()]
    out = xr.concat(parts, dim=index, coords="minimal", compat="override")
    out.attrs.update(n_boot=n_boot, block_length=float(mean_block), widening=widen, seed=seed)
    return out.transpose(SAMPLE, "metric", ...)


def confidence_interval(
    samples: xr.Dataset,
    estimate: xr.Dataset,
    level: float = 0.95,
    widen: float | None = None,
) -> xr.Dataset:
    """Percentile interval of the replicates about ``estimate``: ``bound = [lower, upper]``.

    Args:
        samples: replicates with a ``sample`` dim (from :func:`bootstrap_scores`).
        estimate: the full-sample scores (same variables, no ``sample``).
        level: coverage of the interval.
        widen: factor applied to the distances from ``estimate``; default the
            ``widening`` attribute of ``samples`` (1 without it).

    Returns:
        ``samples`` without ``sample``, with ``bound``.

    """
    alpha = (1.0 - level) / 2.0
    ci = samples.quantile([alpha, 1.0 - alpha], dim=SAMPLE, skipna=True)
    scale = float(samples.attrs.get("widening", 1.0) if widen is None else widen)
    ci = estimate + (ci - estimate) * scale
    # the widened interval stays within the score's possible range (RMSE >= 0, skill <= 1)
    lo, hi = zip(*(table.lookup(str(name))[0].bounds for name in ci["metric"].values), strict=True)
    ci = ci.clip(
        xr.DataArray(np.array(lo), dims="metric", coords={"metric": ci["metric"]}),
        xr.DataArray(np.array(hi), dims="metric", coords={"metric": ci["metric"]}),
    )
    return ci.rename(quantile=BOUND).assign_coords({BOUND: ["lower", "upper"]})
