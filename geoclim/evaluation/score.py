"""Score a predictions Dataset against observations and the reference forecasts it is given.

:func:`score_run` is what every run calls: it takes the predictions of one split and the
reference forecasts of the same samples (built by the caller, e.g. with
:func:`geoclim.baselines.references.reference_forecasts`), fetches the truth at each valid
time from ``dm.ds`` (imputed values masked out), and returns the scores Dataset::

    <xarray.Dataset>
    Dimensions:    (metric: 22, lead_time: 24)
    Coordinates:
      * metric     (metric) <U26 'n' 'rmse' 'mse' 'mae' 'bias' 'corr' 'acc' ...
      * lead_time  (lead_time) timedelta64[ns] 01:00:00 ... 1 days 00:00:00
    Data variables:
        no2        (metric, lead_time) float64 ...

The metrics are the rows of :mod:`geoclim.evaluation.table` (formulas in
:mod:`geoclim.evaluation.metrics`, :mod:`~geoclim.evaluation.probabilistic` and
:mod:`~geoclim.evaluation.paired`; all in ``docs/evaluation.md``). With bootstrapping,
``<m>_ci_lower`` / ``<m>_ci_upper`` (95 %) are added for the table's CI rows. With regions,
the Dataset gains a ``region`` dim whose first entry ``all`` is the whole domain.

All scores of a run use one **common mask**: a value counts where the truth is observed (not
missing, not imputed) and the point forecast and every reference are defined, so the model
and its references are verified on exactly the same points. Grids are weighted by cell area.
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
from geoclim.evaluation import bootstrap, table
from geoclim.evaluation import metrics as m
from geoclim.evaluation.regions import GLOBAL, Region
from geoclim.types import INIT_TIME, LEAD_TIME, QUANTILE, STATION, TIME

if TYPE_CHECKING:
    from geoclim.data.datamodule import GeoDataModule

log = logging.getLogger(__name__)

REGION = "region"


def observed(ds: xr.Dataset, names: Sequence[str]) -> xr.Dataset:
    """``ds[names]`` with values marked by ``<var>_imputed`` set to NaN."""
    out = {}
    for name in names:
        mask = variables.mask_name(name)
        out[name] = ds[name].where(~ds[mask]) if mask in ds else ds[name]
    return xr.Dataset(out)


def _inputs(forecast, truth, reduce_dims, references, climatology, weights, pooled) -> table.Inputs:
    """Apply the common mask and gather what the metric rows need (point data in float64)."""
    names = [n for n in forecast.data_vars if n in truth.data_vars]
    point = m.point_forecast(forecast[names]).astype(np.float64)
    refs = {k: v[names].reindex_like(point).astype(np.float64) for k, v in references.items()}
    clim = None
    if climatology is not None:
        clim = climatology[names].reindex_like(point).astype(np.float64)
    valid = truth[names].notnull()
    for ref in [*refs.values(), *([clim] if clim is not None else [])]:
        valid = valid & ref.notnull()
    unforecast = int(sum((valid & point.isnull())[n].sum() for n in names))
    if unforecast:  # scored on fewer points than other models: flag it, do not hide it
        log.warning(
            "forecast is NaN at %d verifiable points; they are left out of its scores", unforecast
        )
    valid = valid & point.notnull()
    return table.Inputs(
        forecast=forecast[names],
        point=point,
        truth=truth[names].astype(np.float64).where(valid),
        reduce_dims=list(reduce_dims),
        weights=weights,
        references=refs,
        climatology=clim,
        pooled=pooled,
    )


def compute_scores(
    forecast: xr.Dataset,
    truth: xr.Dataset,
    *,
    reduce_dims: Sequence[str],
    references: Mapping[str, xr.Dataset] | None = None,
    climatology: xr.Dataset | None = None,
    weights: xr.DataArray | None = None,
    pooled: bool = False,
    n_boot: int = 0,
    seed: int = 0,
) -> xr.Dataset:
    """The scores Dataset of a forecast against truth and references (common mask).

    Args:
        forecast: ``(init_time, lead_time, <space>[, quantile])`` predictions.
        truth: observations on the forecast's coordinates (NaN where not to verify).
        reduce_dims: dims reduced into each score (e.g. ``init_time`` plus space).
        references: reference forecasts; each adds ``rmse_<name>``, ``skill_<name>``,
            ``rmse_diff_<name>``, ``dm_<name>`` and ``dm_pvalue_<name>``.
        climatology: climatology at the valid times, for ``acc``.
        weights: spatial weights (``latitude`` for grids) or ``None``.
        pooled: pool init times and space into one mean (default: WB2 two-stage means).
        n_boot: bootstrap replicates over init times for CIs (0: none).
        seed: bootstrap seed.

    Returns:
        Dataset with a ``metric`` dim, one data variable per target.

    """
    inputs = _inputs(
        forecast, truth, reduce_dims, dict(references or {}), climatology, weights, pooled
    )
    scores: dict[str, xr.Dataset] = {}
    with m.shared_terms():  # the rows (and replicates) share their MSEs, alignments...
        for row in table.METRICS:
            scores.update(table.evaluate(row, inputs))
        out = _stack(scores)
        if n_boot > 0 and INIT_TIME in reduce_dims:
            out = _add_intervals(out, inputs, n_boot, seed)
    for name in out.data_vars:
        out[name].attrs.pop("units", None)  # scores mix units (skill, counts): see target_units
        out[name].attrs.update(
            target_units=forecast[name].attrs.get("units", ""), long_name=f"scores of {name}"
        )
    out.attrs["convention"] = "pooled" if pooled else "WeatherBench 2 (time mean of spatial means)"
    return out


def _stack(scores: Mapping[str, xr.Dataset]) -> xr.Dataset:
    index = xr.DataArray(np.array(list(scores), dtype=str), dims="metric", name="metric")
    return xr.concat(
        [v.drop_vars(QUANTILE, errors="ignore") for v in scores.values()],
        dim=index,
        coords="minimal",
        compat="override",
    )


def _add_intervals(scores: xr.Dataset, inputs: table.Inputs, n_boot: int, seed: int) -> xr.Dataset:
    """Append per-lead 95 % CIs as metrics; lead-mean CIs go to ``<m>_ci_*_lead_mean`` attrs."""
    samples = bootstrap.bootstrap_scores(inputs, n_boot=n_boot, seed=seed)
    keep = list(samples["metric"].values)
    est = scores.sel(metric=keep)
    ci = bootstrap.confidence_interval(samples, est)
    ci_mean = bootstrap.confidence_interval(
        samples.mean(LEAD_TIME, keep_attrs=True), est.mean(LEAD_TIME)
    )
    parts = {
        f"{metric}_ci_{bound}": ci.sel(metric=metric, bound=bound, drop=True)
        for metric in keep
        for bound in ("lower", "upper")
    }
    out = xr.concat([scores, _stack(parts)], dim="metric")
    for name in out.data_vars:
        for metric in keep:
            for bound in ("lower", "upper"):
                value = float(ci_mean[name].sel(metric=metric, bound=bound))
                out[name].attrs[f"{metric}_ci_{bound}_lead_mean"] = value
    out.attrs.update(
        n_boot=n_boot,
        block_length=samples.attrs["block_length"],
        widening=samples.attrs["widening"],
        bootstrap="stationary (Politis-White block length)",
        ci_level=0.95,
    )
    return out


def score_run(
    forecast: xr.Dataset,
    dm: GeoDataModule,
    split: str = "test",
    *,
    references: Mapping[str, xr.Dataset],
    n_boot: int = 200,
    seed: int = 0,
    by_location: bool = False,
    regions: Sequence[Region] = (),
    pooled: bool = False,
    mask: xr.Dataset | None = None,
) -> xr.Dataset:
    """Score the predictions of ``split`` against observations and the given references.

    Args:
        forecast: predictions Dataset (dims ``(init_time, lead_time, <space>[, quantile])``,
            physical units) for the samples ``dm.index[split]``.
        dm: the run's datamodule (set up on demand); truth comes from ``dm.ds``.
        split: ``train``, ``val`` or ``test``.
        references: reference forecasts of the same samples by name (``persistence``,
            ``climatology``...); ``climatology`` also serves the anomaly correlation.
        n_boot: bootstrap replicates for confidence intervals (0: none).
        seed: bootstrap seed.
        by_location: keep the spatial dims (per station / cell scores, no CIs).
        regions: score each region too (adds a ``region`` dim, ``all`` first).
        pooled: pooled means instead of WB2 two-stage means.
        mask: boolean Dataset of the targets (e.g. a sweep's common mask from
            :func:`geoclim.evaluation.common.common_mask`): only its coordinates are
            scored and only its true points verified; ``None``: the run's own mask.

    Returns:
        The scores Dataset (see the module docstring).

    """
    dm.setup()
    assert dm.ds is not None
    missing = [t for t in dm.task.targets if t not in forecast.data_vars]
    if missing:
        raise DataError(f"forecast lacks target(s) {missing}; it has {list(forecast.data_vars)}")
    if not references:
        raise DataError("score_run needs reference forecasts (e.g. reference_forecasts(dm, split))")
    forecast = forecast[list(dm.task.targets)]
    if mask is not None:
        forecast = restrict(forecast, mask)
    _check_overlap(forecast, next(iter(references.values())), split)
    # computed: truth is the forecast's size, and lazy (dask-backed) data must not reach metrics
    truth = truth_at_valid_time(forecast, observed(dm.ds, dm.task.targets)).compute()
    if mask is not None:
        truth = truth.where(mask[list(truth.data_vars)].reindex_like(truth, fill_value=False))
    space = list(schema.space_dims(dm.ds))
    reduce_dims = [INIT_TIME] if by_location else [INIT_TIME, *space]
    kw = {
        "reduce_dims": reduce_dims,
        "references": references,
        "climatology": references.get("climatology"),
        "weights": m.spatial_weights(dm.ds),
        "pooled": pooled,
        "n_boot": 0 if by_location else n_boot,
        "seed": seed,
    }
    scores = compute_scores(forecast, truth, **kw)  # type: ignore[arg-type]
    if regions:
        parts = [scores] + [
            compute_scores(forecast, truth.where(r.select(dm.ds)), **kw)  # type: ignore[arg-type]
            for r in regions
        ]
        names = [GLOBAL, *(r.name for r in regions)]
        scores = xr.concat(parts, dim=pd.Index(names, name=REGION), combine_attrs="override")
    scores.attrs.update(
        split=split,
        model=str(forecast.attrs.get("model", "")),
        weighting="cell area" if STATION not in dm.ds.dims else "none",
    )
    return scores


def restrict(forecast: xr.Dataset, mask: xr.Dataset) -> xr.Dataset:
    """``forecast`` on the init times and locations where ``mask`` has a true point.

    Raises:
        DataError: naming the targets the mask lacks, or when it leaves nothing to score.

    """
    missing = [n for n in forecast.data_vars if n not in mask.data_vars]
    if missing:
        raise DataError(f"the scoring mask lacks target(s) {missing}; it has {list(mask)}")
    keep = mask[list(forecast.data_vars)].to_array("variable").any("variable")
    coords = {}
    for dim in keep.dims:  # leads stay: lead_<k> keys count steps from the first lead
        if dim != LEAD_TIME and dim in forecast.dims and dim in keep.coords:
            other = [d for d in keep.dims if d != dim]
            hit = keep.any(other).values if other else keep.values
            coords[dim] = keep[dim].values[hit]
    if not all(len(v) for v in coords.values()):
        raise DataError("the scoring mask has no true point: nothing would be scored")
    return forecast.sel(coords)


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

    Values are means over lead times (``n``: the total; interval bounds: the bound of the
    lead-mean score). ``<prefix>/<metric>/<var>/lead_<k>`` (``k`` in time steps) is added
    for the table's per-lead metrics and their bounds. With a ``region`` dim, the whole
    domain keeps ``<prefix>`` and region ``r`` uses ``<prefix>_<r>``.
    """
    if REGION in scores.dims:
        out: dict[str, float] = {}
        for region in scores[REGION].values:
            sub = scores.sel({REGION: region}, drop=True)
            out.update(metrics_summary(sub, prefix if region == GLOBAL else f"{prefix}_{region}"))
        return out
    extra = [d for d in scores.dims if d not in ("metric", LEAD_TIME)]
    if extra:
        raise DataError(
            f"metrics_summary needs scores over (metric, lead_time); got extra "
            f"dims {extra} (score with by_location=False)"
        )
    lead = scores[LEAD_TIME].values
    steps = np.rint(lead / lead[0]).astype(int) if lead.size else np.array([], int)
    out = {}
    for name, da in scores.data_vars.items():
        for metric in map(str, scores["metric"].values):
            series = da.sel(metric=metric).values.astype(float)
            key = f"{prefix}/{metric}/{name}"
            mean_attr = da.attrs.get(f"{metric}_lead_mean")
            if mean_attr is not None:
                out[key] = float(mean_attr)
            elif metric == "n":
                out[key] = float(np.nansum(series))
            else:
                out[key] = float(np.nanmean(series)) if np.isfinite(series).any() else np.nan
            if table.is_per_lead(metric):
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

    names = [str(n) for n in forecast_grid.data_vars if n in stations_ds.data_vars]
    if not names:
        raise DataError(
            f"no forecast variable {list(forecast_grid.data_vars)} is observed at "
            f"the stations {sorted(map(str, stations_ds.data_vars))}"
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
