"""The metric table: every score geoclim computes, with its direction, in one place.

One row per metric feeds scoring (:mod:`geoclim.evaluation.score`), the bootstrap
(rows with ``ci``), the logger keys (:func:`geoclim.evaluation.score.metrics_summary`, per
lead time for rows with ``per_lead``) and the leaderboard's sort order (``direction``).
Adding a metric is one function with the common signature::

    fn(forecast, truth[, extra], *, reduce_dims, weights, pooled, init_counts) -> Dataset

and one row here. ``needs`` says what ``fn`` is given: the point forecast (``point``), the
quantile forecast (``quantiles``, skipped for point forecasts), the point forecast and the
climatology (``climatology``), the point forecast and one reference forecast (``reference``,
one score ``<name>_<ref>`` per reference) or the quantile forecast and one central interval
(``interval``, one score ``<name>_<nominal %>`` per symmetric pair of levels).

Directions: ``lower`` / ``higher`` is better, ``nominal`` (closest to the nominal value, the
coverage of a ``q .. 1 - q`` interval is best at ``1 - 2q``) and ``magnitude`` (smallest
absolute value, e.g. a bias). Interval bounds ``<m>_ci_lower`` / ``<m>_ci_upper`` sort like
``<m>``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import xarray as xr

from geoclim.errors import DataError
from geoclim.evaluation import metrics as m
from geoclim.evaluation import paired
from geoclim.evaluation import probabilistic as p
from geoclim.types import QUANTILE

Direction = Literal["lower", "higher", "nominal", "magnitude"]
Needs = Literal["point", "quantiles", "climatology", "reference", "interval"]
CI_SUFFIXES = ("_ci_lower", "_ci_upper")


@dataclass(frozen=True)
class Metric:
    """One row of the metric table."""

    name: str
    fn: Callable[..., xr.Dataset]
    direction: Direction
    needs: Needs = "point"
    per_lead: bool = False
    ci: bool = False
    long_name: str = ""
    bounds: tuple[float, float] = (-np.inf, np.inf)
    """The score's possible range; confidence intervals are clipped to it."""


METRICS: tuple[Metric, ...] = (
    Metric("n", m.count, "higher", bounds=(0.0, np.inf), long_name="verified values"),
    Metric(
        "rmse",
        m.rmse,
        "lower",
        per_lead=True,
        ci=True,
        bounds=(0.0, np.inf),
        long_name="root mean squared error",
    ),
    Metric("mse", m.mse, "lower", bounds=(0.0, np.inf), long_name="mean squared error"),
    Metric(
        "mae",
        m.mae,
        "lower",
        per_lead=True,
        ci=True,
        bounds=(0.0, np.inf),
        long_name="mean absolute error",
    ),
    Metric("bias", m.bias, "magnitude", long_name="mean error (forecast - observed)"),
    Metric(
        "corr",
        m.correlation,
        "higher",
        bounds=(-1.0, 1.0),
        long_name="Pearson correlation (pooled)",
    ),
    Metric(
        "acc",
        m.anomaly_correlation,
        "higher",
        "climatology",
        per_lead=True,
        long_name="anomaly correlation coefficient",
        bounds=(-1.0, 1.0),
    ),
    Metric(
        "rmse",
        m.reference_rmse,
        "lower",
        "reference",
        per_lead=True,
        long_name="RMSE of the reference",
        bounds=(0.0, np.inf),
    ),
    Metric(
        "skill",
        m.mse_skill,
        "higher",
        "reference",
        per_lead=True,
        ci=True,
        long_name="MSE skill score 1 - MSE / MSE_ref",
        bounds=(-np.inf, 1.0),
    ),
    Metric(
        "rmse_diff",
        paired.rmse_difference,
        "lower",
        "reference",
        per_lead=True,
        ci=True,
        long_name="RMSE - RMSE_ref (negative: better than the reference)",
    ),
    Metric(
        "dm",
        paired.dm_statistic,
        "lower",
        "reference",
        per_lead=True,
        long_name="Diebold-Mariano statistic of squared errors vs the reference (HLN)",
    ),
    Metric(
        "dm_pvalue",
        paired.dm_pvalue,
        "lower",
        "reference",
        per_lead=True,
        long_name="two-sided p-value of the Diebold-Mariano test (HLN, t_{N-1})",
        bounds=(0.0, 1.0),
    ),
    Metric(
        "crps",
        p.crps,
        "lower",
        "quantiles",
        per_lead=True,
        ci=True,
        long_name="CRPS (trapezoidal integral of the quantile score)",
        bounds=(0.0, np.inf),
    ),
    Metric(
        "quantile_score",
        p.quantile_score,
        "lower",
        "quantiles",
        long_name="2 x mean pinball loss over the levels",
        bounds=(0.0, np.inf),
    ),
    Metric(
        "coverage",
        p.interval_coverage,
        "nominal",
        "interval",
        long_name="central interval coverage",
        bounds=(0.0, 1.0),
    ),
)


