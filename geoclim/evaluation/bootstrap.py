"""Bootstrap confidence intervals of headline scores, resampling init times.

Forecasts issued at nearby init times share most of their verifying observations (windows
overlap over the horizon), so init times are resampled in **moving blocks** of
``block_length`` consecutive inits (Kunsch 1989); the default block spans the horizon. Each
score is a ratio of sums over init times, so one bootstrap replicate is a weighted sum of
per-init sums::

    S_b = sum_i n_bi s_i          n_bi = times init i is drawn in replicate b

computed for all replicates at once as one matrix product (no Python loop over
replicates). Replicates of RMSE, MAE and the MSE skill against each reference follow::

    RMSE_b = sqrt(SE_b / W_b)   MAE_b = AE_b / W_b   skill_b = 1 - SE_b / SE_ref,b

with ``W`` the summed weights of the verified points (references are verified on the same
points). Intervals are percentile intervals of the replicates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import timeaxis
from geoclim.types import INIT_TIME, LEAD_TIME

SAMPLE = "sample"
BOUND = "bound"


def init_time_sums(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    references: Mapping[str, xr.Dataset],
    *,
    space_dims: Sequence[str],
    weights: xr.DataArray | None = None,
) -> dict[str, xr.Dataset]:
    """Per-init, per-lead weighted sums over space of the verified points.

    Args:
        forecast: point forecast ``(init_time, lead_time, <space>)``.
        truth: truth on the same coordinates, NaN where not verified (a common mask).
        references: reference forecasts on the same coordinates.
        space_dims: dims summed over.
        weights: spatial weights (dims within ``space_dims``) or ``None``.

    Returns:
        ``{"w": W_i, "se": SE_i, "ae": AE_i, "se_<ref>": ...}``, each ``(init_time, lead_time)``.

    """
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    o = truth[names].astype(np.float64)
    valid = o.notnull()
    w = valid.astype(np.float64) if weights is None else valid * weights.astype(np.float64)
    dims = [d for d in space_dims if d in o.dims]

    def total(values: xr.Dataset) -> xr.Dataset:
        return (values.where(valid) * w).sum(dims, skipna=True)

    err = forecast[names].astype(np.float64) - o
    sums = {"w": w.sum(dims), "se": total(err**2), "ae": total(np.abs(err))}
    for ref, ds in references.items():
        sums[f"se_{ref}"] = total((ds[names].astype(np.float64) - o) ** 2)
    return sums


def resample_counts(
    n_init: int, n_boot: int, block_length: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_boot, n_init)`` draw counts of a moving-block bootstrap over init times."""
    block = int(min(max(block_length, 1), n_init))
    n_blocks = -(-n_init // block)
    starts = rng.integers(0, n_init - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n_init]
    counts = np.zeros((n_boot, n_init), np.float64)
    np.add.at(counts, (np.arange(n_boot)[:, None], idx), 1.0)
    return counts


def default_block_length(init_time: np.ndarray, lead_time: np.ndarray | xr.DataArray) -> int:
    """Inits spanned by the horizon: ``ceil(max lead / init spacing)`` (at least 1).

    Calendar leads (integer months / years, see :mod:`geoclim.data.timeaxis`) are compared
    with the init spacing in months.
    """
    if len(init_time) < 2:
        return 1
    index = timeaxis.to_index(init_time)
    lead = np.asarray(getattr(lead_time, "values", lead_time))
    if np.issubdtype(lead.dtype, np.timedelta64):
        spacing = pd.to_timedelta(np.diff(np.asarray(index.values))).median()
        return max(1, int(np.ceil(pd.Timedelta(np.max(lead)) / spacing)))
    per = 12 if getattr(lead_time, "attrs", {}).get("units") == "years" else 1
    months = np.asarray(index.year) * 12 + np.asarray(index.month)
    spacing_months = max(float(np.median(np.diff(months))), 1.0)
    return max(1, int(np.ceil(np.max(lead) * per / spacing_months)))


def bootstrap_scores(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    references: Mapping[str, xr.Dataset],
    *,
    space_dims: Sequence[str],
    weights: xr.DataArray | None = None,
    n_boot: int = 1000,
    block_length: int | None = None,
    seed: int = 0,
) -> xr.Dataset:
    """Bootstrap replicates of RMSE, MAE and MSE skill per lead time.

    Args:
        forecast: point forecast ``(init_time, lead_time, <space>)``.
        truth: truth, NaN where not verified (apply the common mask first).
        references: reference forecasts (``skill_<name>`` replicates).
        space_dims: spatial dims pooled into each score.
        weights: spatial weights or ``None``.
        n_boot: number of replicates.
        block_length: inits per block; default :func:`default_block_length`.
        seed: seed of the resampling.

    Returns:
        Dataset ``(sample, metric, lead_time)``, one data variable per target.

    """
    sums = init_time_sums(forecast, truth, references, space_dims=space_dims, weights=weights)
    if block_length is None:
        block_length = default_block_length(forecast[INIT_TIME].values, forecast[LEAD_TIME])
    counts = xr.DataArray(
        resample_counts(
            forecast.sizes[INIT_TIME], n_boot, block_length, np.random.default_rng(seed)
        ),
        dims=(SAMPLE, INIT_TIME),
    )
    boot = {
        k: v.fillna(0.0).map(lambda da: xr.dot(counts, da, dim=INIT_TIME)) for k, v in sums.items()
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        metrics = {"rmse": np.sqrt(boot["se"] / boot["w"]), "mae": boot["ae"] / boot["w"]}
        for ref in references:
            metrics[f"skill_{ref}"] = 1.0 - boot["se"] / boot[f"se_{ref}"]
    index = xr.DataArray(np.array(list(metrics), dtype=str), dims="metric", name="metric")
    out = xr.concat(list(metrics.values()), dim=index)
    out.attrs.update(n_boot=n_boot, block_length=block_length, seed=seed)
    return out.transpose(SAMPLE, "metric", ...)


def confidence_interval(samples: xr.Dataset, level: float = 0.95, dim: str = SAMPLE) -> xr.Dataset:
    """Percentile interval of the replicates: ``bound = [lower, upper]``."""
    alpha = (1.0 - level) / 2.0
    ci = samples.quantile([alpha, 1.0 - alpha], dim=dim, skipna=True)
    return ci.rename(quantile=BOUND).assign_coords({BOUND: ["lower", "upper"]})
