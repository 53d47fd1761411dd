"""Drift and data checks: does NEW data still look like the REFERENCE (training) data?

For every variable with a ``time`` dim, pooled over space and time and per station / cell:

* **missing rate** -- fraction of NaN in each, and the change ``new - reference``;
* **range** -- fraction of new finite values outside the reference ``[min, max]``
  (``out_of_range``) and outside physical bounds (``out_of_bounds``: negative
  concentrations, relative humidity over 100 %...);
* **distribution shift** -- two-sample Kolmogorov-Smirnov statistic and p-value and the
  Wasserstein-1 distance (:mod:`scipy.stats`), and the population stability index
  ``PSI = sum_b (p_new - p_ref) ln(p_new / p_ref)`` over bins cut at the reference quantiles.

:func:`compare` returns an ``xr.Dataset`` report; :func:`reference_summary` condenses a
reference into per-variable quantile bins, min / max and missing rate (small JSON, embedded in
exports) so that :func:`psi_against` can score new values without the reference data.

Default thresholds (:class:`Thresholds`) follow common practice: PSI above 0.25 is a major
shift (0.1-0.25 moderate); KS flags a shift only when both significant (p < 0.01) and large
(statistic > 0.1), because with thousands of values any trivial difference is significant; a
missing rate that changes by more than 10 points, more than 1 % of values outside the
reference range, or any value outside physical bounds.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import xarray as xr

from geoclim.data import schema, variables
from geoclim.errors import ConfigError, SchemaError
from geoclim.types import TIME

log = logging.getLogger(__name__)

VARIABLE = "variable"
"""The report's variable dim."""
PSI_FLOOR = 1e-4
"""Bin fractions are floored at this value so an empty bin does not make the PSI infinite."""
UPPER_BOUNDS = {"rh": 100.0, "land_sea_mask": 1.0, "wd": 360.0}
"""Physical upper bounds of registered variables (lower bound 0 where ``nonnegative``)."""
METRICS = (
    "count_reference",
    "count_new",
    "missing_reference",
    "missing_new",
    "missing_change",
    "out_of_range",
    "out_of_bounds",
    "ks_statistic",
    "ks_pvalue",
    "wasserstein",
    "psi",
)


@dataclass(frozen=True)
class Thresholds:
    """When a statistic counts as drift (see the module docstring for the defaults).

    Attributes:
        psi: PSI above this is drift.
        ks_pvalue: KS p-value below this ...
        ks_statistic: ... together with a KS statistic above this is drift.
        missing_change: absolute change of the missing fraction above this is drift.
        out_of_range: fraction of new values outside the reference range above this.
        out_of_bounds: fraction of new values outside physical bounds above this.
        min_count: fewer finite values than this (either side): no distribution statistics.
        bins: PSI bins (reference quantiles).

    """

    psi: float = 0.25
    ks_pvalue: float = 0.01
    ks_statistic: float = 0.1
    missing_change: float = 0.10
    out_of_range: float = 0.01
    out_of_bounds: float = 0.0
    min_count: int = 20
    bins: int = 10

    def __post_init__(self) -> None:
        if self.bins < 2:
            raise ConfigError(f"drift thresholds: bins must be >= 2, got {self.bins}")
        if self.min_count < 2:
            raise ConfigError(f"drift thresholds: min_count must be >= 2, got {self.min_count}")


def physical_bounds(name: str) -> tuple[float, float]:
    """``(lower, upper)`` physical bounds of ``name`` (``-inf`` / ``inf`` where unknown)."""
    var = variables.REGISTRY.get(name)
    lower = 0.0 if var is not None and var.nonnegative else -np.inf
    return lower, UPPER_BOUNDS.get(name, np.inf)


def psi_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference quantiles ``k / bins`` (ties merged)."""
    finite = reference[np.isfinite(reference)]
    return np.unique(np.quantile(finite, np.arange(1, bins) / bins))


def bin_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Fractions of the finite ``values`` in the ``len(edges) + 1`` bins (right-closed)."""
    finite = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(edges, finite, side="left"), minlength=edges.size + 1)
    return counts / max(finite.size, 1)


def psi(expected: np.ndarray, actual: np.ndarray, axis: int | None = None) -> Any:
    """Population stability index of two bin-fraction vectors (floored at ``PSI_FLOOR``).

    With ``axis``, the PSI of each row along it (an array; bins that are zero in both
    contribute nothing, so rows may be zero-padded to a common bin count).
    """
    e, a = np.maximum(expected, PSI_FLOOR), np.maximum(actual, PSI_FLOOR)
    terms = (a - e) * np.log(a / e)
    return float(np.sum(terms)) if axis is None else np.sum(terms, axis=axis)