@dataclass
class Inputs:
    """What every metric is computed from (one forecast, common mask already applied)."""

    forecast: xr.Dataset  # (init_time, lead_time, <space>[, quantile])
    point: xr.Dataset  # (init_time, lead_time, <space>)
    truth: xr.Dataset  # NaN where not verified
    reduce_dims: Sequence[str]
    weights: xr.DataArray | None = None
    references: Mapping[str, xr.Dataset] = field(default_factory=dict)
    climatology: xr.Dataset | None = None
    pooled: bool = False

    @property
    def has_quantiles(self) -> bool:
        """Whether the forecast is a quantile forecast."""
        return QUANTILE in self.forecast.dims


def evaluate(
    row: Metric, inputs: Inputs, init_counts: xr.DataArray | None = None
) -> dict[str, xr.Dataset]:
    """The scores of one row: ``{metric name: Dataset}`` (empty when it does not apply)."""
    kw = {
        "reduce_dims": list(inputs.reduce_dims),
        "weights": inputs.weights,
        "pooled": inputs.pooled,
        "init_counts": init_counts,
    }
    f, o = inputs.point, inputs.truth
    if row.needs == "point":
        return {row.name: row.fn(f, o, **kw)}
    if row.needs == "climatology":
        return (
            {} if inputs.climatology is None else {row.name: row.fn(f, o, inputs.climatology, **kw)}
        )
    if row.needs == "reference":
        return {f"{row.name}_{k}": row.fn(f, o, ref, **kw) for k, ref in inputs.references.items()}
    if not inputs.has_quantiles:
        return {}
    q = inputs.forecast
    if row.needs == "quantiles":
        return {row.name: row.fn(q, o, **kw)}
    return {
        f"{row.name}_{round(100 * (hi - lo))}": row.fn(q, o, lo, hi, **kw)
        for lo, hi in p.central_intervals(q[QUANTILE].values)
    }


def lookup(name: str) -> tuple[Metric, float | None]:
    """The row of a score name (``rmse``, ``skill_climatology``, ``coverage_80_ci_lower``...).

    Returns:
        The row and, for ``nominal`` rows, the nominal value (``coverage_80`` -> 0.8).

    Raises:
        DataError: no row matches (the message lists the table's names).

    """
    base = name
    for suffix in CI_SUFFIXES:
        base = base.removesuffix(suffix)
    exact = [r for r in METRICS if r.needs not in ("reference", "interval") and r.name == base]
    if exact:
        return exact[0], None
    family = [r for r in METRICS if r.needs in ("reference", "interval")]
    family = [r for r in family if base.startswith(r.name + "_")]
    if family:
        row = max(family, key=lambda r: len(r.name))
        if row.direction == "nominal":
            return row, float(base[len(row.name) + 1 :]) / 100.0
        return row, None
    raise DataError(f"unknown metric {name!r}; the metric table has {names()}")


def names() -> list[str]:
    """The table's names, families written ``<name>_<ref>`` / ``<name>_<pct>``."""
    out = []
    for r in METRICS:
        suffix = {"reference": "_<ref>", "interval": "_<pct>"}.get(r.needs, "")
        out.append(r.name + suffix)
    return out


def direction(name: str) -> Direction:
    """The direction of a score name (see :func:`lookup`)."""
    return lookup(name)[0].direction


def sort_value(name: str, values: np.ndarray) -> np.ndarray:
    """Values mapped so that ascending order is best first (NaN last)."""
    row, nominal = lookup(name)
    v = np.asarray(values, dtype=np.float64)
    key = {
        "lower": v,
        "higher": -v,
        "magnitude": np.abs(v),
        "nominal": np.abs(v - (nominal if nominal is not None else 0.0)),
    }[row.direction]
    return np.where(np.isnan(key), np.inf, key)


def is_per_lead(name: str) -> bool:
    """Whether the logger keys of ``name`` include one value per lead time."""
    try:
        return lookup(name)[0].per_lead
    except DataError:
        return False


def ci_rows() -> list[Metric]:
    """The rows that get bootstrap confidence intervals."""
    return [r for r in METRICS if r.ci]
