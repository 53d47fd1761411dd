"""Score a predictions Dataset against observations and the two reference baselines.

:func:`score_run` is what every run calls: it takes the predictions of one split, fetches the
truth at each valid time from ``dm.ds`` (imputed values masked out), builds persistence and
climatology forecasts for the same samples, and returns the scores Dataset::

    <xarray.Dataset>
    Dimensions:    (metric: 14, lead_time: 24)
    Coordinates:
      * metric     (metric) <U22 'n' 'rmse' 'mse' 'mae' 'bias' 'corr' 'acc' ...
      * lead_time  (lead_time) timedelta64[ns] 01:00:00 ... 1 days 00:00:00
    Data variables:
        no2        (metric, lead_time) float64 ...
        o3         (metric, lead_time) float64 ...

Metrics (see :mod:`geoclim.evaluation.metrics` for formulas): ``n`` (verified values),
``rmse``, ``mse``, ``mae``, ``bias``, ``corr``, ``acc`` (anomaly correlation against the
train climatology), ``rmse_<ref>`` and ``skill_<ref> = 1 - MSE / MSE_ref`` for
``ref in (persistence, climatology)``, and, for quantile forecasts, ``pinball``, ``crps``
and ``coverage_<nominal %>`` for each central interval. Deterministic scores use the median
of a quantile forecast. With bootstrapping, ``<m>_ci_lower`` / ``<m>_ci_upper`` (95 %) are
added for ``m in (rmse, mae, skill_<ref>)``.

All scores of a run use one **common mask**: a value counts where the truth is observed (not
missing, not imputed) and the forecast and both references are defined, so the model and
its references are verified on exactly the same points. Grids are latitude-weighted.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from geoclim.data import schema, variables
from geoclim.data.assemble import truth_at_valid_time
from geoclim.errors import DataError
from geoclim.evaluation import bootstrap
from geoclim.evaluation import metrics as m
from geoclim.types import INIT_TIME, LEAD_TIME, QUANTILE, STATION, TIME

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

REFERENCES = ("persistence", "climatology")
PER_LEAD_METRICS = ("rmse", "mae", "skill_persistence", "skill_climatology", "crps")
CI_METRICS = ("rmse", "mae", "skill_persistence", "skill_climatology")


def observed(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """``ds[names]`` with values marked by ``<var>_imputed`` set to NaN."""
    out = {}
    for name in names:
        mask = variables.mask_name(name)
        out[name] = ds[name].where(~ds[mask]) if mask in ds else ds[name]
    return xr.Dataset(out)


def reference_forecasts(dm: GeoDataModule, split: str) -> dict[str, xr.Dataset]:
    """Persistence and climatology (default settings) on the samples of ``split``."""
    from geoclim.baselines.climatology import ClimatologyBaseline
    from geoclim.baselines.persistence import PersistenceBaseline

    return {
        "persistence": PersistenceBaseline().fit(dm).predict(dm, split),
        "climatology": ClimatologyBaseline().fit(dm).predict(dm, split),
    }


def compute_scores(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Sequence[str],
    references: Mapping[str, xr.Dataset] | None = None,
    climatology: xr.Dataset | None = None,
    weights: xr.DataArray | None = None,
    n_boot: int = 0,
    seed: int = 0,
) -> xr.Dataset:
    """The scores Dataset of a forecast against truth and references (common mask).

    Args:
        forecast: ``(init_time, lead_time, <space>[, quantile])`` predictions.
        truth: observations on the forecast's coordinates (NaN where not to verify).
        reduce_dims: dims pooled into each score (e.g. ``init_time`` plus space).
        references: reference forecasts; each adds ``rmse_<name>`` and ``skill_<name>``.
        climatology: climatology at the valid times, for ``acc``.
        weights: spatial weights (``latitude`` for grids) or ``None``.
        n_boot: bootstrap replicates over init times for CIs (0: none).
        seed: bootstrap seed.

    Returns:
        Dataset with a ``metric`` dim, one data variable per target.

    """
    references = dict(references or {})
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    point = m.point_forecast(forecast[names])
    valid = truth[names].notnull()
    for ref in [*references.values(), *([climatology] if climatology is not None else [])]:
        valid = valid & ref[names].reindex_like(point).notnull()
    unforecast = int(sum((valid & point.isnull())[n].sum() for n in names))
    if unforecast:  # scored on fewer points than other models: flag it, do not hide it
        log.warning(
            "forecast is NaN at %d verifiable points; they are left out of its scores", unforecast
        )
    valid = valid & point.notnull()
    o = truth[names].where(valid)
    refs = {k: v[names].reindex_like(point) for k, v in references.items()}
    kw = {"reduce_dims": reduce_dims, "weights": weights}
    scores = {"n": m.count(o, reduce_dims=reduce_dims), "rmse": m.rmse(point, o, **kw)}
    scores["mse"] = m.mse(point, o, **kw)
    scores.update(
        mae=m.mae(point, o, **kw), bias=m.bias(point, o, **kw), corr=m.correlation(point, o, **kw)
    )
    if climatology is not None:
        clim = climatology[names].reindex_like(point)
        scores["acc"] = m.anomaly_correlation(point, o, clim, **kw)
    for ref, ds in refs.items():
        ref_mse = m.mse(ds, o, **kw)
        scores[f"rmse_{ref}"] = np.sqrt(ref_mse)
        scores[f"skill_{ref}"] = m.skill_score(scores["mse"], ref_mse)
    if QUANTILE in forecast.dims:
        qkw = {"reduce_dims": [*reduce_dims, QUANTILE], "weights": weights}
        scores["pinball"] = m.pinball_loss(forecast[names], o, **qkw)
        scores["crps"] = m.crps_quantile(forecast[names], o, **kw)
        for lo, hi in m.central_intervals(forecast[QUANTILE].values):
            cov = m.interval_coverage(forecast[names], o, lo, hi, **kw)
            scores[f"coverage_{round(100 * (hi - lo))}"] = cov
    out = xr.concat(
        [v.drop_vars(QUANTILE, errors="ignore") for v in scores.values()],
        dim=_metric_index(list(scores)),
        coords="minimal",
        compat="override",
    )
    if n_boot > 0:
        out = _add_intervals(out, point, o, refs, reduce_dims, weights, n_boot, seed)
    for name in names:
        out[name].attrs.pop("units", None)  # scores mix units (skill, counts): see target_units
        out[name].attrs.update(
            target_units=forecast[name].attrs.get("units", ""), long_name=f"scores of {name}"
        )
    return out


def _metric_index(names: Sequence[str]) -> xr.DataArray:
    """The ``metric`` coordinate (numpy unicode: concatenates and writes to netCDF)."""
    return xr.DataArray(np.array(names, dtype=str), dims="metric", name="metric")


def _add_intervals(
    scores: xr.Dataset,
    point: xr.Dataset,
    truth: xr.Dataset,
    refs: Mapping[str, xr.Dataset],
    reduce_dims: Sequence[str],
    weights: xr.DataArray | None,
    n_boot: int,
    seed: int,
) -> xr.Dataset:
    """Append per-lead 95 % CIs as metrics; lead-mean CIs go to ``<m>_lead_mean`` attrs."""
    space = [d for d in reduce_dims if d != INIT_TIME]
    samples = bootstrap.bootstrap_scores(
        point, truth, refs, space_dims=space, weights=weights, n_boot=n_boot, seed=seed
    )
    ci = bootstrap.confidence_interval(samples)
    ci_mean = bootstrap.confidence_interval(samples.mean(LEAD_TIME))
    keep = [x for x in CI_METRICS if x in ci["metric"].values]
    parts, labels = [], []
    for metric in keep:
        for bound in ("lower", "upper"):
            parts.append(ci.sel(metric=metric, bound=bound, drop=True))
            labels.append(f"{metric}_ci_{bound}")
    out = xr.concat([scores, xr.concat(parts, dim=_metric_index(labels))], dim="metric")
    for name in out.data_vars:
        for metric in keep:
            for bound in ("lower", "upper"):
                value = float(ci_mean[name].sel(metric=metric, bound=bound))
                out[name].attrs[f"{metric}_ci_{bound}_lead_mean"] = value
    out.attrs.update(n_boot=n_boot, block_length=samples.attrs["block_length"], ci_level=0.95)
    return out


def score_run(
    forecast: xr.Dataset,
    dm: GeoDataModule,
    split: str = "test",
    *,
    n_boot: int = 200,
    seed: int = 0,
    by_location: bool = False,
) -> xr.Dataset:
    """Score the predictions of ``split`` against observations and both references.

    Args:
        forecast: predictions Dataset (dims ``(init_time, lead_time, <space>[, quantile])``,
            physical units) for the samples ``dm.index[split]``.
        dm: the run's datamodule (set up on demand); truth comes from ``dm.ds``.
        split: ``train``, ``val`` or ``test``.
        n_boot: bootstrap replicates for confidence intervals (0: none).
        seed: bootstrap seed.
        by_location: keep the spatial dims (per station / cell scores, no CIs).

    Returns:
        The scores Dataset (see the module docstring).

    """
    dm.setup()
    assert dm.ds is not None
    missing = [t for t in dm.task.targets if t not in forecast.data_vars]
    if missing:
        raise DataError(f"forecast lacks target(s) {missing}; it has {list(forecast.data_vars)}")
    forecast = forecast[list(dm.task.targets)]
    refs = reference_forecasts(dm, split)
    _check_overlap(forecast, refs["persistence"], split)
    truth = truth_at_valid_time(forecast, observed(dm.ds, dm.task.targets))
    space = list(schema.space_dims(dm.ds))
    reduce_dims = [INIT_TIME] if by_location else [INIT_TIME, *space]
    scores = compute_scores(
        forecast,
        truth,
        reduce_dims=reduce_dims,
        references=refs,
        climatology=refs["climatology"],
        weights=m.spatial_weights(dm.ds),
        n_boot=0 if by_location else n_boot,
        seed=seed,
    )
    scores.attrs.update(
        split=split,
        model=str(forecast.attrs.get("model", "")),
        weighting="cos(latitude)" if STATION not in dm.ds.dims else "none",
    )
    return scores


def _check_overlap(forecast: xr.Dataset, reference: xr.Dataset, split: str) -> None:
    have = np.intersect1d(forecast[INIT_TIME].values, reference[INIT_TIME].values)
    if have.size == 0:

        def span(ds: xr.Dataset) -> str:
            t = ds[INIT_TIME].values
            return f"{pd.Timestamp(t[0])}..{pd.Timestamp(t[-1])}" if t.size else "nothing"

        raise DataError(
            f"forecast init times ({span(forecast)}) do not overlap the {split!r} "
            f"split's samples ({span(reference)}); score the split it predicts"
        )
    if have.size < forecast.sizes[INIT_TIME]:
        log.warning(
            "%d forecast init times are not samples of split %r; they are not scored",
            forecast.sizes[INIT_TIME] - have.size,
            split,
        )


def metrics_summary(scores: xr.Dataset, prefix: str = "test") -> dict[str, float]:
    """Flat ``{"<prefix>/<metric>/<var>": value}`` for loggers, sweeps and leaderboards.

    Values are means over lead times (interval bounds: the bound of the lead-mean score).
    ``<prefix>/<metric>/<var>/lead_<k>`` (``k`` in time steps) is added for
    :data:`PER_LEAD_METRICS`. Names are identical across models of the same task.
    """
    extra = [d for d in scores.dims if d not in ("metric", LEAD_TIME)]
    if extra:
        raise ValueError(
            f"metrics_summary needs scores over (metric, lead_time); got extra "
            f"dims {extra} (score with by_location=False)"
        )
    lead = scores[LEAD_TIME].values
    steps = np.rint(lead / lead[0]).astype(int) if lead.size else np.array([], int)
    out: dict[str, float] = {}
    for name, da in scores.data_vars.items():
        for metric in scores["metric"].values:
            series = da.sel(metric=metric).values.astype(float)
            key = f"{prefix}/{metric}/{name}"
            mean_attr = da.attrs.get(f"{metric}_lead_mean")
            if mean_attr is not None:
                out[key] = float(mean_attr)
            elif metric == "n":
                out[key] = float(np.nansum(series))
            else:
                out[key] = float(np.nanmean(series)) if np.isfinite(series).any() else np.nan
            if metric in PER_LEAD_METRICS:
                for k, value in zip(steps, series, strict=True):
                    out[f"{key}/lead_{k}"] = float(value)
    return out


def score_at_stations(
    forecast_grid: xr.Dataset,
    stations_ds: xr.Dataset,
    *,
    method: str = "bilinear",
    by_location: bool = False,
    n_boot: int = 0,
    seed: int = 0,
) -> xr.Dataset:
    """Verify a gridded forecast at station locations.

    The forecast is colocated with :func:`geoclim.data.grid.grid_to_stations` (``bilinear``
    or ``nearest``), the truth is the stations' observed values (imputed ones masked) at
    each valid time, and the reference is station persistence: the station's value at the
    init time. Stations are weighted equally.

    Args:
        forecast_grid: gridded predictions ``(init_time, lead_time, latitude, longitude
            [, quantile])``.
        stations_ds: canonical station Dataset ``(time, station)`` with the target variables.
        method: colocation method, ``"bilinear"`` or ``"nearest"``.
        by_location: keep the ``station`` dim.
        n_boot: bootstrap replicates (0: none).
        seed: bootstrap seed.

    Returns:
        Scores Dataset like :func:`score_run` (references: ``persistence`` only).

    """
    from geoclim.data.grid import grid_to_stations

    names = [n for n in forecast_grid.data_vars if n in stations_ds.data_vars]
    if not names:
        raise DataError(
            f"no forecast variable {list(forecast_grid.data_vars)} is observed at "
            f"the stations {sorted(stations_ds.data_vars)}"
        )
    fc = grid_to_stations(forecast_grid[names], stations_ds, method=method)  # type: ignore[arg-type]
    obs = observed(stations_ds, names)
    truth = truth_at_valid_time(fc, obs)
    at_init = obs.reindex({TIME: fc[INIT_TIME].values}).rename({TIME: INIT_TIME})
    persistence = at_init.broadcast_like(m.point_forecast(fc))
    reduce_dims = [INIT_TIME] if by_location else [INIT_TIME, STATION]
    scores = compute_scores(
        fc,
        truth,
        reduce_dims=reduce_dims,
        references={"persistence": persistence},
        n_boot=0 if by_location else n_boot,
        seed=seed,
    )
    scores.attrs.update(colocation=method, weighting="none")
    return scores