def _pair(ref: np.ndarray, new: np.ndarray, bounds: tuple[float, float], th: Thresholds) -> list:
    """The :data:`METRICS` of two 1-D samples (NaN = missing)."""
    r, n = ref[np.isfinite(ref)], new[np.isfinite(new)]
    miss_r = 1 - r.size / ref.size if ref.size else np.nan
    miss_n = 1 - n.size / new.size if new.size else np.nan
    out = [r.size, n.size, miss_r, miss_n, miss_n - miss_r]
    if n.size and r.size:
        out.append(np.mean((n < r.min()) | (n > r.max())))
    else:
        out.append(np.nan)
    out.append(np.mean((n < bounds[0]) | (n > bounds[1])) if n.size else np.nan)
    if min(r.size, n.size) < th.min_count:
        return [*out, np.nan, np.nan, np.nan, np.nan]
    from scipy import stats  # imported on first use: a second at start-up otherwise

    ks = stats.ks_2samp(r, n)
    edges = psi_edges(r, th.bins)
    shift = psi(bin_fractions(r, edges), bin_fractions(n, edges))
    return [*out, ks.statistic, ks.pvalue, stats.wasserstein_distance(r, n), shift]


def _flags(report: xr.Dataset, th: Thresholds, suffix: str = "") -> dict[str, xr.DataArray]:
    g = {m: report[m + suffix] for m in METRICS}
    flags: dict[str, Any] = {
        "drift_psi": g["psi"] > th.psi,
        "drift_ks": (g["ks_pvalue"] < th.ks_pvalue) & (g["ks_statistic"] > th.ks_statistic),
        "drift_missing": np.abs(g["missing_change"]) > th.missing_change,
        "drift_range": (g["out_of_range"] > th.out_of_range)
        | (g["out_of_bounds"] > th.out_of_bounds),
    }
    flags["drift"] = flags["drift_psi"] | flags["drift_ks"] | flags["drift_missing"]
    flags["drift"] = flags["drift"] | flags["drift_range"]
    return {k + suffix: v for k, v in flags.items()}


def compare(
    reference: xr.Dataset,
    new: xr.Dataset,
    *,
    variables: list[str] | tuple[str, ...] | None = None,
    thresholds: Thresholds | None = None,
) -> xr.Dataset:
    """Compare ``new`` against ``reference``, per variable, pooled and per location.

    Args:
        reference: canonical dataset the model was trained on (or any baseline period).
        new: canonical dataset to check, same layout; per-location statistics use the
            stations / cells the two share.
        variables: variables to compare (default: those with a ``time`` dim in both).
        thresholds: drift thresholds (default :class:`Thresholds`).

    Returns:
        Report with dim ``variable`` and the space dims of the shared locations: per
        location ``<metric>`` and ``drift*`` flags (``variable, <space>``), pooled
        ``<metric>_pooled`` and ``drift*_pooled`` (``variable``); the thresholds in attrs.

    Raises:
        SchemaError: naming the variable missing from one side or the layout mismatch.

    """
    th = thresholds or Thresholds()
    layout_r, layout_n = schema.layout_of(reference), schema.layout_of(new)
    if layout_r != layout_n:
        raise SchemaError(
            f"reference is a {layout_r} dataset but new is a {layout_n} dataset; "
            "compare datasets of the same layout"
        )
    names = list(variables) if variables is not None else _shared(reference, new)
    for side, ds in (("reference", reference), ("new", new)):
        absent = [v for v in names if v not in ds.data_vars or TIME not in ds[v].dims]
        if absent:
            raise SchemaError(
                f"{side} dataset lacks time-varying variable(s) {absent}; it has "
                f"{sorted(str(v) for v in ds.data_vars)}"
            )
    if not names:
        raise SchemaError("reference and new datasets share no time-varying variable")
    space = schema.space_dims(reference)
    ref_a, new_a = xr.align(reference[names], new[names], join="inner", exclude=[TIME])
    shape = tuple(ref_a.sizes[d] for d in space)
    per_loc = np.full((len(names), len(METRICS), int(np.prod(shape))), np.nan)
    pooled = np.full((len(names), len(METRICS)), np.nan)
    for i, name in enumerate(names):
        bounds = physical_bounds(name)
        r = ref_a[name].transpose(TIME, *space).values.reshape(ref_a.sizes[TIME], -1)
        n = new_a[name].transpose(TIME, *space).values.reshape(new_a.sizes[TIME], -1)
        for j in range(r.shape[1]):
            per_loc[i, :, j] = _pair(r[:, j], n[:, j], bounds, th)
        full_r = reference[name].values.ravel()
        pooled[i] = _pair(full_r, new[name].values.ravel(), bounds, th)
    coords: dict[str, Any] = {VARIABLE: names} | {d: ref_a[d] for d in space}
    coords |= {str(c): ref_a[c] for c in ref_a.coords if set(ref_a[c].dims) <= set(space)}
    data: dict[str, Any] = {}
    for k, m in enumerate(METRICS):
        data[m] = ((VARIABLE, *space), per_loc[:, k].reshape(len(names), *shape))
        data[m + "_pooled"] = ((VARIABLE,), pooled[:, k])
    report = xr.Dataset(data, coords=coords)
    report = report.assign(_flags(report, th)).assign(_flags(report, th, "_pooled"))
    for m in ("missing_reference", "missing_new", "out_of_range", "out_of_bounds"):
        report[m].attrs["units"] = report[m + "_pooled"].attrs["units"] = "1"
    return report.assign_attrs({f"threshold_{k}": v for k, v in asdict(th).items()})


def _shared(reference: xr.Dataset, new: xr.Dataset) -> list[str]:
    return [
        str(v)
        for v in reference.data_vars
        if TIME in reference[v].dims
        and v in new.data_vars
        and TIME in new[v].dims
        and np.issubdtype(reference[v].dtype, np.floating)
    ]


def drift_summary(report: xr.Dataset) -> str:
    """A plain-text table of the pooled statistics and the drifting locations per variable."""
    space = [d for d in report.dims if d != VARIABLE]
    head = (
        f"{'variable':<12} {'miss ref':>8} {'miss new':>8} {'range':>7} {'bounds':>7} "
        f"{'KS':>6} {'KS p':>8} {'W1':>9} {'PSI':>7}  drift  locations"
    )
    lines = [head]
    for name in report[VARIABLE].values:
        r = report.sel({VARIABLE: name})
        n_loc = int(np.prod([report.sizes[d] for d in space])) if space else 0
        flagged = int(r["drift"].sum()) if space else 0
        reasons = [
            k[6:-7]
            for k in (
                "drift_psi_pooled",
                "drift_ks_pooled",
                "drift_missing_pooled",
                "drift_range_pooled",
            )
            if bool(r[k])
        ]
        lines.append(
            f"{name!s:<12} {float(r['missing_reference_pooled']):>8.1%} "
            f"{float(r['missing_new_pooled']):>8.1%} {float(r['out_of_range_pooled']):>7.1%} "
            f"{float(r['out_of_bounds_pooled']):>7.1%} {float(r['ks_statistic_pooled']):>6.3f} "
            f"{float(r['ks_pvalue_pooled']):>8.2g} {float(r['wasserstein_pooled']):>9.4g} "
            f"{float(r['psi_pooled']):>7.3f}  {'YES' if bool(r['drift_pooled']) else 'no':<5}  "
            f"{flagged}/{n_loc}" + (f"  ({', '.join(reasons)})" if reasons else "")
        )
    return "\n".join(lines)


def reference_summary(
    ds: xr.Dataset, names: list[str] | tuple[str, ...], *, bins: int = 10
) -> dict[str, dict[str, Any]]:
    """Per-variable reference statistics small enough for export metadata (JSON-ready).

    Args:
        ds: the reference (training) data.
        names: variables to summarise (those absent or without finite values are skipped).
        bins: PSI bins at the reference quantiles.

    Returns:
        ``{name: {"edges", "fractions", "min", "max", "missing_rate", "count"}}``.

    """
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        if name not in ds.data_vars:
            continue
        values = np.asarray(ds[name].values, dtype=np.float64).ravel()
        finite = values[np.isfinite(values)]
        if not finite.size:
            continue
        edges = psi_edges(finite, bins)
        out[name] = {
            "edges": edges.tolist(),
            "fractions": bin_fractions(finite, edges).tolist(),
            "min": float(finite.min()),
            "max": float(finite.max()),
            "missing_rate": float(1 - finite.size / values.size),
            "count": int(finite.size),
        }
    return out


def psi_against(summary: dict[str, Any], values: np.ndarray) -> float:
    """PSI of ``values`` against a :func:`reference_summary` entry (NaN if none is finite)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if not np.isfinite(values).any():
        return float("nan")
    edges = np.asarray(summary["edges"], dtype=np.float64)
    return psi(np.asarray(summary["fractions"]), bin_fractions(values, edges))
